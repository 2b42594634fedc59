"""Checkpoints: the file alone rebuilds the model; bad files are clear errors; nothing runs code on load."""
import os
from pathlib import Path

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


def test_a_config_that_does_not_fit_the_weights_fails_before_allocating(tmp_path):
    path = vu.save_checkpoint(vu.VAE(latent_dim=2, hidden_dim=32), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["hidden_dim"] = 65536  # would allocate gigabytes if built for real
    torch.save(payload, path)
    with pytest.raises(vu.CheckpointError, match="do not fit the saved config"):
        vu.load_checkpoint(path)


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["model_config"].pop("likelihood"), r"missing field\(s\) \['likelihood'\]"),
    (lambda p: p.update(format_version=-1), "invalid checkpoint format version -1"),
    (lambda p: p["model_state"]["decoder.deconvs.0.bias"].fill_(float("nan")), "NaN or infinite weights"),
    (lambda p: p.update(kind="gan"), "no model family 'gan' is registered.*import the module that defines it"),
])
def test_damaged_checkpoints_are_refused_instead_of_loading_silently(tmp_path, edit, message):
    path = vu.save_checkpoint(vu.VAE(latent_dim=2), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)
    with pytest.raises(vu.CheckpointError, match=message):
        vu.load_checkpoint(path)


def test_checkpoints_name_their_family_and_load_as_it(tmp_path):
    vae = vu.save_checkpoint(vu.VAE(latent_dim=2), tmp_path / "vae.pt")
    clf = vu.save_checkpoint(vu.FeatureClassifier(in_channels=1, n_classes=4), tmp_path / "clf.pt")
    assert vu.read_checkpoint(vae)["kind"] == "vae" and vu.read_checkpoint(clf)["kind"] == "feature-classifier"
    assert isinstance(vu.load_checkpoint(clf), vu.FeatureClassifier) and vu.load_checkpoint(clf).n_classes == 4
    with pytest.raises(vu.CheckpointError, match="holds a feature-classifier checkpoint, not a vae"):
        vu.load_checkpoint(clf, kind="vae")


def test_a_version_1_checkpoint_without_a_kind_still_loads_as_a_vae(tmp_path):
    path = vu.save_checkpoint(vu.VAE(latent_dim=2), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    del payload["kind"]
    payload["format_version"] = 1
    torch.save(payload, path)
    assert isinstance(vu.load_checkpoint(path), vu.VAE)


def test_the_refusal_of_code_running_pickles_never_advises_weights_only_false(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLOIT_MARKER", str(tmp_path / "pwned"))
    torch.save({"format": ckpt.FORMAT, "payload": _Exploit()}, tmp_path / "evil.pt")
    with pytest.raises(vu.CheckpointError) as info:
        vu.load_checkpoint(tmp_path / "evil.pt")
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name, family, reconstruction_sum", [
    ("vae-format1.pt", "VAE", 408.8886413574219),  # format 1: no kind, no res_blocks field
    ("vqvae-format2.pt", "VQVAE", 422.9976806640625),  # format 2: the kind recorded
])
def test_files_written_by_earlier_versions_load_and_compute_what_they_computed(name, family, reconstruction_sum):
    """Small files written by vae_utils before the families moved to vae_utils/models/ (commit d61c6cd), with the
    sums of their reconstructions of a fixed ramp image as that version computed them."""
    model = vu.load_checkpoint(Path(__file__).parent / "data" / name)
    assert type(model).__name__ == family and type(model) is vu.model_class(model.kind)
    x = torch.linspace(0, 1, 28 * 28).view(1, 1, 28, 28)
    assert model.reconstruct(x).sum().item() == pytest.approx(reconstruction_sum, abs=1e-4)
