"""Disentanglement on dSprites with one CPU budget: VAE, β-VAE (β=4) and β-TCVAE (β_TC=6) on the same images,
scored by the mutual information gap (MIG; Chen et al., 2018), the -ELBO and the reconstruction term.

    python benchmarks/disentanglement.py [--dataset dsprites-generated] [--train-images 150000] [--epochs 2]
                                         [--test-images 10000] [--json runs/disentanglement.json]
                                         [--out runs/disentanglement] [--skip-training]

Chen et al. find β-TCVAE >= β-VAE > VAE in MIG; that order is the target this prints as reached or not. Every model
sees the same images in the same order (one seed); the table gives the budget (images seen, seconds). It writes
generated_images/disentanglement_traversals.png: for each model, its five most informative latent dimensions
traversed from -2.5 to 2.5 around one test image.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

import vae_utils as vu

ROOT = Path(__file__).resolve().parent.parent
MODELS = (("VAE", "vae", {}, {}), ("β-VAE (β=4)", "vae", {}, {"beta": 4.0}),
          ("β-TCVAE (β_TC=6)", "btcvae", {"beta_tc": 6.0}, {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="dsprites-generated", choices=("dsprites-generated", "dsprites"))
    parser.add_argument("--data-dir", default=None, help="where the release's npz file is (--dataset dsprites)")
    parser.add_argument("--train-images", type=int, default=150_000, help="the first N of the training split (a "
                                                                          "uniform sample of the grid)")
    parser.add_argument("--test-images", type=int, default=10_000, help="images MIG and the -ELBO are scored on")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "disentanglement",
                        help="each model's checkpoints go to OUT/<kind>-<n>/ (overwritten)")
    parser.add_argument("--skip-training", action="store_true", help="score the models saved in --out as they are")
    args = parser.parse_args()

    train_ds = vu.load_dataset(args.dataset, "train", root=args.data_dir, subset=args.train_images)
    test_ds = vu.load_dataset(args.dataset, "test", root=args.data_dir, subset=args.test_images)
    base = vu.TrainConfig.for_dataset(args.dataset, epochs=args.epochs, seed=args.seed)
    rows, pictures = [], []
    for i, (label, kind, fields, train_fields) in enumerate(MODELS):
        family = vu.model_class(kind)
        model_config = family.config_class(**base.model.to_dict(), **fields).for_training_set(len(train_ds))
        config = replace(base, model=model_config, model_kind=kind, **train_fields)
        folder = args.out / f"{kind}-{i}"
        start = time.perf_counter()
        if args.skip_training:
            model, history = vu.load_checkpoint(folder / "last.pt"), vu.read_checkpoint(folder / "last.pt")["history"]
        else:
            vu.set_seed(config.seed)
            model = family(model_config)
            history = vu.train(model, train_ds, None, config, out_dir=folder, overwrite=True)
        wall = time.perf_counter() - start
        terms = vu.evaluate(model, test_ds, seed=args.seed)  # the -ELBO with beta = 1 for every family
        score = vu.mig(model, test_ds)
        rows.append({"model": label, "kind": kind, **fields, **train_fields, "mig": score["mig"],
                     "mig_per_factor": score["mig_per_factor"], "neg_elbo": terms["neg_elbo"],
                     "recon": terms["recon"], "kl": terms["kl"], "images_seen": len(train_ds) * args.epochs,
                     "train_seconds": sum(h["train_seconds"] for h in history), "wall_seconds": wall})
        print(json.dumps(rows[-1]), flush=True)
        pictures.append(_traversal(model, test_ds))

    path = vu.save_images(torch.cat(pictures), ROOT / "generated_images" / "disentanglement_traversals.png", nrow=11)
    print(f"\n{args.dataset}: {len(train_ds):,} training images x {args.epochs} epochs per model, MIG on "
          f"{len(test_ds):,} test images ({vu.disentanglement.MIG_BINS} bins); traversals in "
          f"{path.relative_to(ROOT)}\n")
    print("| model | MIG | shape | scale | orientation | pos x | pos y | -ELBO | recon | KL | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f = r["mig_per_factor"]
        print(f"| {r['model']} | {r['mig']:.3f} | {f['shape']:.2f} | {f['scale']:.2f} | {f['orientation']:.2f} | "
              f"{f['pos_x']:.2f} | {f['pos_y']:.2f} | {r['neg_elbo']:.2f} | {r['recon']:.2f} | {r['kl']:.2f} | "
              f"{r['train_seconds']:.0f} |")
    vae, beta, tc = (r["mig"] for r in rows)
    met = tc >= beta > vae
    print(f"\ntarget (Chen et al.'s order) β-TCVAE >= β-VAE > VAE in MIG: {'met' if met else 'not met'} "
          f"({tc:.3f}, {beta:.3f}, {vae:.3f})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"dataset": args.dataset, "train_images": len(train_ds),
                                               "epochs": args.epochs, "test_images": len(test_ds), "rows": rows,
                                               "target_met": met}, indent=2))


def _traversal(model: torch.nn.Module, test_ds: vu.ImageDataset, dims: int = 5) -> torch.Tensor:
    """The model's `dims` dimensions with the largest KL, each traversed over 11 values around test image 0."""
    stats = vu.latent_stats(model, test_ds.subset(1000))
    top = stats.kl_per_dim.argsort(descending=True)[:dims].tolist()
    return vu.traverse(model, test_ds[0][0], top, torch.linspace(-2.5, 2.5, 11)).cpu()


if __name__ == "__main__":
    main()
