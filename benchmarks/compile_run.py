"""The default recipe's 10 epochs, eager or with `TrainConfig(compile=True)` (forward + loss under torch.compile,
backward through AOTAutograd; vae_utils/compiling.py; issue "Speed, round three", docs/speed.md): prints one JSON
line of training seconds (compilation included), seconds per epoch and the test -ELBO. Run the two modes
alternately, each in a fresh process; the second compiled run finds inductor's cache warm.

    for m in eager compiled eager compiled; do python benchmarks/compile_run.py $m; done
"""
from __future__ import annotations

import argparse
import json

import vae_utils as vu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("eager", "compiled"))
    mode = parser.parse_args().mode
    config = vu.TrainConfig(compile=mode == "compiled")
    train, test = vu.load_dataset("fashion-mnist", "train"), vu.load_dataset("fashion-mnist", "test")
    vu.set_seed(config.seed)
    history = vu.train(vu.VAE(config.model), train, test, config, progress=False)
    print(json.dumps({"mode": mode, "train_s": round(sum(h["train_seconds"] for h in history), 1),
                      "epoch_s": [round(h["train_seconds"], 1) for h in history],
                      "test_neg_elbo": round(history[-1]["test_neg_elbo"], 3)}))


if __name__ == "__main__":
    main()
