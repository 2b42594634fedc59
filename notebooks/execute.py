"""Execute a notebook headless and say, in the terminal, which cell runs and how long each took.

    python notebooks/execute.py NOTEBOOK [--out FILE | --inplace]

What `make run` and `make refresh` call: nbclient runs the kernel (as `jupyter nbconvert --execute` does), widget
state is not stored, and every code cell prints one line to stderr when it finishes, so a long run is never silent.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def first_line(source: str) -> str:
    """The cell's first line that is not an nbval marker or a comment, for the progress line."""
    lines = [line.strip() for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]
    return (lines[0] if lines else "(comments only)")[:70]


def execute(path: Path, out: Path) -> float:
    """Run every cell of the notebook at path (in its folder) and write the executed copy to out; return seconds."""
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    started = time.perf_counter()
    clock = {"cell": started}

    def cell_started(cell, cell_index, **_):
        clock["cell"] = time.perf_counter()

    def cell_done(cell, cell_index, **_):
        number = code.index(cell) + 1 if cell in code else "?"
        print(f"[{number:>2}/{len(code)}] {time.perf_counter() - clock['cell']:6.1f} s  {first_line(cell.source)}",
              file=sys.stderr, flush=True)

    client = NotebookClient(nb, timeout=None, kernel_name="python3", store_widget_state=False,
                            resources={"metadata": {"path": str(path.resolve().parent)}},
                            on_cell_start=cell_started, on_cell_executed=cell_done)
    print(f"executing {path} ({len(code)} code cells)", file=sys.stderr, flush=True)
    client.execute()
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    seconds = time.perf_counter() - started
    print(f"done in {seconds / 60:.1f} min: {out}", file=sys.stderr, flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="write the executed notebook here")
    where.add_argument("--inplace", action="store_true", help="overwrite the notebook with its executed copy")
    args = parser.parse_args()
    execute(args.notebook, args.notebook if args.inplace else args.out)


if __name__ == "__main__":
    main()
