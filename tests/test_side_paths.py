"""Nothing lost on the side paths around the guarantees: the 15 findings of issue #23, each pinned down."""
import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import vae_utils as vu
import vae_utils.data as data
from vae_utils.cli import main

from conftest import cli_exit_code as _exit_code, write_idx, write_image_folder, write_mnist_like


def _train(idx_root, out, *flags):
    main(["train", "--data-dir", str(idx_root), "--epochs", "1", "--batch-size", "16", "--latent-dim", "3",
          "--out", str(out), "--quiet", *flags])


# 1. A path the user names is read, never written
def test_evaluate_with_a_vae_as_the_classifier_refuses_and_keeps_the_file(idx_root, tmp_path, capsys):
    _train(idx_root, tmp_path / "run")
    vae = tmp_path / "run" / "last.pt"
    before = vae.read_bytes()
    assert _exit_code(["evaluate", str(vae), "--data-dir", str(idx_root), "--samples", "40",
                       "--classifier", str(vae)]) == 2
    assert vae.read_bytes() == before
    err = capsys.readouterr().err
    assert "is not a usable feature classifier" in err and "left as it is" in err


# 2. A finished run goes through every check of a resume
def test_resuming_a_finished_run_into_a_folder_of_another_run_is_refused(idx_root, tmp_path, capsys):
    _train(idx_root, tmp_path / "a")
    _train(idx_root, tmp_path / "b", "--seed", "1")
    metrics_b = (tmp_path / "b" / "metrics.json").read_text()
    assert _exit_code(["train", "--resume", str(tmp_path / "a" / "last.pt"), "--out", str(tmp_path / "b"),
                       "--data-dir", str(idx_root), "--quiet"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "b" / "metrics.json").read_text() == metrics_b


@pytest.mark.parametrize("flag", [["--lr", "10"], ["--latent-dim", "64"]])
def test_resuming_a_finished_run_with_other_settings_is_refused(idx_root, tmp_path, capsys, flag):
    _train(idx_root, tmp_path / "r")
    metrics = (tmp_path / "r" / "metrics.json").read_text()
    assert _exit_code(["train", "--out", str(tmp_path / "r"), "--resume", str(tmp_path / "r" / "last.pt"),
                       "--data-dir", str(idx_root), "--quiet", *flag]) == 2
    assert (tmp_path / "r" / "metrics.json").read_text() == metrics


def test_resuming_a_finished_run_with_its_own_settings_still_repairs_metrics(idx_root, tmp_path, capsys):
    _train(idx_root, tmp_path / "r")
    (tmp_path / "r" / "metrics.json").unlink()  # as if killed between last.pt and metrics.json
    main(["train", "--out", str(tmp_path / "r"), "--resume", str(tmp_path / "r" / "last.pt"),
          "--data-dir", str(idx_root), "--quiet"])
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["epochs"] == 1


# 3. Sizes are never trusted through stride-0 tensors
def test_weights_that_are_expanded_views_of_one_number_are_refused_before_any_allocation(tmp_path):
    path = vu.save_checkpoint(vu.VAE(latent_dim=2, channels=(4,), hidden_dim=0), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    big = vu.VAEConfig(latent_dim=4096, hidden_dim=65536)
    payload["model_config"] = big.to_dict()
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in vu.VAE(big).state_dict().items()}
    payload["model_state"] = {k: torch.zeros(1).expand(shape) for k, shape in shapes.items()}
    torch.save(payload, path)
    assert path.stat().st_size < 50_000
    with pytest.raises(vu.CheckpointError, match="stored data is smaller than their shape"):
        vu.load_checkpoint(path)


# 4. The decoded image cache checks its pixels
def test_a_damaged_decoded_cache_is_decoded_again_saying_so(tmp_path, capsys):
    write_image_folder(tmp_path / "pics", n=12)
    first = vu.load_dataset("folder", "train", root=tmp_path / "pics", image_size=16, channels=3)
    cache = next((tmp_path / "cache" / "decoded").glob("folder-*.pt"))
    raw = bytearray(cache.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 200] = bytes(255 - b for b in raw[middle:middle + 200])  # same size, other bytes
    cache.write_bytes(bytes(raw))
    again = vu.load_dataset("folder", "train", root=tmp_path / "pics", image_size=16, channels=3)
    assert torch.equal(again.images, first.images)
    assert "decoding the images again" in capsys.readouterr().err


# 5. Every unpacked file keeps its source stamp, wherever it lies
def test_a_replaced_gz_in_torchvisions_layout_is_read_again(tmp_path):
    raw = data.default_root() / "FashionMNIST" / "raw"
    write_mnist_like(raw, n_test=32, seed=0)
    assert len(vu.load_dataset("fashion-mnist", "test")) == 32  # unpacks beside the .gz files
    rng = np.random.default_rng(5)
    write_idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (16, 28, 28), dtype=np.uint8), compress=True)
    write_idx(raw / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 16, dtype=np.uint8), compress=True)
    assert len(vu.load_dataset("fashion-mnist", "test")) == 16


# 6-9. Image folders: FIFOs, decompression bombs, broken links, names that are not UTF-8
def test_a_fifo_named_like_an_image_is_skipped_and_named(tmp_path, capsys):
    write_image_folder(tmp_path / "pics", flat=True, n=9)
    os.mkfifo(tmp_path / "pics" / "x.png")
    ds = vu.load_dataset("folder", "train", root=tmp_path / "pics", image_size=16, channels=3)
    assert len(ds) > 0 and "not regular files (first: x.png)" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # the smaller images, over 1500 pixels
def test_a_decompression_bomb_is_a_bad_image(tmp_path, monkeypatch, capsys):
    write_image_folder(tmp_path / "pics", flat=True, n=9)
    from PIL import Image

    Image.new("L", (64, 64)).save(tmp_path / "pics" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # 64x64 is then more than twice the limit: a "bomb"
    with pytest.raises(ValueError, match="cannot be decoded.*--skip-bad-images") as info:
        vu.load_dataset("folder", "train", root=tmp_path / "pics", image_size=16, channels=3)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("link", ["dangling", "looping"])
def test_a_broken_symlink_is_skipped_as_a_bad_image(tmp_path, capsys, link):
    write_image_folder(tmp_path / "pics", flat=True, n=9)
    target = "nowhere.png" if link == "dangling" else "loop.png"
    os.symlink(target, tmp_path / "pics" / ("dangling.png" if link == "dangling" else "loop.png"))
    with pytest.raises(ValueError, match="cannot be decoded"):
        vu.load_dataset("folder", "train", root=tmp_path / "pics", image_size=16, channels=3)
    ds = vu.load_dataset("folder", "train", root=tmp_path / "pics", image_size=16, channels=3, skip_bad_images=True)
    assert len(ds) > 0 and "skipped 1 image(s) that cannot be decoded" in capsys.readouterr().err


def test_a_file_name_that_is_not_utf8_is_an_image_like_any_other(tmp_path):
    made = write_image_folder(tmp_path / "pics", flat=True, n=9)
    os.rename(made[0], os.fsdecode(os.fsencode(tmp_path / "pics") + b"/caf\xe9.png"))
    both = [vu.load_dataset("folder", split, root=tmp_path / "pics", image_size=16, channels=3)
            for split in ("train", "test")]
    assert sum(len(ds) for ds in both) == 9


# 10. A damaged resume field is named
@pytest.mark.parametrize("field, value, named", [
    ("kind", ["vae"], "records no model kind"),
    ("position", "1", "'position'"),
    ("history", 3, "'history'"),
    ("optimizer_state", {}, "'optimizer_state'"),
    ("partial_sums", {"total": "x"}, "'partial_sums'"),
    ("rng_state", {"python": (3, (1, 2), None), "numpy": {}, "torch": torch.zeros(3, dtype=torch.uint8),
                   "cuda": []}, "'rng_state'"),
])
def test_a_resume_file_with_one_damaged_field_names_it(idx_root, tmp_path, capsys, field, value, named):
    _train(idx_root, tmp_path / "r")
    path = tmp_path / "r" / "last.pt"
    payload = torch.load(path, weights_only=True)
    payload[field] = value
    torch.save(payload, path)
    assert _exit_code(["train", "--out", str(tmp_path / "r"), "--resume", str(path), "--epochs", "2",
                       "--data-dir", str(idx_root), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err and err.count("\n") == 1


def test_load_checkpoint_raises_checkpoint_error_for_a_kind_that_is_a_list(tmp_path):
    path = vu.save_checkpoint(vu.VAE(latent_dim=2), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["kind"] = ["vae"]
    torch.save(payload, path)
    with pytest.raises(vu.CheckpointError, match="records no model kind"):
        vu.load_checkpoint(path)


# 11-12. The CLI says what is wrong, before any work
def test_train_prior_on_a_vae_checkpoint_says_it_needs_a_vqvae(idx_root, tmp_path, capsys):
    _train(idx_root, tmp_path / "vae")
    assert _exit_code(["train-prior", str(tmp_path / "vae" / "last.pt"), "--out", str(tmp_path / "p"),
                       "--data-dir", str(idx_root)]) == 2
    assert "holds a vae model: train-prior needs a VQ-VAE checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("temperature", ["0", "-1"])
def test_a_temperature_that_is_not_positive_is_refused_before_any_work(tmp_path, monkeypatch, capsys,
                                                                          temperature):
    monkeypatch.setattr(vu.commands, "read_checkpoint", lambda *a, **k: pytest.fail("did work before checking"))
    assert _exit_code(["evaluate", str(tmp_path / "any.pt"), "--temperature", temperature]) == 2
    assert "--temperature" in capsys.readouterr().err


# 13. A full disk is called a full disk; existing checkpoints count as space
def test_unpacking_onto_a_full_disk_says_so(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "gz")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(data.shutil, "copyfileobj", full)
    with pytest.raises(OSError, match="no space left on the device.*errno 28") as info:
        vu.load_dataset("fashion-mnist", "train", root=tmp_path / "gz")
    assert "corrupt" not in str(info.value)


def test_the_space_check_of_a_resume_counts_the_checkpoints_it_replaces(idx_root, tmp_path, monkeypatch):
    _train(idx_root, tmp_path / "r")
    held = sum((tmp_path / "r" / n).stat().st_size for n in ("last.pt", "best.pt"))
    from vae_utils import rundir

    real = rundir.shutil.disk_usage
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda p: real(p)._replace(free=held // 2 + (17 << 20)))
    main(["train", "--out", str(tmp_path / "r"), "--resume", str(tmp_path / "r" / "last.pt"), "--epochs", "2",
          "--data-dir", str(idx_root), "--quiet"])
    assert len(vu.read_checkpoint(tmp_path / "r" / "last.pt")["history"]) == 2


# 14. A process killed while unpacking leaves nothing for good
def test_a_temporary_file_of_a_process_killed_while_unpacking_is_cleaned_up(tmp_path):
    write_mnist_like(tmp_path / "gz")
    script = textwrap.dedent(f"""
        import os, signal, shutil
        import vae_utils as vu, vae_utils.data as data
        def copy_then_die(src, dst, *args):
            dst.write(src.read(100))
            dst.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        data.shutil.copyfileobj = copy_then_die
        vu.load_dataset("fashion-mnist", "train", root={str(tmp_path / "gz")!r})
    """)
    env = {**os.environ, "VAE_DATA_DIR": str(tmp_path / "cache")}
    killed = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.DEVNULL)
    assert killed.wait(timeout=120) == -signal.SIGKILL
    left = list((tmp_path / "cache" / "unpacked").rglob(".*.tmp"))
    assert left and all(f".{killed.pid}." in f.name for f in left)  # the dead writer's pid names its leftovers
    vu.load_dataset("fashion-mnist", "train", root=tmp_path / "gz")
    assert not list((tmp_path / "cache" / "unpacked").rglob(".*.tmp"))


# 15. A pickle that is not a checkpoint: one line, no warning
def test_a_plain_malicious_pickle_is_one_line_and_runs_nothing(tmp_path, capsys):
    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format": "vae_utils.checkpoint", "x": Exploit()}, f, protocol=4)
    assert _exit_code(["evaluate", str(tmp_path / "evil.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a vae_utils checkpoint" in err and "Warning" not in err
    assert not (tmp_path / "pwned").exists()

