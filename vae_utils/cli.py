"""Command line: `python -m vae_utils train ...`, the notebook's pipeline for terminals and batch jobs."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from .config import TrainConfig, VAEConfig
from .data import load_dataset
from .model import VAE
from .repro import set_seed
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
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run_train(args: argparse.Namespace) -> dict:
    """Train as the notebook does and write OUT/metrics.json; return the metrics."""
    config = TrainConfig(dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         beta=args.beta, seed=args.seed, device=args.device, precision=args.precision,
                         subset=args.subset, model=VAEConfig(latent_dim=args.latent_dim))
    train_ds = load_dataset(config.dataset, "train", root=args.data_dir)
    test_ds = load_dataset(config.dataset, "test", root=args.data_dir)
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; bad input exits with status 2 and a one-line message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            metrics = run_train(args)
            print(json.dumps({k: v for k, v in metrics.items() if k not in ("config", "history")}, indent=2))
    except (ValueError, OSError) as err:  # bad input, missing data, unwritable output: one clear line
        parser.exit(2, f"error: {err}\n")
    except TrainingInterrupted as err:
        parser.exit(130, f"{err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
