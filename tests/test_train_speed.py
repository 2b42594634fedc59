"""benchmarks/train_speed.py's round-four verdicts: the anytime comparison and the time spread, on made-up runs."""
import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import train_speed  # noqa: E402


def _run(points, seconds=None):
    history = [{"epoch": i + 1, "seconds": t, "neg_elbo": e} for i, (t, e) in enumerate(points)]
    return {"history": history, "train_seconds": seconds or points[-1][0], "test_neg_elbo": points[-1][1]}


def test_the_anytime_curve_is_the_last_finished_epochs_figure():
    curve = [(10.0, 260.0), (20.0, 250.0)]
    assert train_speed.curve_at(curve, 5.0) is None
    assert train_speed.curve_at(curve, 10.0) == 260.0 and train_speed.curve_at(curve, 19.9) == 260.0
    assert train_speed.median_curve([_run([(9, 262), (19, 251)]), _run([(11, 258), (21, 249)]),
                                     _run([(10, 260), (30, 250)])]) == [(10, 260), (21, 250)]


def test_ours_is_below_everywhere_only_if_no_epoch_end_of_either_curve_finds_it_behind():
    theirs = [(5.0, 255.0), (10.0, 250.0), (15.0, 246.0)]
    assert train_speed.below_everywhere([(6.0, 249.0), (12.0, 244.0)], theirs) == []
    assert train_speed.below_everywhere([(6.0, 249.0), (16.0, 245.0)], theirs) == [15.0]  # from 15 to 16 s: 249 >= 246
    assert train_speed.below_everywhere([(3.0, 300.0), (6.0, 249.0)], theirs) == [5.0, 15.0]
    assert train_speed.below_everywhere([(3.0, 300.0), (4.0, 240.0)], theirs) == []  # 300 counts only before theirs


def test_round_four_verdicts_name_each_criterion_with_its_figure():
    runs = {"vae_utils-default": [_run([(8, 250), (16, 239)]), _run([(9, 250), (17, 239.5)])],
            "pythae-vae": [_run([(10, 252), (20, 244)]), _run([(10, 252), (19, 244)])],
            "pytorch-example-mlp": [_run([(12, 251), (24, 245)])]}
    med = {name: {"train_seconds": sorted(r["train_seconds"] for r in rs)[len(rs) // 2],
                  "test_neg_elbo": min(r["test_neg_elbo"] for r in rs)} for name, rs in runs.items()}
    v = train_speed.round_four_verdicts(runs, med)
    assert v["time_vs_pythae"]["met"] and v["anytime_below_pythae"]["met"]
    assert v["gain_over_better_peer_nats"] == {"value": 5.0, "target": ">= 4", "met": True}
    assert v["time_spread_seconds"]["value"] == [1.0, 1.0] and v["time_spread_seconds"]["met"]


def test_a_candidate_is_judged_by_the_same_verdicts_under_its_own_name():
    runs = {"vae_utils-default": [_run([(8, 250), (16, 241)])],
            "vae_utils-latent-16-9ep": [_run([(6, 249), (12, 239)])],
            "pythae-vae": [_run([(10, 252), (20, 244)])]}
    med = {name: {"train_seconds": rs[0]["train_seconds"], "test_neg_elbo": rs[0]["test_neg_elbo"]}
           for name, rs in runs.items()}
    theirs = train_speed.round_four_verdicts(runs, med, "vae_utils-latent-16-9ep")
    assert theirs["time_vs_pythae"]["value"] == 0.6 and theirs["gain_over_better_peer_nats"]["value"] == 5.0
    assert train_speed.round_four_verdicts(runs, med)["gain_over_better_peer_nats"]["value"] == 3.0


def test_candidates_are_named_with_their_epochs_and_bad_ones_say_what_to_write():
    assert train_speed.parse_candidate("latent-16:9") == ("latent-16", 9)
    assert train_speed.candidate_name("latent-16", 9) == "vae_utils-latent-16-9ep"
    with pytest.raises(argparse.ArgumentTypeError, match="unknown candidate 'latent-99'"):
        train_speed.parse_candidate("latent-99:9")
    for spec in ("latent-16", "latent-16:0", "latent-16:x"):
        with pytest.raises(argparse.ArgumentTypeError, match="NAME:EPOCHS"):
            train_speed.parse_candidate(spec)
