"""Command line: `python -m vae_utils train|evaluate ...`, the notebook's pipeline for terminals and batch jobs."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from .config import TrainConfig, VAEConfig
from .checkpoints import load_checkpoint, read_checkpoint
from .classifier import load_or_train_classifier
from .data import binarize, canonical_name, load_dataset
from .model import VAE
from .report import evaluation_report
from .repro import resolve_device, set_seed
from .training import TrainingInterrupted, train


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m vae_utils`."""
    parser = argparse.ArgumentParser(prog="python -m vae_utils", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    t = commands.add_parser("train", help="train a VAE; writes last.pt, best.pt and metrics.json into --out")
    d = TrainConfig()
    t.add_argument("--dataset", default=d.dataset, help="fashion-mnist (default) or mnist")
    t.add_argument("--data-dir", default=None, help="where the IDX files are kept (default: $VAE_DATA_DIR or ~/.cache/vae_utils/data)")
    t.add_argument("--out", required=True, type=Path, help="output folder for checkpoints and metrics.json")
    t.add_argument("--epochs", type=int, default=d.epochs, help="total epochs (with --resume: until this epoch)")
    t.add_argument("--batch-size", type=int, default=d.batch_size)
    t.add_argument("--lr", type=float, default=d.lr)
    t.add_argument("--beta", type=float, default=d.beta, help="KL weight; 1 = vanilla VAE")
    t.add_argument("--latent-dim", type=int, default=d.model.latent_dim)
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    t.add_argument("--precision", default=d.precision, choices=("auto", "fp32", "bf16"))
    t.add_argument("--subset", type=int, default=None, help="train on the first N training images")
    t.add_argument("--resume", type=Path, default=None, help="continue from this checkpoint (e.g. OUT/last.pt)")
    t.add_argument("--kl-warmup-epochs", type=int, default=d.kl_warmup_epochs, help="beta rises from 0 over N epochs")
    t.add_argument("--binarized", action="store_true",
                   help="dynamic binarization while training, a test set binarized once (seed 0)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")

    e = commands.add_parser("evaluate", help="print -ELBO, IWAE NLL, bits/dim, KL, active units, Fréchet distance "
                                             "as JSON")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("--iwae-k", type=int, default=100, help="importance samples per test image (papers: 5000)")
    e.add_argument("--binarized", action="store_true", help="score a test set binarized once with seed 0")
    e.add_argument("--dataset", default=None, help="default: the checkpoint's training data set")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--subset", type=int, default=None, help="score the first N test images only")
    e.add_argument("--samples", type=int, default=10_000, help="samples for the Fréchet distance")
    e.add_argument("--classifier", type=Path, default=None,
                   help="feature classifier weights (default saved_models/classifier-DATASET.pt; trained if absent)")
    e.add_argument("--device", default="auto")
    e.add_argument("--seed", type=int, default=0)

    c = commands.add_parser("classifier", help="(re)train the feature classifier used for Fréchet distances")
    c.add_argument("--dataset", default="fashion-mnist")
    c.add_argument("--data-dir", default=None)
    c.add_argument("--epochs", type=int, default=3)
    c.add_argument("--out", type=Path, default=None, help="default saved_models/classifier-DATASET.pt")
    c.add_argument("--device", default="auto")
    return parser


def run_train(args: argparse.Namespace) -> dict:
    """Train as the notebook does and write OUT/metrics.json; return the metrics."""
    model_config = VAEConfig(latent_dim=args.latent_dim)
    if args.resume is not None:  # the architecture comes from the run being continued
        model_config = VAEConfig.from_dict(read_checkpoint(args.resume)["model_config"])
    config = TrainConfig(dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         beta=args.beta, seed=args.seed, device=args.device, precision=args.precision,
                         subset=args.subset, kl_warmup_epochs=args.kl_warmup_epochs, binarize=args.binarized,
                         model=model_config)
    train_ds = load_dataset(config.dataset, "train", root=args.data_dir)
    test_ds = load_dataset(config.dataset, "test", root=args.data_dir)
    if args.binarized:
        test_ds = binarize(test_ds, seed=0)
    set_seed(config.seed)
    model = VAE(config.model)
    history = train(model, train_ds, test_ds, config, out_dir=args.out, resume=args.resume, progress=not args.quiet)
    last = history[-1]
    metrics = {
        "test_neg_elbo": last["test_neg_elbo"],
        "test_recon": last["test_recon"],
        "test_kl": last["test_kl"],
        "train_seconds": sum(h["train_seconds"] for h in history),
        "epochs": len(history),
        "config": config.to_dict(),
        "history": history,
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def run_evaluate(args: argparse.Namespace) -> dict:
    """Score a checkpoint on the test split; return the report (also printed as JSON by main)."""
    device = resolve_device(args.device)
    model = load_checkpoint(args.checkpoint, map_location=device)
    saved = read_checkpoint(args.checkpoint).get("train_config") or {}
    dataset = args.dataset or saved.get("dataset", "fashion-mnist")
    train_ds = load_dataset(dataset, "train", root=args.data_dir)
    grey_test = load_dataset(dataset, "test", root=args.data_dir, subset=args.subset)
    test_ds = binarize(grey_test, seed=0) if args.binarized else grey_test
    classifier_path = args.classifier or Path("saved_models") / f"classifier-{canonical_name(dataset)}.pt"
    classifier, accuracy = load_or_train_classifier(classifier_path, train_ds, load_dataset(dataset, "test",
                                                    root=args.data_dir), device=device)
    report = evaluation_report(model, test_ds, train_ds, classifier, iwae_k=args.iwae_k, n_samples=args.samples,
                               seed=args.seed, real_test=grey_test)
    return {"checkpoint": str(args.checkpoint), "dataset": dataset, "binarized": args.binarized,
            "n_test": len(test_ds), **report, "classifier": str(classifier_path),
            "classifier_test_accuracy": accuracy}


def run_classifier(args: argparse.Namespace) -> dict:
    """Train the feature classifier anew and cache it; return its path and test accuracy."""
    dataset = canonical_name(args.dataset)
    out = args.out or Path("saved_models") / f"classifier-{dataset}.pt"
    out.unlink(missing_ok=True)
    _, accuracy = load_or_train_classifier(out, load_dataset(dataset, "train", root=args.data_dir),
                                           load_dataset(dataset, "test", root=args.data_dir),
                                           device=resolve_device(args.device), epochs=args.epochs)
    return {"classifier": str(out), "dataset": dataset, "epochs": args.epochs, "test_accuracy": accuracy}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; bad input exits with status 2 and a one-line message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            metrics = run_train(args)
            print(json.dumps({k: v for k, v in metrics.items() if k not in ("config", "history")}, indent=2))
        elif args.command == "evaluate":
            print(json.dumps(run_evaluate(args), indent=2))
        elif args.command == "classifier":
            print(json.dumps(run_classifier(args), indent=2))
    except (ValueError, OSError) as err:  # bad input, missing data, unwritable output: one clear line
        parser.exit(2, f"error: {err}\n")
    except TrainingInterrupted as err:
        parser.exit(130, f"{err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
