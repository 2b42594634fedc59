"""beta-VAE sweep (Higgins et al., 2017): train the default recipe for each beta and score it on the test split.

    python benchmarks/beta_sweep.py [--betas 0.5 1 2 4] [--epochs 10] [--iwae-k 100]

Prints a Markdown table (test -ELBO, IWAE NLL, KL, active units, Fréchet distance; nats per image) and writes
generated_images/beta_samples.png: one row of samples per beta, from the same latent draws.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import vae_utils as vu

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--betas", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--iwae-k", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()

    train_ds, test_ds = vu.load_dataset("fashion-mnist", "train"), vu.load_dataset("fashion-mnist", "test")
    device = vu.resolve_device("auto")
    classifier, accuracy = vu.load_or_train_classifier(None, train_ds, test_ds, device=device)  # the shipped one
    rows, samples = [], []
    for beta in args.betas:
        config = vu.TrainConfig(epochs=args.epochs, beta=beta, seed=args.seed)
        vu.set_seed(config.seed)
        model = vu.VAE(config.model)
        start = time.perf_counter()
        history = vu.train(model, train_ds, test_ds, config, progress=False)
        wall = time.perf_counter() - start
        report = vu.evaluation_report(model, test_ds, train_ds, classifier, iwae_k=args.iwae_k, seed=args.seed)
        rows.append({"beta": beta, "train_seconds": sum(h["train_seconds"] for h in history), "wall_seconds": wall,
                     **{k: report[k] for k in ("neg_elbo", "iwae_nll", "iwae_k", "recon", "kl", "active_units",
                                               "frechet_distance", "precision", "recall")}})
        samples.append(model.sample(12, generator=torch.Generator(device).manual_seed(args.seed)).cpu())
        print(json.dumps(rows[-1]), flush=True)

    path = vu.save_images(torch.cat(samples), ROOT / "generated_images" / "beta_samples.png", nrow=12)
    print(f"\nfeature classifier test accuracy {accuracy:.1%}; samples per beta (rows) in {path.relative_to(ROOT)}\n")
    print(f"| beta | test -ELBO | IWAE NLL (k={args.iwae_k}) | recon | KL | active units | Fréchet distance "
          "| precision | recall | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['beta']:g} | {r['neg_elbo']:.2f} | {r['iwae_nll']:.2f} | {r['recon']:.2f} | {r['kl']:.2f} | "
              f"{r['active_units']} | {r['frechet_distance']:.1f} | {r['precision']:.3f} | {r['recall']:.3f} | "
              f"{r['train_seconds']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"classifier_accuracy": accuracy, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
