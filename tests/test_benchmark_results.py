"""benchmarks/results.py: a kept run is recognised by its config, so a benchmark resumes rather than trains again."""
import sys
from dataclasses import replace
from pathlib import Path

import vae_utils as vu

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from results import mean_sd, same_config  # noqa: E402


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
