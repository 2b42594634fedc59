"""Recipe search at a fixed time budget: short 1cycle schedules sized to about pythae's training time.

Each candidate is a full run (its 1cycle schedule spans its own epochs) on 50,000 training images, trained one after
another in this process (never two at once: they would fight over the cores), scored with the single-sample -ELBO
of the 10,000 held-out validation images after every epoch: candidates are compared on validation, never on the
test split. Prints one JSON line per candidate: training seconds, seconds per epoch and the validation -ELBO curve.

    python benchmarks/recipe_search.py [NAME ...]      # all candidates, or the named ones
"""
from __future__ import annotations

import json
import sys

import vae_utils as vu

VAL_SIZE = 10_000  # held out of the training split: the figure candidates are compared on
# name: (VAEConfig overrides, TrainConfig overrides); epochs chosen so that each trains for about 50 s here
CANDIDATES = {
    "default-6ep": ({}, dict(epochs=6)),
    "bs512-lr4e-3-7ep": ({}, dict(epochs=7, batch_size=512, lr=4e-3)),
    "h512-6ep": (dict(hidden_dim=512), dict(epochs=6)),
    "c32-64-4ep": (dict(channels=(32, 64)), dict(epochs=4)),
    "lat64-6ep": (dict(latent_dim=64), dict(epochs=6)),
    "bs128-lr2e-3-5ep": ({}, dict(epochs=5, batch_size=128, lr=2e-3)),
}


def main(names: list[str]) -> None:
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        sys.exit(f"unknown candidate(s) {unknown}: choose from {sorted(CANDIDATES)}")
    train = vu.load_dataset("fashion-mnist", "train")
    for name in names or CANDIDATES:
        model_overrides, train_overrides = CANDIDATES[name]
        model = vu.VAE(vu.VAEConfig(**model_overrides))
        config = vu.TrainConfig(model=model.config, val_size=VAL_SIZE, **train_overrides)
        history = vu.train(model, train, None, config, progress=False)
        print(json.dumps({"name": name, "seconds": round(sum(h["train_seconds"] for h in history), 1),
                          "per_epoch": [round(h["train_seconds"], 1) for h in history],
                          "val_neg_elbo": round(history[-1]["val_neg_elbo"], 3),
                          "curve": [round(h["val_neg_elbo"], 2) for h in history]}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
