"""benchmarks/build_zoo.py: where a run's checkpoint is not on this machine, the zoo keeps what an earlier build made."""
import json
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from build_zoo import earlier_row  # noqa: E402

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
