"""`make run`'s notebook runner shows each cell as it runs: its section, what it prints while it prints, its time, and
the notebook's result at the end; the kernel's transport warning does not reach the terminal."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
from execute import last_printed_line, section_labels  # noqa: E402

nbv4 = nbformat.v4


def _notebook() -> nbformat.NotebookNode:
    return nbv4.new_notebook(cells=[
        nbv4.new_code_cell("x = 1"),
        nbv4.new_markdown_cell("## Training\n\nSome words."),
        nbv4.new_code_cell("import time\nfor epoch in (1, 2):\n    print(f'epoch {epoch}/2', flush=True)\n"
                           "    time.sleep(0.2)"),
        nbv4.new_markdown_cell("Prose without a heading."),
        nbv4.new_code_cell("print('Result: 240.60 nats')"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})


def test_cells_are_labelled_by_the_section_they_belong_to():
    assert section_labels(_notebook()) == ["(before the first heading)", "Training", "Training"]


def test_the_result_is_the_last_line_printed():
    nb = _notebook()
    nb.cells[-1].outputs = [nbv4.new_output("stream", name="stdout", text="a\nResult: 240.60 nats\n\n")]
    assert last_printed_line(nb) == "Result: 240.60 nats"
    assert last_printed_line(_notebook()) == ""


def test_a_run_streams_each_cell_and_ends_with_the_result(tmp_path):
    path = tmp_path / "run.ipynb"
    nbformat.write(_notebook(), path)
    done = subprocess.run([sys.executable, str(ROOT / "notebooks" / "execute.py"), str(path), "--out",
                           str(tmp_path / "out.ipynb")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stderr.splitlines()]
    training = lines.index("[2/3] Training")
    assert lines[training + 1:training + 3] == ["epoch 1/2", "epoch 2/2"]  # streamed inside the cell
    assert lines[training + 3].endswith(" s")  # then the cell's time
    assert lines[-1] == "Result: 240.60 nats"
    assert not any(line.startswith("[?]") for line in lines)  # markdown cells are not announced
    assert "without encryption" not in done.stderr
    assert nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[2].outputs  # the copy keeps the outputs
