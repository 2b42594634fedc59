"""benchmarks/gpu_check.py, the one command for a GPU loan, runs every section on the CPU in its tiny form, so that
it is known to work before a GPU is lent."""
import json
import os
import sys
from pathlib import Path

import pytest

from conftest import write_mnist_like

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import gpu_check  # noqa: E402


def test_every_section_runs_on_the_cpu_in_tiny_form_and_writes_one_results_file(tmp_path, monkeypatch, capsys):
    write_mnist_like(Path(os.environ["VAE_DATA_DIR"]))  # where torchvision's loader (the example peer) reads too
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # torchrun's log folders
    out = tmp_path / "gpu_check.json"
    results = gpu_check.main(["--device", "cpu", "--tiny", "--json", str(out)])
    failed = {name: s["error"] for name, s in results["sections"].items() if "error" in s}
    assert not failed, failed
    saved = json.loads(out.read_text())
    assert saved["device"] == "cpu" and saved["tiny"] is True and set(saved["sections"]) == set(gpu_check.SECTIONS)
    assert {"machine", "torch", "git_commit", "command"} <= set(saved)  # as every results file
    peers = saved["sections"]["peers"]
    assert {"vae_utils-default", "pytorch-example-mlp"} <= set(peers["runs"])
    assert peers["ratios"]["time_vs_pytorch-example-mlp"] > 0
    curve = saved["sections"]["hvae-cifar"]["curve"]
    assert len(curve) == 5 and all(c["bits_per_dim"] > 0 for c in curve)
    assert saved["sections"]["ddp"]["processes"] == 2 and saved["sections"]["ddp"]["backend"] == "gloo"
    assert "fp32" in saved["sections"]["iwae"]
    table = capsys.readouterr().out
    assert all(name in table for name in gpu_check.SECTIONS) and "FAILED" not in table


def test_a_failing_section_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    write_mnist_like(Path(os.environ["VAE_DATA_DIR"]))
    monkeypatch.setitem(gpu_check.SECTIONS, "long", lambda *a: (_ for _ in ()).throw(RuntimeError("out of memory")))
    results = gpu_check.main(["--device", "cpu", "--tiny", "--sections", "long", "iwae"])
    assert results["sections"]["long"]["error"] == "RuntimeError: out of memory"
    assert "error" not in results["sections"]["iwae"]
