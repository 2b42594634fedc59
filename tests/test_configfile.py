"""Runs as TOML files: every preset round-trips, configs/ is what the code writes, bad files are refused in one line,
and `train --config` of a run's own config.toml reproduces it bit for bit."""
import json
from pathlib import Path

import pytest
import torch

import vae_utils as vu
from vae_utils.cli import main
from vae_utils.configfile import PRESET_HEADER, config_from_file, preset_configs, to_toml, write_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("name", sorted(preset_configs()))
def test_every_preset_reads_back_from_its_file_as_the_same_config(name, tmp_path):
    config = preset_configs()[name]
    path = write_config(config, tmp_path / "c.toml")
    assert config_from_file(path) == config


def test_configs_folder_holds_exactly_what_the_code_writes():
    expected = {f"{name}.toml": PRESET_HEADER.format(file=f"configs/{name}.toml") for name in preset_configs()}
    assert sorted(p.name for p in CONFIGS.glob("*.toml")) == sorted(expected), \
        "run: python -m vae_utils.configfile configs"
    for file, header in expected.items():
        text = "".join(f"# {line}\n" for line in header.splitlines()) + to_toml(preset_configs()[file[:-5]])
        assert (CONFIGS / file).read_text() == text, f"configs/{file} is stale: python -m vae_utils.configfile configs"


def test_a_short_file_is_its_data_sets_preset_with_changes(tmp_path):
    (tmp_path / "c.toml").write_text('dataset = "cifar10"\nepochs = 3\n\n[model]\nlatent_dim = 8\n')
    config = config_from_file(tmp_path / "c.toml")
    preset = vu.TrainConfig.for_dataset("cifar10")
    assert config.epochs == 3 and config.batch_size == preset.batch_size == 128
    assert config.model == vu.VAEConfig(**{**preset.model.to_dict(), "latent_dim": 8})
    assert config_from_file(tmp_path / "c.toml", epochs=5, model={"hidden_dim": 64}).model.hidden_dim == 64


@pytest.mark.parametrize("text, message", [
    ("epochz = 3\n", "unknown key 'epochz'"),
    ("epochs = 0\n", "epochs=0 is not allowed"),
    ('epochs = "ten"\n', "epochs='ten' is not allowed"),
    ("[model]\nlatent_dim = -1\n", "model.latent_dim=-1 is not allowed"),
    ("[model]\nlatentdim = 4\n", "unknown key 'model.latentdim' for a vae model"),
    ('model_kind = "nope"\n', "model_kind: no model family 'nope'"),
    ("lr = \n", "is not valid TOML"),
])
def test_bad_files_are_refused_in_one_line_naming_the_key_and_the_file(tmp_path, text, message):
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(ValueError) as err:
        config_from_file(tmp_path / "bad.toml")
    assert message in str(err.value) and str(tmp_path / "bad.toml") in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_train_config_of_a_runs_own_file_reproduces_it_bit_for_bit(idx_root, tmp_path, capsys):
    common = ["--data-dir", str(idx_root), "--quiet"]
    assert main(["train", "--epochs", "1", "--batch-size", "16", "--latent-dim", "4", "--model-channels", "4", "8",
                 "--hidden-dim", "16", "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["train", "--config", str(tmp_path / "a" / "config.toml"), "--out", str(tmp_path / "b"), *common]) == 0
    a, b = (vu.read_checkpoint(tmp_path / run / "last.pt") for run in "ab")
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])
    assert a["train_config"] == b["train_config"]
    capsys.readouterr()
    assert main(["train", "--config", str(tmp_path / "a" / "config.toml"), "--epochs", "2", "--out",
                 str(tmp_path / "c"), *common]) == 0  # a flag overrides the file
    assert json.loads(capsys.readouterr().out)["epochs"] == 2
    with pytest.raises(SystemExit):
        main(["train", "--config", str(tmp_path / "a" / "config.toml"), "--resume", str(tmp_path / "a" / "last.pt")])
    assert "starts a new run from the file" in capsys.readouterr().err
