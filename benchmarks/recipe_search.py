"""Recipes by quality per second: each candidate trains for the same wall-clock budget, pythae's measured training
time on this machine in this run, and is judged by the validation -ELBO it reaches (never the test split).

    python benchmarks/recipe_search.py [NAME ...] [--budget S] [--seed 0] [--json benchmarks/results/recipe_search.json]
    python benchmarks/recipe_search.py --tiny     # the suite's check: two candidates, a few hundred images

The budget: pythae's VAE trains its 10 epochs first (`train_speed.train_pythae`, a fresh process) and its training
seconds are the budget, unless --budget gives one. Each candidate then times 30 of its own steps, takes the number
of epochs that fits the budget (its 1cycle schedule spans exactly those), trains on the 50,000 training images with
10,000 held out (the protocol's split, seeded), and is scored on the held-out images after every epoch. One JSON line
per candidate, then a table ranked by the last validation -ELBO with each run's seconds against the budget: a
candidate that overran by more than 10% is marked, since the ranking is only fair at equal time. One process, one
training at a time.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from itertools import accumulate
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).parent))
import vae_utils as vu  # noqa: E402
from results import write_results  # noqa: E402

VAL_SIZE = 10_000  # held out of the training split: the figure candidates are compared on
PROBE_STEPS = 30  # steps timed to size each candidate's epochs
OVERRUN = 1.10  # a run longer than this times the budget is marked in the table
# name: (VAEConfig overrides, TrainConfig overrides); the default is TrainConfig()'s recipe
CANDIDATES = {
    "default": ({}, {}),
    "bs512-lr4e-3": ({}, dict(batch_size=512, lr=4e-3)),
    "bs128-lr2e-3": ({}, dict(batch_size=128, lr=2e-3)),
    "one-conv-32": (dict(channels=(32,)), {}),
    "wide-32-64": (dict(channels=(32, 64)), {}),
    "hidden-512": (dict(hidden_dim=512), {}),
    "latent-16": (dict(latent_dim=16), {}),
    "no-hidden": (dict(hidden_dim=0), {}),
    "default+compile": ({}, dict(compile=True)),
    "threads-2": ({}, dict(threads=2)),  # torch's threads fixed at 2: no load following (the spread's suspect)
}
TINY = ("default", "one-conv-32")


def candidate_config(name: str, seed: int, epochs: int = 1, subset: Optional[int] = None) -> vu.TrainConfig:
    """The named candidate's TrainConfig: the default recipe with its overrides, the protocol's validation split
    (a fifth of a `subset` of the training images, which the caller loads)."""
    model_overrides, train_overrides = CANDIDATES[name]
    base = vu.TrainConfig(seed=seed, val_size=VAL_SIZE if subset is None else subset // 5)
    return replace(base, epochs=epochs, model=replace(base.model, **model_overrides), **train_overrides)


def seconds_per_step(config: vu.TrainConfig, train: vu.ImageDataset, steps: int = PROBE_STEPS) -> float:
    """Training seconds per step of this config, from `steps` steps after one warm-up epoch of the same length."""
    probe = train.subset(min(len(train), config.batch_size * steps))
    trial = replace(config, epochs=2, val_size=0, patience=0)
    vu.set_seed(config.seed)
    history = vu.train(vu.VAE(trial.model), probe, None, trial, progress=False)
    return history[-1]["train_seconds"] / -(-len(probe) // config.batch_size)


def run_candidate(name: str, budget: float, train: vu.ImageDataset, seed: int, subset: Optional[int],
                  max_epochs: int = 200) -> dict:
    """Train one candidate for the epochs that fit the budget (at most max_epochs); its seconds and validation
    curve."""
    config = candidate_config(name, seed, subset=subset)
    per_step = seconds_per_step(config, train)
    steps_per_epoch = -(-(len(train) - config.val_size) // config.batch_size)
    epochs = min(max_epochs, max(1, round(budget / (per_step * steps_per_epoch))))
    config = replace(config, epochs=epochs)
    vu.set_seed(seed)
    model = vu.VAE(config.model)
    history = vu.train(model, train, None, config, progress=False)
    elapsed = list(accumulate(h["train_seconds"] for h in history))
    seconds = elapsed[-1]
    return {"name": name, "epochs": epochs, "seconds": round(seconds, 1), "of_budget": round(seconds / budget, 3),
            "probe_seconds_per_step": round(per_step, 5), "val_neg_elbo": round(history[-1]["val_neg_elbo"], 3),
            "curve": [[round(t, 1), round(h["val_neg_elbo"], 2)] for t, h in zip(elapsed, history)],
            "parameters": sum(p.numel() for p in model.parameters()), "config": config.to_dict()}


def pythae_budget(seed: int) -> float:
    """pythae's VAE's training seconds for its 10 epochs on this machine, in a fresh process."""
    import train_speed
    result = train_speed.run_isolated("train_pythae", 10, seed, None, torch.device("cpu"))
    return result["train_seconds"]


def main(argv: Optional[list[str]] = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"candidates (default: all of {', '.join(CANDIDATES)})")
    parser.add_argument("--budget", type=float, default=None, help="seconds per candidate (default: pythae's "
                        "measured training time, 10 epochs, in this run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="two candidates on 600 images, a 2 s budget, at most 3 "
                        "epochs (the suite's check)")
    parser.add_argument("--json", type=Path, default=None, help="write the results file here")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(CANDIDATES))
    if unknown:
        parser.error(f"unknown candidate(s) {unknown}: choose from {sorted(CANDIDATES)}")
    names = args.names or (TINY if args.tiny else list(CANDIDATES))
    subset = 600 if args.tiny else None
    if args.budget is not None and args.budget <= 0:
        parser.error(f"--budget must be > 0 seconds, got {args.budget}")
    budget = args.budget or (2.0 if args.tiny else pythae_budget(args.seed))
    train = vu.load_dataset("fashion-mnist", "train", subset=subset)
    rows = []
    for name in names:
        start = time.perf_counter()
        rows.append(run_candidate(name, budget, train, args.seed, subset, 3 if args.tiny else 200) | {
            "wall_seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "config"}), flush=True)
        if args.json:  # after every candidate: a stopped run leaves what it has
            write_results(args.json, budget_seconds=budget, budget_from="--budget" if args.budget else "pythae-vae",
                          seed=args.seed, rows=rows)
    print(f"\nbudget {budget:.1f} s per candidate ({'given' if args.budget or args.tiny else 'pythae, 10 epochs'}); "
          f"validation -ELBO on {rows[0]['config']['val_size']:,} held-out training images\n")
    print("| candidate | epochs | seconds (of budget) | validation -ELBO |\n|---|---|---|---|")
    for row in sorted(rows, key=lambda r: r["val_neg_elbo"]):
        mark = " (overran)" if row["of_budget"] > OVERRUN else ""
        print(f"| {row['name']} | {row['epochs']} | {row['seconds']:.1f} ({row['of_budget']:.2f}x){mark} | "
              f"{row['val_neg_elbo']:.2f} |")
    return rows


if __name__ == "__main__":
    main()
