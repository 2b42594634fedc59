"""Runs you can watch: every CLI run leaves a TensorBoard log that TensorBoard's own reader reads back, a resumed run
appends to it without repeating steps, and logging changes nothing in the training itself."""
import json

import pytest
import torch

import vae_utils as vu
from vae_utils.cli import main

from conftest import SMALL, blob_data

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _read(folder):
    log = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    log.Reload()
    return log


def _train(argv, capsys) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_a_cli_run_logs_every_epoch_its_steps_images_and_hyperparameters(idx_root, tmp_path, capsys):
    out = tmp_path / "run"
    _train(["train", "--data-dir", str(idx_root), "--epochs", "2", "--batch-size", "4", "--latent-dim", "4",
            "--val-size", "16", "--out", str(out), "--quiet"], capsys)
    log = _read(out / "tensorboard")
    tags = log.Tags()
    assert {"validation/neg_elbo", "validation/recon", "validation/kl", "epoch/train_loss", "epoch/train_seconds",
            "train/loss", "train/recon", "train/kl", "train/lr", "train/grad_norm"} <= set(tags["scalars"])
    assert not any(tag.startswith("test") for tag in tags["scalars"])  # the curves never show the test split
    steps_per_epoch = 48 // 4
    assert [e.step for e in log.Scalars("validation/neg_elbo")] == [steps_per_epoch, 2 * steps_per_epoch]
    assert [e.step for e in log.Scalars("train/loss")] == [10, 20]  # every 10th of steps 1 to 24
    assert {"samples", "reconstructions"} <= set(tags["images"])  # after the last epoch
    metrics = json.loads((out / "metrics.json").read_text())
    history = metrics["history"]
    assert log.Scalars("validation/neg_elbo")[-1].value == pytest.approx(history[-1]["val_neg_elbo"])
    assert "_hparams_/session_start_info" in log.PluginTagToContent("hparams")  # one row of the HPARAMS table
    assert log.Scalars("hparam/test_neg_elbo")[-1].value == pytest.approx(metrics["test_neg_elbo"])


def test_test_every_epoch_is_logged_under_its_own_name(idx_root, tmp_path, capsys):
    out = tmp_path / "run"
    _train(["train", "--data-dir", str(idx_root), "--epochs", "2", "--latent-dim", "4", "--test-every-epoch",
            "--out", str(out), "--quiet"], capsys)
    assert len(_read(out / "tensorboard").Scalars("test_every_epoch/neg_elbo")) == 2


def test_a_resumed_run_appends_to_its_log_without_repeating_steps(idx_root, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--data-dir", str(idx_root), "--batch-size", "8", "--latent-dim", "4", "--quiet"]
    _train(["train", "--epochs", "1", "--val-size", "16", "--out", str(out), *common], capsys)
    _train(["train", "--resume", str(out / "last.pt"), "--epochs", "2", *common[:2], "--quiet"], capsys)
    steps = [e.step for e in _read(out / "tensorboard").Scalars("validation/neg_elbo")]
    assert steps == [6, 12]


def test_no_tensorboard_writes_no_log(idx_root, tmp_path, capsys):
    _train(["train", "--data-dir", str(idx_root), "--epochs", "1", "--latent-dim", "4", "--out", str(tmp_path / "r"),
            "--no-tensorboard", "--quiet"], capsys)
    assert not (tmp_path / "r" / "tensorboard").exists()


def test_logging_changes_nothing_in_the_training(tmp_path):
    config = vu.TrainConfig(epochs=2, batch_size=16, model=SMALL)
    plain, logged = vu.VAE(SMALL), vu.VAE(SMALL)
    logged.load_state_dict(plain.state_dict())
    vu.train(plain, blob_data(64), blob_data(16, seed=1), config, progress=False)
    vu.train(logged, blob_data(64), blob_data(16, seed=1), config, progress=False, log_dir=tmp_path / "tb")
    assert all(torch.equal(p, q) for p, q in zip(plain.state_dict().values(), logged.state_dict().values()))
    assert (tmp_path / "tb").is_dir()
