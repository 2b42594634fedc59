"""A `train` run leaves pictures beside its checkpoints and says what it does between the epochs' lines."""
import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from vae_utils.cli import main


def _train(idx_root, out, *extra):
    main(["train", "--data-dir", str(idx_root), "--batch-size", "16", "--out", str(out), "--quiet", "--epochs", "1",
          *extra])


def _grid_size(rows: int, cols: int, side: int = 28, pad: int = 2) -> tuple[int, int]:
    """The (width, height) of a torchvision grid of rows x cols images."""
    return cols * (side + pad) + pad, rows * (side + pad) + pad


def test_a_run_writes_samples_and_reconstructions_beside_its_checkpoints(idx_root, tmp_path):
    _train(idx_root, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["pictures"] == ["samples.png", "reconstructions.png"]
    assert Image.open(tmp_path / "run" / "samples.png").size == _grid_size(8, 8)
    assert Image.open(tmp_path / "run" / "reconstructions.png").size == _grid_size(2, 8)  # images over reconstructions


def test_the_run_pictures_are_drawn_from_the_runs_seed(idx_root, tmp_path):
    _train(idx_root, tmp_path / "a")
    _train(idx_root, tmp_path / "b")
    _train(idx_root, tmp_path / "c", "--seed", "1")
    a, b, c = ((tmp_path / r / "samples.png").read_bytes() for r in "abc")
    assert a == b and a != c


def test_a_conditional_run_draws_a_row_per_class(idx_root, tmp_path):
    _train(idx_root, tmp_path / "run", "--model", "cvae")
    assert Image.open(tmp_path / "run" / "samples.png").size == _grid_size(10, 6)  # 64 // 10 = 6 per class


def test_a_vqvae_run_has_reconstructions_only(idx_root, tmp_path):
    _train(idx_root, tmp_path / "run", "--model", "vqvae", "--codebook-size", "8")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["pictures"] == ["reconstructions.png"]
    assert not (tmp_path / "run" / "samples.png").exists()


def test_a_hierarchical_run_reconstructs_a_row_per_number_of_top_groups(idx_root, tmp_path):
    _train(idx_root, tmp_path / "run", "--model", "hvae")
    groups = json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]["model"]["groups"]
    assert Image.open(tmp_path / "run" / "reconstructions.png").size == _grid_size(1 + sum(groups), 8)


def test_a_run_says_when_it_loads_data_and_scores_the_test_split(idx_root, tmp_path):
    done = subprocess.run([sys.executable, "-m", "vae_utils", "train", "--data-dir", str(idx_root), "--epochs", "1",
                           "--batch-size", "16", "--latent-dim", "3", "--val-size", "16", "--out",
                           str(tmp_path / "run")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stderr.replace("\r", "\n").splitlines() if line.strip()]
    said = [next(i for i, line in enumerate(lines) if line.startswith(start)) for start in
            ("loading fashion-mnist", "epoch   1/1", "scoring the test split (32 images) once, with epoch 1's",
             "drawing samples.png and reconstructions.png")]
    assert said == sorted(said), lines


def test_a_quiet_run_says_nothing(idx_root, tmp_path):
    done = subprocess.run([sys.executable, "-m", "vae_utils", "train", "--data-dir", str(idx_root), "--epochs", "1",
                           "--batch-size", "16", "--latent-dim", "3", "--out", str(tmp_path / "run"), "--quiet"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_finished_run_leaves_no_lock_file(idx_root, tmp_path):
    _train(idx_root, tmp_path / "run", "--latent-dim", "3")
    assert not (tmp_path / "run" / "train.lock").exists()
    _train(idx_root, tmp_path / "run", "--latent-dim", "3", "--overwrite")  # and a second run there still locks it
    assert not (tmp_path / "run" / "train.lock").exists()


def test_a_lock_file_removed_under_a_waiting_run_is_not_trusted(tmp_path, monkeypatch):
    from vae_utils import rundir

    opened = []
    real_open = open

    def open_then_lose_the_file(path, *args, **kwargs):  # the holder removes the file between our open and our lock
        handle = real_open(path, *args, **kwargs)
        if not opened:
            Path(path).unlink()
        opened.append(path)
        return handle

    monkeypatch.setattr(rundir, "open", open_then_lose_the_file, raising=False)
    with rundir.OutputLock(tmp_path / "run") as lock:
        assert len(opened) == 2 and (tmp_path / "run" / "train.lock").exists()  # it locked the file that is there
        assert (tmp_path / "run" / "train.lock").read_text() == str(os.getpid())
    assert not (tmp_path / "run" / "train.lock").exists() and lock.file.closed
