"""Disentanglement on dSprites with one CPU budget: VAE, β-VAE (β=4), β-TCVAE (β_TC=6), FactorVAE (γ=35) and
DIP-VAE-I (λ_od=10) on the same images, scored by disentanglement_lib's six metrics (MIG, Chen et al., 2018; the β-VAE and FactorVAE scores, DCI, SAP,
modularity), the -ELBO and the reconstruction term, over seeds.

    python benchmarks/disentanglement.py [--dataset dsprites-generated] [--train-images 150000] [--epochs 2]
                                         [--seeds 5] [--test-images 10000] [--pool-images 15000]
                                         [--out runs/disentanglement]
                                         [--json benchmarks/results/disentanglement.json] [--skip-training]

Chen et al. find β-TCVAE >= β-VAE > VAE in MIG; that order, on the means over seeds, is the target this prints as
reached or not. Locatello et al. (2019) show seed variance as large as the differences between objectives, so every
model trains with seeds 0 ... S-1 (each its own initial weights and data order; with a seed, the five models see
the same images in the same order) and the table gives mean ± sd with the budget (images seen, seconds). A seed's
scores are kept in OUT/<kind>-<n>/seed<s>/result.json, so a second call only trains (or scores) what is missing.
MIG and the -ELBO are scored on --test-images test images; the other five metrics on the first --pool-images
(disentanglement_lib's 10,000 training and 5,000 test points of its classifiers, disjoint here). It writes
generated_images/disentanglement_traversals.png: for each model (seed 0), its five most informative latent
dimensions traversed from -2.5 to 2.5 around one test image.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import vae_utils as vu  # noqa: E402
from results import mean_sd, same_config, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SUITE_REST = ("beta_vae_score", "factor_vae_score", "dci", "sap", "modularity")  # scored beside MIG
SUITE_NAMES = {"mig": "MIG", "beta_vae_score": "β-VAE score", "factor_vae_score": "FactorVAE score",
               "dci_disentanglement": "DCI disentanglement", "dci_completeness": "DCI completeness",
               "dci_informativeness_test": "DCI informativeness", "sap": "SAP", "modularity": "modularity",
               "explicitness_test": "explicitness"}  # result key -> column
MODELS = (("VAE", "vae", {}, {}), ("β-VAE (β=4)", "vae", {}, {"beta": 4.0}),
          ("β-TCVAE (β_TC=6)", "btcvae", {"beta_tc": 6.0}, {}),
          ("FactorVAE (γ=35)", "factorvae", {"gamma": 35.0}, {}),
          ("DIP-VAE-I (λ_od=10)", "dipvae", {"dip_type": "i", "lambda_od": 10.0}, {}))  # (label, kind, model, train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="dsprites-generated", choices=("dsprites-generated", "dsprites"))
    parser.add_argument("--data-dir", default=None, help="where the release's npz file is (--dataset dsprites)")
    parser.add_argument("--train-images", type=int, default=150_000, help="the first N of the training split (a "
                                                                          "uniform sample of the grid)")
    parser.add_argument("--test-images", type=int, default=10_000, help="images MIG and the -ELBO are scored on")
    parser.add_argument("--pool-images", type=int, default=15_000, help="test images the other five metrics draw "
                                                                           "their points from")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 ... S-1 per model (default 5)")
    parser.add_argument("--json", type=Path, default=None, help="write the results file here (e.g. "
                        "benchmarks/results/disentanglement.json)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "disentanglement",
                        help="each model's checkpoints go to OUT/<kind>-<n>/seed<s>/")
    parser.add_argument("--skip-training", action="store_true", help="score the models saved in --out as they are")
    args = parser.parse_args()

    train_ds = vu.load_dataset(args.dataset, "train", root=args.data_dir, subset=args.train_images)
    test_ds = vu.load_dataset(args.dataset, "test", root=args.data_dir, subset=args.test_images)
    pool = vu.load_dataset(args.dataset, "test", root=args.data_dir, subset=args.pool_images)
    rows, pictures = [], []
    for seed in range(args.seeds):
        base = vu.TrainConfig.for_dataset(args.dataset, epochs=args.epochs, seed=seed)
        for i, (label, kind, fields, train_fields) in enumerate(MODELS):
            family = vu.model_class(kind)
            model_config = family.config_class(**base.model.to_dict(), **fields).for_training_set(len(train_ds))
            config = replace(base, model=model_config, model_kind=kind, **train_fields)
            folder = args.out / f"{kind}-{i}" / f"seed{seed}"
            rows.append(_with_suite(_train_and_score(label, config, folder, train_ds, test_ds, args.skip_training),
                                    folder, pool))
            print(json.dumps(rows[-1]), flush=True)
            if seed == 0:
                pictures.append(_traversal(vu.load_checkpoint(args.out / f"{kind}-{i}" / "seed0" / "last.pt"),
                                           test_ds))
        if args.json:  # after every seed: a stopped run leaves the results it has
            write_results(args.json, dataset=args.dataset, train_images=len(train_ds), epochs=args.epochs,
                          test_images=len(test_ds), rows=rows, summary=_summary(rows))

    path = vu.save_images(torch.cat(pictures), ROOT / "generated_images" / "disentanglement_traversals.png", nrow=11)
    print(f"\n{args.dataset}: {len(train_ds):,} training images x {args.epochs} epochs per model, {args.seeds} seeds, "
          f"MIG on {len(test_ds):,} test images ({vu.disentanglement.MIG_BINS} bins); traversals (seed 0) in "
          f"{path.relative_to(ROOT)}\n")
    print("| model | MIG | shape | scale | orientation | pos x | pos y | -ELBO | KL | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary = _summary(rows)
    for label, s in summary.items():
        cells = [f"{s[k][0]:.3f} ± {s[k][1]:.3f}" for k in ("mig", "shape", "scale", "orientation", "pos_x", "pos_y")]
        print(f"| {label} | {' | '.join(cells)} | {s['neg_elbo'][0]:.2f} ± {s['neg_elbo'][1]:.2f} | "
              f"{s['kl'][0]:.2f} | {s['train_seconds'][0]:.0f} |")
    print(f"\nthe suite, mean ± sd over {args.seeds} seeds (the last five on {len(pool):,} test images)\n")
    print("| model | " + " | ".join(SUITE_NAMES.values()) + " |")
    print("|---|" + "---|" * len(SUITE_NAMES))
    for label, s in summary.items():
        print(f"| {label} | " + " | ".join(f"{s[k][0]:.3f} ± {s[k][1]:.3f}" for k in SUITE_NAMES) + " |")
    vae, beta, tc = (summary[label]["mig"][0] for label, *_ in MODELS[:3])
    met = tc >= beta > vae
    print(f"\ntarget (Chen et al.'s order) β-TCVAE >= β-VAE > VAE in mean MIG over {args.seeds} seeds: "
          f"{'met' if met else 'not met'} ({tc:.3f}, {beta:.3f}, {vae:.3f})")


def _train_and_score(label: str, config: vu.TrainConfig, folder: Path, train_ds, test_ds, skip_training: bool) -> dict:
    """Train one model (or read back its scores, or score the saved model) and return its row."""
    result = folder / "result.json"
    if result.is_file() and same_config(json.loads(result.read_text()).get("config"), config):
        return json.loads(result.read_text())
    start = time.perf_counter()
    if skip_training:
        model, history = vu.load_checkpoint(folder / "last.pt"), vu.read_checkpoint(folder / "last.pt")["history"]
    else:
        vu.set_seed(config.seed)
        model = vu.model_class(config.model_kind)(config.model)
        history = vu.train(model, train_ds, None, config, out_dir=folder, overwrite=True)
    wall = time.perf_counter() - start
    terms = vu.evaluate(model, test_ds, seed=config.seed)  # the -ELBO with beta = 1 for every family
    score = vu.mig(model, test_ds)
    row = {"model": label, "kind": config.model_kind, "seed": config.seed, "beta": config.beta, "mig": score["mig"],
           "mig_per_factor": score["mig_per_factor"], "neg_elbo": terms["neg_elbo"], "recon": terms["recon"],
           "kl": terms["kl"], "images_seen": len(train_ds) * config.epochs,
           "train_seconds": sum(h["train_seconds"] for h in history), "wall_seconds": wall, "config": config.to_dict()}
    vu.files.atomic_write(result, lambda f: f.write(json.dumps(row, indent=2).encode()))
    return row


def _with_suite(row: dict, folder: Path, pool: vu.ImageDataset) -> dict:
    """The row with the five metrics beside MIG, scored on the pool from the saved model when it lacks them."""
    if all(k in row for k in SUITE_NAMES):
        return row
    model = vu.load_checkpoint(folder / "last.pt")
    start = time.perf_counter()
    row = row | vu.disentanglement_scores(model, pool, seed=row["seed"], metrics=SUITE_REST)
    row["suite_seconds"] = time.perf_counter() - start
    vu.files.atomic_write(folder / "result.json", lambda f: f.write(json.dumps(row, indent=2).encode()))
    return row


def _summary(rows: list[dict]) -> dict:
    """Per model: [mean, sd] over its seeds of MIG, each factor's gap, the -ELBO, the KL and the training time."""
    summary = {}
    for label in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == label]
        values = {"mig": [r["mig"] for r in mine], **{f: [r["mig_per_factor"][f] for r in mine] for f in
                  mine[0]["mig_per_factor"]}, **{k: [r[k] for r in mine] for k in ("neg_elbo", "kl", "train_seconds")},
                  **{k: [r[k] for r in mine] for k in SUITE_NAMES if k != "mig"}}
        summary[label] = {k: [round(x, 4) for x in mean_sd(v)] for k, v in values.items()} | {"seeds": len(mine)}
    return summary


def _traversal(model: torch.nn.Module, test_ds: vu.ImageDataset, dims: int = 5) -> torch.Tensor:
    """The model's `dims` dimensions with the largest KL, each traversed over 11 values around test image 0."""
    stats = vu.latent_stats(model, test_ds.subset(min(1000, len(test_ds))))
    top = stats.kl_per_dim.argsort(descending=True)[:dims].tolist()
    return vu.traverse(model, test_ds[0][0], top, torch.linspace(-2.5, 2.5, 11)).cpu()


if __name__ == "__main__":
    main()
