"""benchmarks/results.py: a kept run is recognised by its config, so a benchmark resumes rather than trains again."""
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import vae_utils as vu

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from results import kept_result, kept_row, mean_sd, same_config, write_results  # noqa: E402


def test_a_config_written_before_a_field_existed_is_the_same_run():
    config = vu.TrainConfig(epochs=2, seed=3)
    older = config.to_dict()
    del older["threads"]  # a result.json written before TrainConfig had the field
    assert same_config(older, config)


def test_a_config_that_differs_in_any_setting_is_another_run():
    config = vu.TrainConfig(epochs=2, seed=3)
    assert not same_config(replace(config, seed=4).to_dict(), config)
    assert not same_config(replace(config, threads=1).to_dict(), config)
    assert not same_config({**config.to_dict(), "unknown_field": 1}, config)
    assert not same_config(None, config)


def test_mean_sd_is_the_sample_standard_deviation():
    assert mean_sd([1.0, 3.0]) == (2.0, 2 ** 0.5)
    assert mean_sd([5.0]) == (5.0, 0.0)


def test_a_seed_scored_in_an_earlier_session_is_read_back_from_the_results_file(tmp_path):
    config = vu.TrainConfig(epochs=2, seed=1)
    row = {"seed": 1, "iwae_nll": 227.5, "iwae_k": 5000, "config": config.to_dict()}
    results = write_results(tmp_path / "results.json", rows=[{"seed": 0, "config": replace(config, seed=0).to_dict()},
                                                              row], summary={})
    assert kept_row(results, config, iwae_k=5000) == row
    assert kept_row(results, config, iwae_k=1000) is None  # scored with another k: score again
    assert kept_row(results, replace(config, seed=2)) is None  # not run yet
    assert kept_row(tmp_path / "absent.json", config) is None
    assert kept_row(None, config) is None


def test_a_seed_kept_in_its_run_folder_is_read_back_first_and_only_if_scored_with_the_same_k(tmp_path):
    config = vu.TrainConfig(epochs=2, seed=0)
    in_folder = {"seed": 0, "iwae_nll": 227.4, "iwae_k": 5000, "config": config.to_dict()}
    in_results = dict(in_folder, iwae_nll=227.9)
    (tmp_path / "result.json").write_text(json.dumps(in_folder))
    results = write_results(tmp_path / "results.json", rows=[in_results], summary={})
    assert kept_result(tmp_path / "result.json", results, config, iwae_k=5000) == in_folder
    assert kept_result(tmp_path / "absent.json", results, config, iwae_k=5000) == in_results  # run folder gone
    assert kept_result(tmp_path / "result.json", results, config, iwae_k=1000) is None  # another k: score again
    assert kept_result(tmp_path / "result.json", None, replace(config, seed=1), iwae_k=5000) is None


def test_the_binarization_spread_is_read_back_from_the_results_file_for_the_same_family_only(tmp_path):
    from reproduce import binarization_spread  # noqa: E402

    spread = {"run": "/elsewhere/vae/seed0", "draws": 2, "iwae_k": 100, "iwae_nll": [229.1, 229.3]}
    results = write_results(tmp_path / "results.json", rows=[], summary={}, binarization_spread=spread)
    assert binarization_spread(tmp_path / "vae" / "seed0", None, 2, 100, results) == spread
    with pytest.raises(FileNotFoundError):  # another family's spread: it scores its own best.pt, absent here
        binarization_spread(tmp_path / "vamp" / "seed0", None, 2, 100, results)
