"""benchmarks/build_zoo.py: where a run's checkpoint is not on this machine, the zoo keeps what an earlier build made;
an unchanged model is recognised by its weights."""
import json
import sys
from pathlib import Path

import torch

import vae_utils as vu

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from build_zoo import earlier_row, same_weights  # noqa: E402

BUILD = {"git_commit": "f74bdaf", "date": "2026-12-05", "command": "python benchmarks/build_zoo.py --ladder x"}


def index_with(rows: dict) -> dict:
    """A zoo.json as build_zoo.py writes it: the build's record, then the rows."""
    return {**BUILD, "torch": "2.14.1", "models": rows}


def folder(zoo: Path, name: str) -> None:
    """A zoo folder with its config.json (what save_pretrained writes last)."""
    (zoo / name).mkdir(parents=True)
    (zoo / name / "config.json").write_text(json.dumps({"_kind": "ladder"}))


def test_a_row_whose_checkpoint_is_missing_is_kept_with_the_build_that_wrote_it(tmp_path):
    folder(tmp_path, "ladder")
    row = {"family": "ladder", "test": {"metric": "neg_elbo", "value": 230.21}}
    kept = earlier_row(index_with({"ladder": row}), "ladder", tmp_path)
    assert kept == {**row, "built": BUILD}  # the file's commit, date and command: its folder came from that build


def test_a_row_stamped_by_its_own_build_keeps_that_stamp(tmp_path):
    folder(tmp_path, "ladder")
    own = {"git_commit": "aaaaaaa", "date": "2026-12-01", "command": "python benchmarks/build_zoo.py"}
    kept = earlier_row(index_with({"ladder": {"family": "ladder", "built": own}}), "ladder", tmp_path)
    assert kept["built"] == own


def test_nothing_is_kept_without_the_row_or_without_its_folder(tmp_path):
    assert earlier_row({}, "ladder", tmp_path) is None  # no earlier zoo.json
    assert earlier_row(index_with({}), "ladder", tmp_path) is None  # never built
    assert earlier_row(index_with({"ladder": {"family": "ladder"}}), "ladder", tmp_path) is None  # folder gone


def test_a_model_is_the_same_only_if_every_saved_tensor_equals_its_own(tmp_path):
    torch.manual_seed(0)
    model = vu.VAE(vu.VAEConfig(latent_dim=3, channels=(4, 8), hidden_dim=16))
    assert not same_weights(tmp_path / "vae", model)  # nothing saved yet
    vu.save_pretrained(model, tmp_path / "vae")
    assert same_weights(tmp_path / "vae", model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-6  # one weight, by a hair
    assert not same_weights(tmp_path / "vae", model)
