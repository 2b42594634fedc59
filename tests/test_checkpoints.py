"""Checkpoints: the file alone rebuilds the model; bad files are clear errors; nothing runs code on load."""
import os

import pytest
import torch

import vae_utils as vu
import vae_utils.checkpoints as ckpt


@pytest.mark.parametrize("config", [
    vu.VAEConfig(latent_dim=3, channels=(8, 16), hidden_dim=0),
    vu.VAEConfig(in_channels=3, image_size=32, latent_dim=8, channels=(8, 16, 32), likelihood="gaussian"),
])
def test_round_trip_rebuilds_the_same_model(tmp_path, config):
    model = vu.VAE(config)
    vu.save_checkpoint(model, tmp_path / "m.pt")
    loaded = vu.load_checkpoint(tmp_path / "m.pt")
    assert loaded.config == config and not loaded.training
    g = lambda: torch.Generator().manual_seed(0)
    assert torch.equal(model.sample(4, generator=g()), loaded.sample(4, generator=g()))


def test_training_state_is_kept_beside_the_weights(tmp_path):
    vu.save_checkpoint(vu.VAE(latent_dim=2), tmp_path / "m.pt", epoch=3, history=[{"epoch": 1, "loss": 2.0}])
    payload = vu.read_checkpoint(tmp_path / "m.pt")
    assert payload["epoch"] == 3 and payload["history"][0]["loss"] == 2.0
    assert payload["manifest"]["torch"] == str(torch.__version__)


def test_a_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        vu.load_checkpoint(tmp_path / "nope.pt")


def test_a_truncated_checkpoint_is_a_clear_error_naming_the_file(tmp_path):
    path = vu.save_checkpoint(vu.VAE(latent_dim=2), tmp_path / "m.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(vu.CheckpointError, match=r"m\.pt.*corrupt"):
        vu.load_checkpoint(path)


def test_a_text_file_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(vu.CheckpointError, match="notes.pt"):
        vu.load_checkpoint(tmp_path / "notes.pt")


def test_a_foreign_state_dict_is_not_a_checkpoint(tmp_path):
    torch.save(vu.VAE(latent_dim=2).state_dict(), tmp_path / "raw.pt")
    with pytest.raises(vu.CheckpointError, match="not a vae_utils checkpoint"):
        vu.load_checkpoint(tmp_path / "raw.pt")


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EXPLOIT_MARKER']}",))


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EXPLOIT_MARKER", str(marker))
    torch.save({"format": ckpt.FORMAT, "payload": _Exploit()}, tmp_path / "evil.pt")
    with pytest.raises(vu.CheckpointError, match="evil.pt"):
        vu.load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_a_newer_format_version_asks_for_an_upgrade(tmp_path):
    path = vu.save_checkpoint(vu.VAE(latent_dim=2), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = ckpt.FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(vu.CheckpointError, match="newer.*upgrade"):
        vu.load_checkpoint(path)


def test_loading_into_a_different_architecture_lists_the_differences(tmp_path):
    path = vu.save_checkpoint(vu.VAE(latent_dim=2, hidden_dim=32), tmp_path / "m.pt")
    with pytest.raises(vu.CheckpointError, match=r"latent_dim: checkpoint 2, model 8; hidden_dim: checkpoint 32, model 256"):
        vu.load_checkpoint(path, model=vu.VAE(latent_dim=8))
    same = vu.VAE(latent_dim=2, hidden_dim=32)
    assert vu.load_checkpoint(path, model=same) is same


def test_a_failed_write_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    path = vu.save_checkpoint(vu.VAE(latent_dim=2), tmp_path / "m.pt")
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        vu.save_checkpoint(vu.VAE(latent_dim=5), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind
