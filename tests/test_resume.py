"""Training loses nothing: bit-exact resume, checkpoints on Ctrl-C/SIGTERM, crash-safe writes, one run per folder,
no checkpoint of a broken model, early errors."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import vae_utils as vu
from conftest import SMALL, blob_data


def _run(tmp_path, name, epochs, resume=None, callback=None, overwrite=False, **overrides):
    vu.set_seed(0)
    model = vu.VAE(SMALL)
    config = vu.TrainConfig(epochs=epochs, batch_size=16, model=SMALL, **overrides)
    history = vu.train(model, blob_data(), blob_data(32), config, out_dir=tmp_path / name, resume=resume,
                       overwrite=overwrite, progress=False, on_epoch_end=callback)
    return model, history


def _same(a, b):
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def _losses(history):
    return [{k: v for k, v in h.items() if k != "train_seconds"} for h in history]


@pytest.mark.parametrize("precision", ["fp32", "auto"])
@pytest.mark.parametrize("schedule", ["constant", "onecycle"])
def test_a_run_stopped_mid_epoch_and_resumed_is_bit_identical(tmp_path, precision, schedule):
    straight, h_straight = _run(tmp_path, "straight", 2, precision=precision, lr_schedule=schedule)

    def stop_after_first(record):
        os.kill(os.getpid(), signal.SIGINT)  # arrives between steps of epoch 2

    with pytest.raises(vu.TrainingInterrupted):
        _run(tmp_path, "split", 2, callback=stop_after_first, precision=precision, lr_schedule=schedule)
    resumed, h_resumed = _run(tmp_path, "split", 2, resume=tmp_path / "split" / "last.pt", precision=precision,
                              lr_schedule=schedule)
    _same(straight, resumed)
    assert _losses(h_straight) == _losses(h_resumed)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])  # Adam, and AdamW
def test_one_epoch_then_resume_to_two_equals_two_straight(tmp_path, weight_decay):
    # with a constant lr; a 1cycle schedule depends on the total, so extending a finished run bends its curve
    settings = dict(lr_schedule="constant", weight_decay=weight_decay)
    straight, h_straight = _run(tmp_path, "straight", 2, **settings)
    _run(tmp_path, "split", 1, **settings)
    resumed, h_resumed = _run(tmp_path, "split", 2, resume=tmp_path / "split" / "last.pt", **settings)
    _same(straight, resumed)
    assert _losses(h_straight) == _losses(h_resumed)


def test_an_interrupt_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    with pytest.raises(vu.TrainingInterrupted, match=r"SIGTERM at epoch 2, step 1/4.*resume=") as info:
        _run(tmp_path, "run", 3, callback=lambda r: os.kill(os.getpid(), signal.SIGTERM))
    # the command it prints runs as it stands (test_cli: resume without --out continues in the folder)
    assert f"`python -m vae_utils train --resume {tmp_path / 'run' / 'last.pt'}`" in str(info.value)
    state = vu.read_checkpoint(tmp_path / "run" / "last.pt")
    assert state["position"] == {"epoch": 2, "step": 1}
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers are restored


def test_checkpoints_hold_everything_a_continuation_needs(tmp_path):
    _run(tmp_path, "run", 2)
    state = vu.read_checkpoint(tmp_path / "run" / "last.pt")
    assert {"model_state", "optimizer_state", "scheduler_state", "rng_state", "epoch_order_state", "history",
            "train_config", "model_config", "position", "manifest"} <= set(state)
    assert set(state["rng_state"]) == {"python", "numpy", "torch", "cuda"}
    assert len(state["manifest"]["data_sha256"]) == 64
    assert (tmp_path / "run" / "best.pt").is_file()


def test_resume_refuses_other_data_other_batch_size_and_finished_runs(tmp_path):
    _run(tmp_path, "run", 1)
    last = tmp_path / "run" / "last.pt"
    with pytest.raises(vu.CheckpointError, match="other data"):
        vu.train(vu.VAE(SMALL), blob_data(seed=1), None, vu.TrainConfig(epochs=2, batch_size=16, model=SMALL),
                 resume=last, progress=False)
    with pytest.raises(vu.CheckpointError, match="batch_size=16, not 8"):
        vu.train(vu.VAE(SMALL), blob_data(), None, vu.TrainConfig(epochs=2, batch_size=8, model=SMALL), resume=last,
                 progress=False)
    with pytest.raises(ValueError, match="already trained 1 epochs"):
        vu.train(vu.VAE(SMALL), blob_data(), None, vu.TrainConfig(epochs=1, batch_size=16, model=SMALL), resume=last,
                 progress=False)
    with pytest.raises(vu.CheckpointError, match="latent_dim"):
        vu.train(vu.VAE(SMALL, latent_dim=5), blob_data(), None, vu.TrainConfig(epochs=2, batch_size=16), resume=last,
                 progress=False)


def test_a_plain_saved_model_is_not_a_resumable_run(tmp_path):
    path = vu.save_checkpoint(vu.VAE(SMALL), tmp_path / "plain.pt")
    with pytest.raises(vu.CheckpointError, match="no training state"):
        vu.train(vu.VAE(SMALL), blob_data(), None, vu.TrainConfig(epochs=2, batch_size=16, model=SMALL), resume=path,
                 progress=False)


def test_skip_mode_drops_non_finite_batches_and_counts_them(tmp_path):
    images = blob_data().images.clone()
    ds = torch.utils.data.TensorDataset(images.float() / 255, torch.zeros(len(images)))
    ds.tensors[0][5, 0, 0, 0] = float("nan")  # one poisoned image: one bad batch per epoch
    gaussian = vu.VAEConfig(**{**SMALL.to_dict(), "likelihood": "gaussian"})  # no [0, 1] check to stop it first
    config = vu.TrainConfig(epochs=2, batch_size=16, model=gaussian, on_nonfinite="skip")
    history = vu.train(vu.VAE(gaussian), ds, None, config, progress=False)
    assert [h["skipped_steps"] for h in history] == [1, 1]
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in history)


def test_an_unwritable_output_folder_fails_before_training(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(OSError, match="cannot write checkpoints"):
        _run(tmp_path / "a-file", "run", 1)


def test_a_full_disk_fails_before_training(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 << 20, 10 << 20, 1 << 20))
    started = []
    with pytest.raises(OSError, match="only 1 MiB free"):
        _run(tmp_path, "run", 1, callback=started.append)
    assert started == []


KILLER = r"""
import sys, torch, vae_utils as vu
sys.path.insert(0, sys.argv[2])
from conftest import SMALL, blob_data
vu.set_seed(0)
config = vu.TrainConfig(epochs=100000, batch_size=64, model=SMALL)
print("ready", flush=True)
vu.train(vu.VAE(SMALL), blob_data(64), None, config, out_dir=sys.argv[1], progress=False)
"""


def test_sigkill_while_writing_checkpoints_never_leaves_a_broken_one(tmp_path):
    out = tmp_path / "run"
    tests_dir = os.path.dirname(__file__)
    for kill in range(4):
        proc = subprocess.Popen([sys.executable, "-c", KILLER, str(out), tests_dir], stdout=subprocess.PIPE)
        proc.stdout.readline()  # imports done
        deadline = time.time() + 30
        while not (out / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.05 + 0.37 * kill * torch.rand(()).item())  # a random moment, checkpoints every few ms
        proc.kill()
        proc.wait()
        model = vu.load_checkpoint(out / "last.pt")  # always whole
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_folder_holding_another_run_is_refused_unless_overwritten(tmp_path):
    _run(tmp_path, "run", 2)
    before = (tmp_path / "run" / "best.pt").read_bytes()
    with pytest.raises(FileExistsError, match=r"already holds a run .*resume=.*overwrite=True"):
        _run(tmp_path, "run", 1)
    assert (tmp_path / "run" / "best.pt").read_bytes() == before  # the good checkpoint is untouched
    _run(tmp_path, "run", 1, overwrite=True)
    assert len(vu.read_checkpoint(tmp_path / "run" / "best.pt")["history"]) == 1  # no file of the old run left


HOLDER = r"""
import sys, time, vae_utils as vu
sys.path.insert(0, sys.argv[2])
from conftest import SMALL, blob_data
print("ready", flush=True)
vu.train(vu.VAE(SMALL), blob_data(64), None, vu.TrainConfig(epochs=100000, batch_size=64, model=SMALL),
         out_dir=sys.argv[1], progress=False)
"""


def test_a_second_run_into_the_same_folder_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), os.path.dirname(__file__)],
                            stdout=subprocess.PIPE)
    try:
        proc.stdout.readline()
        deadline = time.time() + 60
        while not (out / "last.pt").exists() and time.time() < deadline:
            time.sleep(0.05)
        with pytest.raises(FileExistsError, match=rf"another training process \(pid {proc.pid}\)"):
            _run(tmp_path, "run", 1, overwrite=True)
    finally:
        proc.kill()
        proc.wait()
    _run(tmp_path, "run", 1, overwrite=True)  # the kernel released the dead process's lock


def _break_on_last_step(model, step):
    """Make the step-th training step give NaN gradients: the loss of that step is finite, the weights after are not."""
    loss, calls = model.loss, []

    def spy(x, config=None, *args, **kwargs):
        calls.append(config is not None)  # training steps pass their config; evaluation does not
        terms = loss(x, config, *args, **kwargs)
        if config is not None and sum(calls) == step:
            terms.total.register_hook(lambda g: g * float("nan"))
        return terms
    model.loss = spy


def test_no_checkpoint_is_written_after_a_step_that_broke_the_model(tmp_path):
    vu.set_seed(0)
    model = vu.VAE(SMALL)
    _break_on_last_step(model, 8)  # the last step of epoch 2 (4 steps per epoch)
    config = vu.TrainConfig(epochs=3, batch_size=16, model=SMALL)
    with pytest.raises(vu.NonFiniteLossError, match=r"after epoch 2, .*non-finite.*last\.pt.*is kept"):
        vu.train(model, blob_data(), blob_data(32), config, out_dir=tmp_path / "run", progress=False)
    for name in ("last.pt", "best.pt"):
        kept = vu.read_checkpoint(tmp_path / "run" / name)
        assert len(kept["history"]) == 1 and all(torch.isfinite(p).all() for p in kept["model_state"].values())


def test_an_overflowing_kl_weight_is_blamed_on_beta_not_the_learning_rate():
    config = vu.TrainConfig(epochs=1, batch_size=16, beta=1e300, model=SMALL)
    with pytest.raises(vu.NonFiniteLossError, match=r"beta=1e\+300 times the KL overflows.*Nothing was saved"):
        vu.train(vu.VAE(SMALL), blob_data(), None, config, progress=False)


def test_an_epoch_whose_every_step_was_skipped_stops_the_run(tmp_path):
    ds = torch.utils.data.TensorDataset(torch.full((32, 1, 28, 28), float("nan")), torch.zeros(32))
    gaussian = vu.VAEConfig(**{**SMALL.to_dict(), "likelihood": "gaussian"})
    config = vu.TrainConfig(epochs=2, batch_size=16, model=gaussian, on_nonfinite="skip")
    with pytest.raises(vu.NonFiniteLossError, match="every step of epoch 1 .* skipped"):
        vu.train(vu.VAE(gaussian), ds, None, config, out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_best_is_written_before_last_so_a_kill_between_them_leaves_a_resumable_pair(tmp_path, monkeypatch):
    import vae_utils.training as training

    written = []
    save = training.save_checkpoint
    monkeypatch.setattr(training, "save_checkpoint", lambda model, path, **kw: (written.append(path.name),
                                                                                 save(model, path, **kw))[1])
    _run(tmp_path, "run", 2, lr_schedule="constant")
    assert written == ["best.pt", "last.pt", "best.pt", "last.pt"]


def test_resuming_with_changed_settings_is_refused_naming_each(tmp_path):
    _run(tmp_path, "run", 1)
    with pytest.raises(vu.CheckpointError, match=r"lr=0\.003, not 0\.01; beta=1\.0, not 2\.0.*only epochs and device"):
        vu.train(vu.VAE(SMALL), blob_data(), None,
                 vu.TrainConfig(epochs=2, batch_size=16, lr=0.01, beta=2.0, model=SMALL),
                 resume=tmp_path / "run" / "last.pt", progress=False)


def test_a_checkpoint_missing_training_state_is_a_clear_error(tmp_path):
    _run(tmp_path, "run", 1)
    state = vu.read_checkpoint(tmp_path / "run" / "last.pt")
    del state["rng_state"]
    torch.save(state, tmp_path / "damaged.pt")
    with pytest.raises(vu.CheckpointError, match=r"lacks the training state \['rng_state'\]"):
        vu.train(vu.VAE(SMALL), blob_data(), None, vu.TrainConfig(epochs=2, batch_size=16, model=SMALL),
                 resume=tmp_path / "damaged.pt", progress=False)


def test_temporary_files_of_dead_processes_are_cleaned_at_the_start(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".last.pt.{dead.stdout.strip()}.x1y2z3.tmp"
    live = out / f".last.pt.{os.getpid()}.a1b2c3.tmp"  # a writer that still runs
    stale.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written")
    _run(tmp_path, "run", 1)
    assert not stale.exists() and live.exists()


def test_an_empty_output_folder_name_is_refused():
    with pytest.raises(ValueError, match="empty string"):
        vu.train(vu.VAE(SMALL), blob_data(), None, vu.TrainConfig(epochs=1, model=SMALL), out_dir="", progress=False)


def test_fp16_trains_with_a_grad_scaler_and_resumes_bit_exactly(tmp_path):
    straight, h_straight = _run(tmp_path, "straight", 2, precision="fp16", lr_schedule="constant")
    _run(tmp_path, "split", 1, precision="fp16", lr_schedule="constant")
    assert vu.read_checkpoint(tmp_path / "split" / "last.pt")["scaler_state"]["scale"] > 0
    resumed, h_resumed = _run(tmp_path, "split", 2, resume=tmp_path / "split" / "last.pt", precision="fp16",
                              lr_schedule="constant")
    _same(straight, resumed)
    assert _losses(h_straight) == _losses(h_resumed)
    assert h_straight[-1]["train_loss"] < h_straight[0]["train_loss"]
