"""The default recipe's 10 epochs, eager or with `TrainConfig(compile=True)` (forward + loss under torch.compile,
backward through AOTAutograd; vae_utils/compiling.py; issue "Speed, round three", docs/speed.md): prints one JSON
line of training seconds (compilation included), seconds per epoch and the test -ELBO. Run the two modes
alternately, each in a fresh process; the second compiled run finds inductor's cache warm.

    for m in eager compiled eager compiled; do python benchmarks/compile_run.py $m; done

`--recipe long --epochs 10` times the long binarized recipe's step the same way (a 10-epoch schedule: the same
work per epoch as its 175), scored on the test split binarized once, as benchmarks/long_binarized.py does.
"""
from __future__ import annotations

import argparse
import json

import vae_utils as vu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("eager", "compiled"))
    parser.add_argument("--recipe", default=None, help="a named recipe (TrainConfig.recipe), e.g. long; default: "
                                                       "the default recipe")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    args = parser.parse_args()
    mode, overrides = args.mode, {} if args.epochs is None else {"epochs": args.epochs}
    config = (vu.TrainConfig(compile=mode == "compiled", **overrides) if args.recipe is None else
              vu.TrainConfig.recipe(args.recipe, compile=mode == "compiled", **overrides))
    train, test = vu.load_dataset("fashion-mnist", "train"), vu.load_dataset("fashion-mnist", "test")
    test = vu.binarize(test, seed=0) if config.binarize else test
    vu.set_seed(config.seed)
    history = vu.train(vu.VAE(config.model), train, test, config, progress=False)
    print(json.dumps({"mode": mode, "recipe": args.recipe or "default",
                      "train_s": round(sum(h["train_seconds"] for h in history), 1),
                      "epoch_s": [round(h["train_seconds"], 1) for h in history],
                      "test_neg_elbo": round(history[-1]["test_neg_elbo"], 3)}))


if __name__ == "__main__":
    main()
