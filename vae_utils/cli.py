"""Command line: `python -m vae_utils [--import MODULE] train|train-prior|evaluate|sample|reconstruct|interpolate|
traverse|classifier|zoo ...`, the notebook's pipeline for jobs. This module parses; commands.py and pictures.py do the
work, imported only once the arguments are parsed, so that `--help` and argument errors answer without loading
torchvision or the data code.

stdout carries only the JSON result; progress, reports and notes go to stderr.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from .config import MAX_IWAE_K, MAX_SAMPLES, PRESETS, RECIPES, TrainConfig
from .distributed import is_main, shutdown
from .latent import INTERPOLATIONS
from .options import PRIOR_EPOCHS, PRIOR_LR, model_options, trainable_models

DATA_DIR_HELP = ("the data set's files: the four IDX files (fashion-mnist, mnist), CIFAR-10's or SVHN's release, "
                 "CelebA's folder, or your folder of images for --dataset folder (default: $VAE_DATA_DIR or "
                 "~/.cache/vae_utils/data, then system packages; a run records it for evaluate and resume)")
DATASET_NAMES = sorted([*PRESETS, "folder"])  # = data.DATASETS, without importing torchvision (a test checks)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m vae_utils`."""
    parser = argparse.ArgumentParser(prog="python -m vae_utils", description=__doc__)
    parser.add_argument("--import", dest="modules", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (repeatable, before the command): a module of yours that registers "
                             "a model family with @vae_utils.register_model, so that train --model, evaluate and "
                             "resume take it")
    commands = parser.add_subparsers(dest="command", required=True)
    t = commands.add_parser("train", help="train a model of any registered family (default: the VAE); writes "
                                          "last.pt, best.pt and metrics.json into --out")
    d = TrainConfig()
    t.add_argument("--model", choices=sorted(trainable_models()), default=None, help="the model family (default "
                   "vae; vqvae: van den Oord et al., 2017, then `train-prior` makes it generative; a family of your "
                   "own: --import its module)")
    t.add_argument("--config", type=Path, default=None, help="read every setting from this TOML file (a run's own "
                   "config.toml, or one under configs/); flags given here override it")
    t.add_argument("--recipe", choices=sorted(RECIPES), default=None, help="a named recipe instead of the data set's "
                   "preset: 'long' = 175 binarized epochs of a wider VAE for paper-comparable likelihoods "
                   "(docs/evaluation.md); 'hvae-binarized' and 'ladder-binarized' the hierarchical VAEs' (docs/hierarchical.md)")
    t.add_argument("--dataset", help=f"one of {DATASET_NAMES} (default fashion-mnist; case, '_' and '-' are "
                   "not told apart: fashion_mnist and FashionMNIST work too); each has a preset model")
    t.add_argument("--image-size", type=int, help="resize the images to this side (default: the set's own; "
                                                 "a folder's 64)")
    t.add_argument("--channels", type=int, choices=(1, 3), help="1 = grey, 3 = RGB (default: the set's own)")
    t.add_argument("--skip-bad-images", action="store_true", help="skip (and count) image files that cannot be "
                                                                   "decoded instead of failing")
    t.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    t.add_argument("--out", default=None, help="output folder for checkpoints and metrics.json (with --resume: "
                                                "the checkpoint's folder by default)")
    t.add_argument("--epochs", type=int, help=f"total epochs (default {d.epochs}; with --resume: the run's own)")
    t.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    t.add_argument("--lr", type=float, help=f"peak learning rate, default {d.lr}")
    t.add_argument("--beta", type=float, help="KL weight; 1 (default) = vanilla VAE")
    t.add_argument("--seed", type=int, help=f"default {d.seed}")
    t.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    t.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), help="default auto")
    t.add_argument("--subset", type=int, help="train on the first N training images")
    t.add_argument("--resume", type=Path, default=None, help="continue from this checkpoint (e.g. OUT/last.pt); "
                   "settings come from it, and flags that differ from them are refused")
    t.add_argument("--overwrite", action="store_true", help="replace the run that --out already holds")
    t.add_argument("--val-size", type=int, help="hold out N training images (a permutation seeded by --seed) for "
                   "validation: the per-epoch figures, best.pt and --patience use them (default 0: none, and nothing "
                   "is chosen; the recipes hold out 10,000)")
    t.add_argument("--threads", type=int, help="torch's threads while training (default 0: follow the machine's "
                   "load, all cores when it is quiet, fewer beside other work; N: exactly N, bit for bit repeatable)")
    t.add_argument("--patience", type=int, help="stop after N epochs without a better validation figure (needs "
                   "--val-size; KL warm-up epochs do not count; default 0: train every epoch)")
    t.add_argument("--test-every-epoch", action="store_true", default=None, help="also score the test split after "
                   "every epoch, as a curve that chooses nothing (default: once, at the end, on the chosen epoch)")
    t.add_argument("--kl-warmup-epochs", type=int, help="beta rises from 0 over N epochs")
    t.add_argument("--grad-clip", type=float, help="clip the gradient's norm to this (0: no clipping; hvae: 200)")
    t.add_argument("--skip-factor", type=float, help="skip updates whose gradient norm is above this many times its "
                   "running scale, and count them (0: never; hvae: 10)")
    t.add_argument("--ema-decay", type=float, help="evaluate, sample and save a moving average of the weights with "
                   "this decay (0: none; hvae: 0.999)")
    t.add_argument("--weight-decay", type=float, help="AdamW's decoupled weight decay, a regulariser for long runs "
                   "(0: plain Adam, the default)")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model's forward and loss (needs a C++ compiler on CPU; about 0.85x the "
                   "time once inductor's cache is warm; may be switched on or off when resuming)")
    t.add_argument("--binarized", action="store_true", default=None,
                   help="dynamic binarization while training, a test set binarized once (seed 0)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard log (default: OUT/tensorboard/; "
                   "open it with `tensorboard --logdir OUT`)")
    family = t.add_argument_group("model options", "fields of the family's config dataclass (default: the data "
                                  "set's preset); a field of another family is refused")
    for option in model_options(t):
        family.add_argument(option.flag, dest=option.dest, **option.argparse)

    p = commands.add_parser("train-prior", help="train the causal-transformer prior over a trained VQ-VAE's codes "
                                                "on its training data; writes last.pt, best.pt, metrics.json")
    p.add_argument("vqvae", type=Path, nargs="?", default=None, help="the VQ-VAE checkpoint (e.g. OUT/best.pt); "
                   "not needed with --resume")
    p.add_argument("--out", default=None, help="output folder for the prior's checkpoints and metrics.json (with "
                                                "--resume: the checkpoint's folder by default)")
    p.add_argument("--epochs", type=int, help=f"total epochs (default {PRIOR_EPOCHS}; with --resume: the run's own)")
    p.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, help=f"peak learning rate, default {PRIOR_LR}")
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), help="default auto")
    p.add_argument("--subset", type=int, help="train on the first N training images")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--skip-bad-images", action="store_true")
    p.add_argument("--resume", type=Path, default=None, help="continue from this prior checkpoint (OUT/last.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace the run that --out already holds")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard log (default: OUT/tensorboard/)")

    e = commands.add_parser("evaluate", help="print -ELBO, IWAE NLL, bits/dim, KL, active units, Fréchet distance "
                                             "as JSON (for a VQ-VAE or its prior: recon, prior NLL, the bound, "
                                             "codebook usage)")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("--iwae-k", type=int, default=100, help=f"importance samples per test image (papers: 5000; at "
                                                            f"most {MAX_IWAE_K:,})")
    e.add_argument("--iwae-precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="the IWAE decoder passes in bf16 where the hardware has it (auto), about 2x faster here and "
                        "within 0.001 nats of fp32 (docs/evaluation.md)")
    e.add_argument("--binarized", action="store_true", help="score a test set binarized once with seed 0")
    e.add_argument("--temperature", type=float, default=1.0, help="a VQ-VAE prior's sampling temperature for the "
                                                                   "Fréchet distance (default 1: the prior itself)")
    e.add_argument("--sampler", choices=("prior", "gmm", "maf", "two-stage"), default="prior",
                   help="also score samples decoded from a density fitted to the training set's codes, beside the "
                   "prior's (models with a Gaussian posterior): gmm, a Gaussian mixture of the posterior means (Ghosh "
                   "et al., 2020); maf, a masked autoregressive flow of them; two-stage, a second VAE on posterior "
                   "samples (Dai & Wipf, 2019)")
    e.add_argument("--gmm-components", type=int, default=10, help="components of that mixture (default 10)")
    e.add_argument("--fid", action="store_true", help="also FID and KID of the samples on the standard Inception's "
                   "features (torch-fidelity's TensorFlow-compatible InceptionV3), the figures image papers print; "
                   "about 6 GFLOP per image (docs/evaluation.md)")
    e.add_argument("--inception-weights", type=Path, default=None, help="the Inception weights file for --fid "
                   "(default: torch's hub cache, downloaded there once)")
    e.add_argument("--dataset", default=None, help="default: the checkpoint's training data set")
    e.add_argument("--data-dir", default=None, help=DATA_DIR_HELP.replace("a run records it for evaluate and "
                                                                           "resume", "default here: the run's own"))
    e.add_argument("--skip-bad-images", action="store_true")
    e.add_argument("--subset", type=int, default=None, help="score the first N test images only")
    e.add_argument("--samples", type=int, default=10_000, help=f"samples for the Fréchet distance (at most "
                                                               f"{MAX_SAMPLES:,})")
    e.add_argument("--classifier", type=Path, default=None,
                   help="feature classifier (default: your cache's, else the one shipped with vae_utils)")
    e.add_argument("--device", default="auto")
    e.add_argument("--seed", type=int, default=0)

    s = commands.add_parser("sample", help="draw samples from a checkpoint of any family that samples and save "
                                           "them as one PNG grid")
    s.add_argument("checkpoint", type=Path)
    s.add_argument("--out", type=Path, required=True, help="the PNG file to write (e.g. grid.png)")
    s.add_argument("--n", type=int, default=64, help="how many samples (default 64, at most 10,000)")
    s.add_argument("--nrow", type=int, default=8, help="images per row of the grid (default 8)")
    s.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of a VQ-VAE prior or of "
                   "every group of a hierarchical VAE (default 1: the prior itself)")
    s.add_argument("--label", type=int, default=None, help="a conditional model's class: every sample of it (without "
                                                          "the flag: one row per class, --n / classes each)")
    s.add_argument("--seed", type=int, default=0, help="seeds the sampling generator (default 0): same seed, same "
                                                      "grid")
    s.add_argument("--device", default="auto")

    add_picture_parsers(commands)

    c = commands.add_parser("classifier", help="(re)train the feature classifier used for Fréchet distances")
    c.add_argument("--dataset", default="fashion-mnist")
    c.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    c.add_argument("--epochs", type=int, default=3)
    c.add_argument("--out", type=Path, default=None, help="default: ~/.cache/vae_utils/classifiers/ "
                                                          "($VAE_CACHE_DIR), where evaluate looks first")
    c.add_argument("--device", default="auto")

    commands.add_parser("zoo", help="list the pretrained models (vu.pretrained(name) loads one) with their test "
                                    "figures, sizes and the commands that trained them")
    return parser


def add_picture_parsers(commands: argparse._SubParsersAction) -> None:
    """The reconstruct, interpolate and traverse sub-commands (pictures.py runs them)."""
    def common(name: str, help_text: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help_text)
        p.add_argument("checkpoint", type=Path)
        p.add_argument("--out", type=Path, required=True, help="the PNG file to write")
        p.add_argument("--dataset", default=None, help="the test images' data set (default: the checkpoint's own)")
        p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
        p.add_argument("--skip-bad-images", action="store_true")
        p.add_argument("--device", default="auto")
        return p

    r = common("reconstruct", "test images and their reconstructions (a hierarchical VAE's from its top groups)")
    r.add_argument("--n", type=int, default=8, help="test images, one column each (default 8)")
    i = common("interpolate", "decoded paths between the posterior means of pairs of test images")
    i.add_argument("--pairs", type=int, default=4, help="rows: test images 0-1, 2-3, ... (default 4)")
    i.add_argument("--steps", type=int, default=10, help="images per row, ends included (default 10)")
    i.add_argument("--method", choices=INTERPOLATIONS, default="linear", help="linear, or slerp (the great circle)")
    t = common("traverse", "the most active latent dimensions, each varied around one test image")
    t.add_argument("--dims", type=int, default=8, help="dimensions, one row each, largest KL first (default 8)")
    t.add_argument("--steps", type=int, default=11, help="values per row (default 11)")
    t.add_argument("--span", type=float, default=2.5, help="from -span to span (default 2.5)")
    t.add_argument("--image", type=int, default=0, help="the test image varied around (default 0)")


def import_families(argv: Sequence[str]) -> list[str]:
    """Import the modules that --import names (the current folder first on the path), before the parser is built:
    the families they register get their flags. Returns the module names."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--import", dest="modules", action="append", default=[])
    modules = pre.parse_known_args(argv)[0].modules
    if modules and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        importlib.import_module(name)
    return modules


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; bad input exits with status 2 and a one-line message, a diverged run with status 1."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        import_families(argv)
    except ImportError as err:
        print(f"error: --import: {_one_line(err)} (run from the folder that holds the module, or install it)",
              file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    from . import commands as run  # the work: torchvision, the data, training and evaluation code
    from . import pictures
    from .compiling import CompileUnavailableError
    from .training import NonFiniteLossError, TrainingInterrupted

    commands = {"train": run.run_train, "train-prior": run.run_train_prior, "evaluate": run.run_evaluate,
                "sample": pictures.run_sample, "reconstruct": pictures.run_reconstruct,
                "interpolate": pictures.run_interpolate, "traverse": pictures.run_traverse,
                "classifier": run.run_classifier, "zoo": run.run_zoo}
    main_process = True
    try:
        result = commands[args.command](args)
        main_process = is_main()
    except (ValueError, OSError, ImportError, CompileUnavailableError) as err:  # bad input, missing data, unwritable
        # output, a bad checkpoint, an optional package missing (--fid), no working compiler for --compile
        parser.exit(2, f"error: {_one_line(err)}\n")
    except NonFiniteLossError as err:
        parser.exit(1, f"error: {_one_line(err)}\n")
    except TrainingInterrupted as err:
        parser.exit(130, f"{err}\n" if is_main() else None)
    finally:
        shutdown()
    if args.command in ("train", "train-prior"):
        result = {k: v for k, v in result.items() if k not in ("config", "history")}
    if main_process:  # under torchrun, rank 0 prints
        print(json.dumps(result, indent=2))
    return 0


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
