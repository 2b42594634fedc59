"""Nothing lost, round four (issue #35): the new surfaces' side paths, each finding pinned down by its number."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import vae_utils as vu
from vae_utils.cli import main

from conftest import cli_exit_code as _exit_code, write_mnist_like


def _train(idx_root, out, *flags):
    main(["train", "--data-dir", str(idx_root), "--epochs", "1", "--subset", "32", "--batch-size", "16",
          "--latent-dim", "3", "--out", str(out), "--quiet", "--no-tensorboard", *flags])


# 1. A refused resume leaves the run's config.toml as the run wrote it
def test_a_refused_resume_does_not_rewrite_the_runs_config_file(idx_root, tmp_path, capsys):
    _train(idx_root, tmp_path / "a")
    before = (tmp_path / "a" / "config.toml").read_text()
    assert _exit_code(["train", "--resume", str(tmp_path / "a" / "last.pt"), "--epochs", "2", "--lr", "0.1",
                       "--quiet"]) == 2
    assert "lr=" in capsys.readouterr().err
    assert (tmp_path / "a" / "config.toml").read_text() == before


# 6. A likelihood's standard deviation must be finite in every family
@pytest.mark.parametrize("kind", ["vae", "hvae", "ladder"])
@pytest.mark.parametrize("std", [float("inf"), float("nan"), 0.0])
def test_gaussian_std_must_be_a_finite_positive_number_in_every_family(kind, std):
    with pytest.raises(ValueError, match="gaussian_std=.* a finite number > 0"):
        vu.model_class(kind).config_class(gaussian_std=std)


# 15. traverse --image names an existing test image
@pytest.mark.parametrize("image", ["-1", "-1000000000"])
def test_traverse_refuses_a_negative_image_index_in_one_line(idx_root, tmp_path, capsys, image):
    _train(idx_root, tmp_path / "a")
    assert _exit_code(["traverse", str(tmp_path / "a" / "last.pt"), "--image", image, "--out",
                       str(tmp_path / "t.png"), "--data-dir", str(idx_root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--image {image}: expected the index of a test image" in err
    assert not (tmp_path / "t.png").exists()


# 16. A config file whose model is not a table
def test_a_config_file_whose_model_is_a_number_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('dataset = "fashion-mnist"\nmodel = 5\n')
    assert _exit_code(["train", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'model' must be a table ([model])" in err and "int 5" in err


# 17. vu.pretrained with a name of the wrong type
@pytest.mark.parametrize("name", [["fashion-mnist-vae"], {"a": 1}, 3])
def test_pretrained_with_a_name_that_is_not_a_string_is_a_value_error(name):
    with pytest.raises(ValueError, match="no pretrained model"):
        vu.pretrained(name)


# 22. A forged list of a million entries is refused in a short line
def test_a_forged_huge_value_is_shortened_in_the_error_message():
    with pytest.raises(ValueError) as info:
        vu.LadderConfig(latent_dims=tuple([5000] * 10**6))
    assert len(str(info.value)) < 400 and "1,000,000 entries" in str(info.value)
    with pytest.raises(ValueError) as info:
        vu.HVAEConfig(groups=tuple(range(10**6)))
    assert len(str(info.value)) < 400


def test_short_values_are_shown_whole():
    assert vu.config.short_repr([1, 2, 3]) == "[1, 2, 3]"
    assert json.loads(json.dumps(vu.config.short_repr("x" * 10))) == repr("x" * 10)


# 21. The ladder's width names itself when it is too large for its decoder
def test_a_ladder_width_above_the_decoders_limit_is_refused_by_its_own_name():
    with pytest.raises(ValueError, match=r"^width=5000 is not allowed: expected an integer from 1 to 4096"):
        vu.LadderConfig(width=5000)


# 18. A malicious zip checkpoint is refused as one, in the installed torch's words
def test_a_zip_checkpoint_with_a_code_running_global_is_refused_as_such(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"format": "vae_utils.checkpoint", "x": Exploit()}, tmp_path / "evil.pt")  # a zip, as torch.save writes
    with pytest.raises(vu.CheckpointError, match="holds objects that would run code when loaded") as info:
        vu.read_checkpoint(tmp_path / "evil.pt")
    assert "corrupt" not in str(info.value) and "weights_only=False" not in str(info.value)
    assert not (tmp_path / "pwned").exists()


# 19. Asking for CUDA where there is none is said as such, not as a corrupt file
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("load", [lambda: vu.pretrained("fashion-mnist-vae", "cuda"),
                                  lambda: vu.load_checkpoint(vu.checkpoints.PRETRAINED_DIRS[0] / "fashion-mnist-vae.pt",
                                                             "cuda:0")], ids=["pretrained", "load_checkpoint"])
def test_cuda_without_a_cuda_device_says_so(load):
    with pytest.raises(ValueError, match="this machine has no CUDA device.*map_location='cpu'"):
        load()


# 20. A refused resume of a finished run does not announce a write it will not make
def test_a_refused_resume_of_a_finished_run_announces_nothing(idx_root, tmp_path, capsys):
    _train(idx_root, tmp_path / "a")
    capsys.readouterr()
    assert _exit_code(["train", "--resume", str(tmp_path / "a" / "last.pt"), "--lr", "0.1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "writing" not in err and err.count("\n") == 1


def _forged(tmp_path, edit) -> str:
    """A copy of run a's last.pt with edit(payload) applied, as a forger would write it."""
    payload = vu.read_checkpoint(tmp_path / "a" / "last.pt")
    edit(payload)
    torch.save(payload, tmp_path / "forged.pt")
    return str(tmp_path / "forged.pt")


# 4. A damaged position is checked against the history and the epoch's steps
@pytest.mark.parametrize("position, what", [({"epoch": 10**9, "step": 0}, "the history holds 1 finished epochs"),
                                            ({"epoch": 2, "step": 10**6}, "step 1000000 of an epoch of 2 steps")])
def test_a_damaged_position_is_refused_before_anything_trains(idx_root, tmp_path, capsys, position, what):
    _train(idx_root, tmp_path / "a")
    forged = _forged(tmp_path, lambda p: p.update(position=position))
    assert _exit_code(["train", "--resume", forged, "--epochs", "3", "--out", str(tmp_path / "b"), "--quiet",
                       "--data-dir", str(idx_root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'position' is damaged" in err and what in err
    assert not (tmp_path / "b" / "metrics.json").exists()


# 7. Optimizer state tensors of a forged shape never reach fused Adam
@pytest.mark.parametrize("name, value", [("exp_avg", torch.zeros(3)), ("exp_avg_sq", torch.zeros(2, 2)),
                                         ("step", torch.zeros(5)), ("exp_avg", torch.zeros(3, dtype=torch.long))])
def test_forged_optimizer_state_shapes_are_refused_in_one_line(idx_root, tmp_path, capsys, name, value):
    _train(idx_root, tmp_path / "a")
    forged = _forged(tmp_path, lambda p: p["optimizer_state"]["state"][0].update({name: value}))
    assert _exit_code(["train", "--resume", forged, "--epochs", "2", "--out", str(tmp_path / "b"), "--quiet",
                       "--data-dir", str(idx_root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'optimizer_state' is damaged" in err and name in err


# 9. A conditional model's picture keeps to --n
def test_sampling_a_cvae_with_more_classes_than_n_is_refused_and_n_is_kept(tmp_path, capsys):
    family = vu.model_class("cvae")
    model = family(family.config_class(latent_dim=4, channels=(8, 16), hidden_dim=32, num_classes=100))
    path = vu.save_checkpoint(model, tmp_path / "cvae.pt")
    assert _exit_code(["sample", str(path), "--n", "1", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "100 classes" in err and not (tmp_path / "x.png").exists()
    assert main(["sample", str(path), "--n", "100", "--out", str(tmp_path / "y.png")]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 100


# 8. --subset is taken before the images are resized
def test_a_subset_is_taken_before_resizing(idx_root, monkeypatch):
    resized = []
    real = vu.data._resized
    monkeypatch.setattr(vu.data, "_resized", lambda dataset, preprocess: resized.append(len(dataset)) or real(
        dataset, preprocess))
    data = vu.load_dataset("fashion-mnist", "train", root=idx_root, subset=5, image_size=64)
    assert resized == [5] and data.image_shape == (1, 64, 64) and len(data) == 5


# 3. A config.toml the run did not write is kept unless --overwrite
def test_a_users_config_file_in_the_output_folder_is_not_overwritten(idx_root, tmp_path, capsys):
    exp = tmp_path / "exp"
    exp.mkdir()
    text = f'# my experiment\ndataset = "fashion-mnist"\nepochs = 1\nsubset = 32\nbatch_size = 16\n' \
           f'data_root = "{idx_root}"\n[model]\nlatent_dim = 3\n'
    (exp / "config.toml").write_text(text)
    assert _exit_code(["train", "--config", str(exp / "config.toml"), "--out", str(exp), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --overwrite" in err
    assert (exp / "config.toml").read_text() == text and not (exp / "last.pt").exists()
    assert main(["train", "--config", str(exp / "config.toml"), "--out", str(exp), "--quiet", "--overwrite",
                 "--no-tensorboard"]) == 0
    assert "# my experiment" not in (exp / "config.toml").read_text()


def test_a_run_killed_before_its_first_checkpoint_starts_again_over_its_own_config_file(idx_root, tmp_path):
    _train(idx_root, tmp_path / "a")
    (tmp_path / "a" / "last.pt").unlink()  # as if killed before the first checkpoint: only its own config.toml
    (tmp_path / "a" / "best.pt").unlink()
    _train(idx_root, tmp_path / "a")
    assert (tmp_path / "a" / "last.pt").is_file()


# 5. Data roots whose names a config file cannot hold as they are
def test_a_data_root_with_a_del_character_round_trips_through_config_toml(tmp_path, capsys):
    root = tmp_path / "data\x7fset"
    write_mnist_like(root)
    _train(root, tmp_path / "a")
    capsys.readouterr()
    saved = vu.configfile.config_from_file(tmp_path / "a" / "config.toml")
    assert saved.data_root == str(root)


def test_a_data_root_whose_name_is_not_utf8_trains_and_is_left_out_of_config_toml(tmp_path):
    root = Path(os.fsdecode(bytes(tmp_path) + b"/donn\xe9es"))
    write_mnist_like(root)
    main(["train", "--data-dir", str(root), "--epochs", "1", "--subset", "32", "--batch-size", "16", "--latent-dim",
          "3", "--out", str(tmp_path / "a"), "--quiet"])  # with its TensorBoard log
    text = (tmp_path / "a" / "config.toml").read_text()
    assert "# data_root left out: its value is not UTF-8" in text and "\\ndata_root" not in text
    assert vu.configfile.config_from_file(tmp_path / "a" / "config.toml").data_root is None


# 2. Pictures are written atomically: a link is replaced, not its target; a failed write keeps the old picture
def test_a_picture_over_a_link_replaces_the_link_and_keeps_its_target(idx_root, tmp_path, capsys):
    _train(idx_root, tmp_path / "a")
    checkpoint = tmp_path / "a" / "last.pt"
    before = checkpoint.read_bytes()
    (tmp_path / "latest.png").symlink_to(checkpoint)
    assert main(["sample", str(checkpoint), "--n", "4", "--out", str(tmp_path / "latest.png")]) == 0
    assert checkpoint.read_bytes() == before
    assert not (tmp_path / "latest.png").is_symlink()
    assert (tmp_path / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_picture_that_cannot_be_written_keeps_the_old_one_and_names_its_path(tmp_path, monkeypatch):
    path = vu.save_images(torch.zeros(4, 1, 8, 8), tmp_path / "grid.png", nrow=2)
    before = path.read_bytes()

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=f"cannot write the picture {path}: No space left on device"):
        vu.save_images(torch.ones(4, 1, 8, 8), path, nrow=2)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["grid.png"]


# 14. A classifier for other images is refused before any work, in one line
def test_evaluate_with_a_classifier_for_colour_images_on_grey_ones_is_one_line(idx_root, tmp_path, capsys):
    _train(idx_root, tmp_path / "a")
    colour = vu.FeatureClassifier(vu.ClassifierConfig(in_channels=3))
    vu.save_checkpoint(colour, tmp_path / "clf.pt", test_accuracy=0.5)
    capsys.readouterr()
    assert _exit_code(["evaluate", str(tmp_path / "a" / "last.pt"), "--data-dir", str(idx_root), "--samples", "40",
                       "--iwae-k", "2", "--classifier", str(tmp_path / "clf.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a usable feature classifier" in err and "3 channel(s)" in err


# 10, 23. The dSprites release is checked member by member, before its data are read, and errors name the file
def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_a_dsprites_file_declaring_a_huge_array_is_refused_from_its_header(tmp_path):
    path = tmp_path / vu.dsprites.RELEASE_FILE
    import zipfile
    header = {"descr": "|u1", "fortran_order": False, "shape": (10**6, 640, 640)}  # 409 GB declared, none stored
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("imgs.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, header)
        with archive.open("latents_classes.npy", "w") as f:
            np.lib.format.write_array(f, np.zeros((3, 6), np.int64))
    with pytest.raises(ValueError, match=f"{path}: imgs holds uint8 of shape \\(1000000, 640, 640\\)"):
        vu.dsprites.read_release(path, "train")


@pytest.mark.parametrize("damage", ["truncated", "short member"])
def test_a_damaged_dsprites_archive_is_one_error_naming_the_file(tmp_path, monkeypatch, damage):
    monkeypatch.setattr(vu.dsprites, "FACTOR_SIZES", (1, 3, 2, 2, 2, 2))
    n = 48
    path = _npz(tmp_path / vu.dsprites.RELEASE_FILE, imgs=np.zeros((n, 64, 64), np.uint8),
                latents_classes=vu.dsprites.grid_factors(torch.arange(n)).numpy())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else data.replace(b"\x00" * 4096, b"", 1))
    with pytest.raises(ValueError, match=str(path)) as info:
        vu.dsprites.read_release(path, "train")
    assert "allow_pickle" not in str(info.value)


def test_a_dsprites_file_of_objects_is_refused_without_advice_to_load_it_unsafely(tmp_path):
    path = _npz(tmp_path / vu.dsprites.RELEASE_FILE, imgs=np.array([object()]), latents_classes=np.zeros((1, 6)))
    with pytest.raises(ValueError) as info:
        vu.dsprites.read_release(path, "train")
    assert str(path) in str(info.value) and "allow_pickle" not in str(info.value)


# 11. What one IWAE step would decode is bounded before anything is allocated
def test_an_iwae_step_too_large_for_memory_is_refused_in_one_line(idx_root, tmp_path, capsys):
    assert _exit_code(["train", "--model", "iwae", "--k", "5000", "--batch-size", "256", "--data-dir", str(idx_root),
                       "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "batch_size=256 is not allowed: expected at most 68 with 5,000 samples" in err
    iwae = vu.model_class("iwae").config_class(k=5000)
    assert vu.TrainConfig(batch_size=68, model=iwae).batch_size == 68  # 68 x 5,000 x 784 values: under 2**28


# 12. --compile checks its compiler by compiling something tiny, before anything is written, in one line
@pytest.mark.parametrize("cxx", ["/bin/true", "/bin/false", "no-such-c++"])
def test_compile_without_a_working_compiler_is_one_line_before_anything_is_written(idx_root, tmp_path, capsys,
                                                                                   monkeypatch, cxx):
    from torch._inductor import cpp_builder
    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", lambda: cxx)  # the compiler inductor would use
    vu.compiling.compiles.cache_clear()
    assert _exit_code(["train", "--compile", "--data-dir", str(idx_root), "--epochs", "1", "--subset", "32",
                       "--batch-size", "16", "--latent-dim", "3", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a C++ compiler" in err
    assert not (tmp_path / "r" / "last.pt").exists() and not (tmp_path / "r" / "config.toml").exists()
    vu.compiling.compiles.cache_clear()


# 13. The TensorBoard log: an unwritable folder before training, a failing writer midway, each in one line
def test_an_unwritable_tensorboard_folder_is_one_line_before_training(idx_root, tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "tensorboard").write_text("a file where the log's folder would be")
    assert _exit_code(["train", "--data-dir", str(idx_root), "--epochs", "1", "--subset", "32", "--batch-size", "16",
                       "--latent-dim", "3", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot write the TensorBoard log in {tmp_path / 'r' / 'tensorboard'}" in err
    assert "--no-tensorboard" in err and not (tmp_path / "r" / "last.pt").exists()


def test_a_disk_filling_under_the_tensorboard_writer_is_one_line(idx_root, tmp_path, capsys, monkeypatch):
    from torch.utils.tensorboard import SummaryWriter

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(SummaryWriter, "add_scalar", full)
    assert _exit_code(["train", "--data-dir", str(idx_root), "--epochs", "1", "--subset", "32", "--batch-size", "4",
                       "--latent-dim", "3", "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the TensorBoard log" in err and "No space left" in err
