"""benchmarks/recipe_search.py judges recipes at equal wall-clock time on the validation split: its tiny form runs in
the suite, so the search is known to work before it is spent on a machine's hour."""
import os
import sys
from pathlib import Path

import pytest

from conftest import write_mnist_like

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import recipe_search  # noqa: E402


def test_each_candidate_trains_the_epochs_its_budget_buys_and_is_scored_on_validation(tmp_path, capsys):
    write_mnist_like(Path(os.environ["VAE_DATA_DIR"]), n_train=600)
    rows = recipe_search.main(["--tiny", "--json", str(tmp_path / "search.json")])
    assert [r["name"] for r in rows] == list(recipe_search.TINY)
    for row in rows:
        assert 1 <= row["epochs"] <= 3 and len(row["curve"]) == row["epochs"]
        assert row["config"]["val_size"] > 0 and row["config"]["epochs"] == row["epochs"]
        assert row["seconds"] > 0 and row["curve"][-1][1] == pytest.approx(row["val_neg_elbo"], abs=0.01)
    assert rows[1]["config"]["model"]["channels"] == [32]  # the candidate's override reached its model
    assert (tmp_path / "search.json").is_file() and "| candidate |" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [(["no-such-recipe"], "unknown candidate"),
                                           (["--budget", "0"], "--budget must be > 0")])
def test_bad_arguments_are_refused_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit):
        recipe_search.main(argv)
    assert message in capsys.readouterr().err
