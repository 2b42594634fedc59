"""TrainConfig.compile: the training step under torch.compile trains the same model, resumes bit-exactly, compiles
once per batch shape, and is refused with what to do where it cannot build kernels."""
import pytest
import torch
import torch._dynamo
import torch._inductor.config

import vae_utils as vu
from conftest import SMALL, blob_data
from vae_utils.cli import build_parser
from vae_utils.commands import train_config


def _run(tmp_path, name, epochs, resume=None, **overrides):
    vu.set_seed(0)
    model = vu.VAE(SMALL)
    config = vu.TrainConfig(epochs=epochs, batch_size=16, model=SMALL, lr_schedule="constant", **overrides)
    history = vu.train(model, blob_data(), blob_data(32), config, out_dir=tmp_path / name, resume=resume,
                       progress=False)
    return model, history


def _losses(history):
    return [{k: v for k, v in h.items() if k != "train_seconds"} for h in history]


def test_a_compiled_run_resumed_is_bit_identical_to_one_trained_straight(tmp_path):
    straight, h_straight = _run(tmp_path, "straight", 2, compile=True)
    _run(tmp_path, "split", 1, compile=True)
    resumed, h_resumed = _run(tmp_path, "split", 2, resume=tmp_path / "split" / "last.pt", compile=True)
    assert all(torch.equal(p, q) for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()))
    assert _losses(h_straight) == _losses(h_resumed)
    assert vu.read_checkpoint(tmp_path / "split" / "last.pt")["train_config"]["compile"] is True


def test_compiled_training_follows_eager_training_to_rounding_in_fp32(tmp_path):
    eager, h_eager = _run(tmp_path, "eager", 2, precision="fp32", val_size=16)
    compiled, h_compiled = _run(tmp_path, "compiled", 2, precision="fp32", compile=True, val_size=16)
    for e, c in zip(h_eager, h_compiled):  # the weights drift apart by more (Adam's steps amplify rounding)
        assert c["train_loss"] == pytest.approx(e["train_loss"], rel=1e-4)
        assert c["val_neg_elbo"] == pytest.approx(e["val_neg_elbo"], rel=1e-4)
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints keep their weights' names
    assert vu.load_checkpoint(tmp_path / "compiled" / "last.pt").config == SMALL


def test_kl_warmup_does_not_recompile_at_every_step(tmp_path):
    # the warm-up factor changes every step; a recompile per value would hit dynamo's limit and fall back to eager
    torch._dynamo.reset()
    with torch._dynamo.config.patch(recompile_limit=1, fail_on_recompile_limit_hit=True):
        _, history = _run(tmp_path, "warmup", 2, compile=True, kl_warmup_epochs=2)  # 64 images: every batch full
    assert len(history) == 2


def test_an_eager_run_may_be_resumed_compiled(tmp_path):
    _run(tmp_path, "run", 1)
    _, history = _run(tmp_path, "run", 2, resume=tmp_path / "run" / "last.pt", compile=True)
    assert len(history) == 2 and vu.read_checkpoint(tmp_path / "run" / "last.pt")["train_config"]["compile"]


def test_no_cpp_compiler_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", ("no-such-c++-compiler",))
    with pytest.raises(vu.CompileUnavailableError, match=r"C\+\+ compiler.*CXX.*compile=False"):
        _run(tmp_path, "run", 1, compile=True, device="cpu")
    assert not (tmp_path / "run").exists()


def test_the_command_line_switches_compilation_on_and_off_on_resume(tmp_path):
    parser = build_parser()
    assert train_config(parser.parse_args(["train", "--out", "x", "--compile"])).compile is True
    assert train_config(parser.parse_args(["train", "--out", "x"])).compile is False
    _run(tmp_path, "run", 1, compile=False)
    saved = vu.read_checkpoint(tmp_path / "run" / "last.pt")
    args = parser.parse_args(["train", "--resume", str(tmp_path / "run" / "last.pt"), "--compile"])
    assert train_config(args, saved).compile is True
    args = parser.parse_args(["train", "--resume", str(tmp_path / "run" / "last.pt"), "--no-compile"])
    assert train_config(args, saved).compile is False


def test_compile_must_be_a_bool():
    with pytest.raises(ValueError, match="compile"):
        vu.TrainConfig(compile="yes")
