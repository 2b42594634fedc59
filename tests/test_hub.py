"""Weights in the ecosystem's formats: save_pretrained / from_pretrained (config.json + model.safetensors, no
pickle), the Hugging Face Hub's cache and offline mode, push_to_hub with its model card."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

import vae_utils as vu
from vae_utils.hub import WEIGHTS_NAME, _holds

from conftest import SMALL, blob_data

TINY_LADDER = dict(channels=(4, 8), hidden_dim=16, width=12, latent_dims=(2, 3))
FAMILIES = {"vae": SMALL.to_dict(), "vamp": {**SMALL.to_dict(), "pseudo_inputs": 3},
            "iaf": {**SMALL.to_dict(), "flow_hidden": 8, "context_dim": 4},
            "factorvae": {**SMALL.to_dict(), "disc_hidden": 8, "disc_layers": 2}, "wae": SMALL.to_dict(),
            "ladder-vamp": {**TINY_LADDER, "pseudo_inputs": 3}, "hvae": dict(widths=(8, 4), z_channels=2)}


def _model(kind):
    torch.manual_seed(0)
    family = vu.model_class(kind)
    return family(family.config_class(**FAMILIES[kind])).eval()


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_a_saved_folder_rebuilds_the_same_model_from_its_config_and_weights(kind, tmp_path):
    model = _model(kind)
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["_kind"] == kind and config["_class_name"] == type(model).__name__
    loaded = vu.from_pretrained(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert vu.evaluate(loaded, blob_data(16)) == vu.evaluate(model, blob_data(16))


def test_the_weights_file_is_plain_safetensors_without_pickle(tmp_path):
    model = _model("vae")
    vu.save_pretrained(model, tmp_path / "m")
    raw = (tmp_path / "m" / "model.safetensors").read_bytes()
    assert b"\x80\x04" not in raw[:64] and raw[8:9] == b"{"  # an 8-byte length, then a JSON header: no pickle
    with safe_open(tmp_path / "m" / "model.safetensors", "pt") as f:
        assert f.metadata() == {"format": "pt", "kind": "vae"} and set(f.keys()) == set(model.state_dict())


def test_a_folder_that_is_not_a_saved_model_is_one_clear_line(tmp_path):
    model = _model("vae")
    model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(vu.CheckpointError, match="not a readable safetensors file"):
        vu.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({"_format": "diffusers", "latent_dim": 4}))
    with pytest.raises(vu.CheckpointError, match="not a vae_utils config"):
        vu.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        vu.from_pretrained(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="nor a Hub repository id"):
        vu.from_pretrained(tmp_path / "nothing-here")
    other = _model("vae")
    other.save_pretrained(tmp_path / "n")
    state = {k: v for k, v in other.state_dict().items()}
    state[next(iter(state))] = torch.zeros(3)  # weights that do not fit the config
    from safetensors.torch import save_file
    save_file(state, tmp_path / "n" / "model.safetensors")
    with pytest.raises(vu.CheckpointError, match="do not fit the saved config"):
        vu.from_pretrained(tmp_path / "n")


def _hub_cache(root, repo_id, folder):
    """A Hugging Face cache holding repo_id's main revision as the files of folder (the layout huggingface_hub
    writes: refs/main names a snapshot)."""
    repo = root / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in folder.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())


def _offline(code, home):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(home)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_offline_a_cached_hub_repository_loads_and_a_missing_one_says_what_to_do(tmp_path):
    model = _model("vae")
    model.save_pretrained(tmp_path / "m")
    _hub_cache(tmp_path / "hf", "someone/vae", tmp_path / "m")
    done = _offline("import vae_utils as vu; m = vu.from_pretrained('someone/vae'); print(type(m).__name__, "
                    "m.config.latent_dim)", tmp_path / "hf")
    assert done.returncode == 0 and done.stdout.split() == ["VAE", str(SMALL.latent_dim)], done.stderr
    missing = _offline("import vae_utils as vu\ntry:\n    vu.from_pretrained('someone/other')\n"
                       "except FileNotFoundError as err:\n    print(err)", tmp_path / "hf")
    assert "someone/other is not in the Hugging Face cache" in missing.stdout and "HF_HUB_OFFLINE" in missing.stdout


def test_push_to_hub_uploads_the_folder_with_its_model_card(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls.append(("create", repo_id, private, exist_ok))

        def upload_folder(self, repo_id, folder_path, commit_message):
            names = sorted(os.listdir(folder_path))
            card = open(os.path.join(folder_path, "README.md")).read()
            calls.append(("upload", repo_id, names, card))
            return f"https://huggingface.co/{repo_id}/commit/abc"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = _model("vae")
    card = vu.model_card(model, report={"neg_elbo": 240.6, "iwae_k": 100}, command="make run",
                         data="Fashion-MNIST")
    url = model.push_to_hub("someone/vae", card=card)
    assert url.endswith("/commit/abc") and ("create", "someone/vae", False, True) in calls
    _, repo, names, uploaded = calls[-1]
    assert names == ["README.md", "config.json", "model.safetensors"] and uploaded == card
    assert "library_name: vae_utils" in card and "| neg_elbo | 240.6000 |" in card and "make run" in card


def test_saving_the_same_weights_again_leaves_the_file_byte_for_byte_and_a_changed_weight_rewrites_it(tmp_path):
    torch.manual_seed(0)
    model = vu.VAE(vu.VAEConfig(latent_dim=3, channels=(4, 8), hidden_dim=16))
    assert not _holds(tmp_path / "vae" / WEIGHTS_NAME, model.state_dict())  # nothing saved yet
    weights = vu.save_pretrained(model, tmp_path / "vae") / WEIGHTS_NAME
    first = weights.read_bytes()
    assert _holds(weights, model.state_dict())
    vu.save_pretrained(model, tmp_path / "vae")
    assert weights.read_bytes() == first  # safetensors would have ordered its header anew
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-6  # one weight, by a hair
    assert not _holds(weights, model.state_dict())
    vu.save_pretrained(model, tmp_path / "vae")
    assert _holds(weights, model.state_dict()) and weights.read_bytes() != first
