"""Execute a notebook headless and show, in the terminal, each cell as it runs and what it prints.

    python notebooks/execute.py NOTEBOOK [--out FILE | --inplace]

What `make run` and `make refresh` call: nbclient runs the kernel (as `jupyter nbconvert --execute` does), widget
state is not stored. Each code cell is announced by the section it belongs to (the notebook's last heading above
it), its printed output (the training's epoch lines) streams to the terminal as it comes, and the cell's time is
given when it ends. At the end: the executed copy's path and the notebook's last printed line (its result). The
kernel talks to this process over Unix sockets in a private folder (not TCP on localhost), where the platform has
them.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from traitlets.config import Config


def section_labels(nb: nbformat.NotebookNode) -> list[str]:
    """For each code cell, the last markdown heading above it (what the cell is part of), without the #s."""
    labels, heading = [], "(before the first heading)"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            headings = re.findall(r"^#+\s+(.+)$", cell.source, re.M)
            heading = headings[-1].strip() if headings else heading
        elif cell.cell_type == "code":
            labels.append(heading[:70])
    return labels


def last_printed_line(nb: nbformat.NotebookNode) -> str:
    """The last non-empty line the notebook printed (its result sentence), or ''."""
    for cell in reversed([c for c in nb.cells if c.cell_type == "code"]):
        for output in reversed(cell.get("outputs", [])):
            lines = [line for line in output.get("text", "").splitlines() if line.strip()]
            if output.get("output_type") == "stream" and output.get("name") == "stdout" and lines:
                return lines[-1].strip()
    return ""


class StreamingClient(NotebookClient):
    """A NotebookClient that also writes every printed output of a cell to the terminal as it arrives."""

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] == "stream":
            text = msg["content"].get("text", "")
            sys.stderr.write("".join(f"      {line}\n" for line in text.splitlines() if line.strip()))
            sys.stderr.flush()
        return super().output(outs, msg, display_id, cell_index)


def kernel_config(folder: str) -> Config:
    """The kernel's transport: Unix sockets in `folder` where there are any, else TCP on localhost."""
    config = Config()
    if os.name == "posix":
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = os.path.join(folder, "kernel")
    return config


def execute(path: Path, out: Path) -> float:
    """Run every cell of the notebook at path (in its folder) and write the executed copy to out; return seconds."""
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    labels = section_labels(nb)
    started = time.perf_counter()
    clock = {"cell": started}

    def number(cell) -> str:
        width = len(str(len(code)))
        return f"[{code.index(cell) + 1:>{width}}/{len(code)}]"

    def cell_started(cell, cell_index, **_):
        clock["cell"] = time.perf_counter()
        if cell in code:  # nbclient announces markdown cells too
            print(f"{number(cell)} {labels[code.index(cell)]}", file=sys.stderr, flush=True)

    def cell_done(cell, cell_index, **_):
        if cell in code:
            print(f"{' ' * len(number(cell))} {time.perf_counter() - clock['cell']:.1f} s", file=sys.stderr,
                  flush=True)

    print(f"executing {path} ({len(code)} code cells)", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="vae-kernel-") as sockets:
        client = StreamingClient(nb, timeout=None, kernel_name="python3", store_widget_state=False,
                                 resources={"metadata": {"path": str(path.resolve().parent)}},
                                 on_cell_start=cell_started, on_cell_executed=cell_done, config=kernel_config(sockets))
        client.execute()
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    seconds = time.perf_counter() - started
    print(f"done in {seconds / 60:.1f} min; the executed notebook: {out}", file=sys.stderr, flush=True)
    result = last_printed_line(nb)
    if result:
        print(result, file=sys.stderr, flush=True)
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
