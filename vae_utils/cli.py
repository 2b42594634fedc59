"""Command line: `python -m vae_utils train|train-prior|evaluate|classifier ...`, the notebook's pipeline for jobs.

stdout carries only the JSON result; progress, reports and notes go to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import os
import sys
import typing
from dataclasses import fields, replace
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

from .checkpoints import CheckpointError, model_from_checkpoint, read_checkpoint, save_checkpoint
from .config import PRESETS, RECIPES, TrainConfig, field_docs
from .data import DATASETS, binarize, canonical_name, load_dataset
from .distributed import init_from_env, is_main, launched_by_torchrun, local_device, shutdown
from .features import (cached_classifier_path, default_classifier_path, file_sha256, load_or_train_classifier,
                       train_classifier)
from .files import atomic_write
from .metrics import MAX_IWAE_K, MAX_SAMPLES, PR_K
from .models.prior import CodePrior, PriorConfig
from .models.vqvae import VQVAE, VQVAEConfig
from .registry import generative_models, model_class, registered_models
from .report import evaluation_report, format_report
from .repro import resolve_device, set_seed
from .training import NonFiniteLossError, TrainingInterrupted, train

# train flags that map onto TrainConfig fields; None = not given (a new run takes the default, a resumed run its own)
TRAIN_FLAGS = ("dataset", "batch_size", "lr", "beta", "seed", "precision", "subset", "kl_warmup_epochs")
PRIOR_FLAGS = ("batch_size", "lr", "seed", "precision", "subset")
PRIOR_EPOCHS, PRIOR_LR = 10, 1e-3  # the prior's defaults: a transformer wants a smaller step than the conv nets


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
    t.add_argument("--recipe", choices=sorted(RECIPES), default=None, help="a named recipe instead of the data set's "
                   "preset: 'long' = 175 binarized epochs of a wider VAE for paper-comparable likelihoods (README, "
                   "Evaluation)")
    t.add_argument("--dataset", help=f"one of {sorted(DATASETS)} (default fashion-mnist); each has a preset model")
    t.add_argument("--image-size", type=int, help="resize the images to this side (default: the set's own; "
                                                 "a folder's 64)")
    t.add_argument("--channels", type=int, choices=(1, 3), help="1 = grey, 3 = RGB (default: the set's own)")
    t.add_argument("--skip-bad-images", action="store_true", help="skip (and count) image files that cannot be "
                                                                   "decoded instead of failing")
    t.add_argument("--data-dir", default=None, help="where the IDX files are kept (default: $VAE_DATA_DIR or ~/.cache/vae_utils/data)")
    t.add_argument("--out", required=True, help="output folder for checkpoints and metrics.json")
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
    t.add_argument("--kl-warmup-epochs", type=int, help="beta rises from 0 over N epochs")
    t.add_argument("--binarized", action="store_true", default=None,
                   help="dynamic binarization while training, a test set binarized once (seed 0)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    family = t.add_argument_group("model options", "fields of the family's config dataclass (default: the data "
                                  "set's preset); a field of another family is refused")
    for option in model_options(t):
        family.add_argument(option.flag, dest=option.dest, **option.argparse)

    p = commands.add_parser("train-prior", help="train the causal-transformer prior over a trained VQ-VAE's codes "
                                                "on its training data; writes last.pt, best.pt, metrics.json")
    p.add_argument("vqvae", type=Path, nargs="?", default=None, help="the VQ-VAE checkpoint (e.g. OUT/best.pt); "
                   "not needed with --resume")
    p.add_argument("--out", required=True, help="output folder for the prior's checkpoints and metrics.json")
    p.add_argument("--epochs", type=int, help=f"total epochs (default {PRIOR_EPOCHS}; with --resume: the run's own)")
    p.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, help=f"peak learning rate, default {PRIOR_LR}")
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), help="default auto")
    p.add_argument("--subset", type=int, help="train on the first N training images")
    p.add_argument("--data-dir", default=None, help="where the data set is kept (as for train)")
    p.add_argument("--skip-bad-images", action="store_true")
    p.add_argument("--resume", type=Path, default=None, help="continue from this prior checkpoint (OUT/last.pt)")
    p.add_argument("--overwrite", action="store_true", help="replace the run that --out already holds")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    e = commands.add_parser("evaluate", help="print -ELBO, IWAE NLL, bits/dim, KL, active units, Fréchet distance "
                                             "as JSON (for a VQ-VAE or its prior: recon, prior NLL, the bound, "
                                             "codebook usage)")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("--iwae-k", type=int, default=100, help=f"importance samples per test image (papers: 5000; at "
                                                            f"most {MAX_IWAE_K:,})")
    e.add_argument("--iwae-precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="the IWAE decoder passes in bf16 where the hardware has it (auto), about 2x faster here and "
                        "within 0.001 nats of fp32 (README, Evaluation)")
    e.add_argument("--binarized", action="store_true", help="score a test set binarized once with seed 0")
    e.add_argument("--temperature", type=float, default=1.0, help="a VQ-VAE prior's sampling temperature for the "
                                                                   "Fréchet distance (default 1: the prior itself)")
    e.add_argument("--dataset", default=None, help="default: the checkpoint's training data set")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--skip-bad-images", action="store_true")
    e.add_argument("--subset", type=int, default=None, help="score the first N test images only")
    e.add_argument("--samples", type=int, default=10_000, help=f"samples for the Fréchet distance (at most "
                                                               f"{MAX_SAMPLES:,})")
    e.add_argument("--classifier", type=Path, default=None,
                   help="feature classifier (default: your cache's, else the one shipped with vae_utils)")
    e.add_argument("--device", default="auto")
    e.add_argument("--seed", type=int, default=0)

    c = commands.add_parser("classifier", help="(re)train the feature classifier used for Fréchet distances")
    c.add_argument("--dataset", default="fashion-mnist")
    c.add_argument("--data-dir", default=None)
    c.add_argument("--epochs", type=int, default=3)
    c.add_argument("--out", type=Path, default=None, help="default: ~/.cache/vae_utils/classifiers/ "
                                                          "($VAE_CACHE_DIR), where evaluate looks first")
    c.add_argument("--device", default="auto")
    return parser


class ModelOption(NamedTuple):
    """A `train` flag made from a field of the families' config dataclasses."""

    field: str  # the config field it sets
    flag: str  # e.g. --latent-dim
    dest: str  # where argparse puts it: model_<field>
    argparse: dict  # type, nargs, help
    kinds: tuple[str, ...]  # the families whose config has the field


SHAPE_FIELDS = ("in_channels", "image_size")  # set from the data (--channels, --image-size), not per family


def trainable_models() -> dict[str, type]:
    """The families `train --model` builds from a data set alone: their config has for_images(size, channels)."""
    return {kind: cls for kind, cls in generative_models().items() if hasattr(cls.config_class, "for_images")}


def model_options(parser: Optional[argparse.ArgumentParser] = None) -> list[ModelOption]:
    """One flag per field of every trainable family's config (plain values: int, float, str, bool, tuples of
    them), with the field's comment as its help; a flag name the parser already has gets a "model-" prefix."""
    taken = set(parser._option_string_actions) if parser is not None else set()
    found: dict[str, tuple[type, bool, list[str], str]] = {}
    for kind, cls in sorted(trainable_models().items()):
        config_class = cls.config_class
        hints, docs = typing.get_type_hints(config_class), field_docs(config_class)
        for f in fields(config_class):
            kind_of_value = _flag_type(hints.get(f.name))
            if f.name in SHAPE_FIELDS or kind_of_value is None:
                continue
            if f.name in found:
                found[f.name][2].append(kind)
            else:
                found[f.name] = (*kind_of_value, [kind], docs.get(f.name, ""))
    options = []
    for name, (value_type, many, kinds, doc) in found.items():
        flag = "--" + name.replace("_", "-")
        flag = "--model-" + name.replace("_", "-") if flag in taken else flag
        spec = {"type": value_type, "default": None, "metavar": name.upper(), "help": f"{doc} [{', '.join(kinds)}]".replace("%", "%%")}
        if value_type is bool:
            spec = {"action": argparse.BooleanOptionalAction, "default": None, "help": spec["help"]}
        elif many:
            spec["nargs"] = "+"
        options.append(ModelOption(name, flag, "model_" + name, spec, tuple(kinds)))
    return options


def _flag_type(annotation) -> Optional[tuple[type, bool]]:
    """(value type, whether a tuple of them) for a field type a flag can carry; None for others (nested configs)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is tuple and args and args[0] in (int, float, str):
        return args[0], True
    if typing.get_origin(annotation) is typing.Union and len(args) == 1:  # Optional[int]
        return _flag_type(args[0])
    return (annotation, False) if annotation in (int, float, str, bool) else None


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


def train_config(args: argparse.Namespace, saved: Optional[dict] = None) -> TrainConfig:
    """The run's TrainConfig: a new run's preset for its data set, or the resumed run's own settings, with the
    flags given (a resumed run refuses those that differ, in `train`)."""
    given = {name: getattr(args, name) for name in TRAIN_FLAGS if getattr(args, name) is not None}
    if args.binarized:
        given["binarize"] = True
    model_flags = {o.field: getattr(args, o.dest) for o in model_options() if getattr(args, o.dest, None) is not None}
    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    if args.resume is None:
        kind = args.model or "vae"
        name = canonical_name(args.dataset or "fashion-mnist")
        base = TrainConfig.for_dataset(name) if name in PRESETS else TrainConfig(dataset=name)
        if args.recipe is not None:
            if kind != "vae" or name != "fashion-mnist":
                raise ValueError(f"--recipe {args.recipe} is a VAE recipe for fashion-mnist: drop --model/--dataset")
            base = TrainConfig.recipe(args.recipe)
        model = base.model
        if kind != base.model_kind or args.image_size is not None or args.channels is not None or name not in PRESETS:
            size, channels = ((model.image_size, model.in_channels) if name in PRESETS else
                              (DATASETS[name].image_size, DATASETS[name].channels))
            model = trainable_models()[kind].config_class.for_images(args.image_size or size, args.channels or channels)
        return replace(base, **{**given, "dataset": name}, **epochs, device=args.device or "auto",
                       model=_with_flags(model, model_flags), model_kind=kind)
    try:
        config = TrainConfig.from_dict(saved["train_config"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{args.resume} holds no usable training config ({err}): it cannot be resumed") from None
    if args.model is not None and args.model != config.model_kind:
        raise ValueError(f"--model {args.model}, but {args.resume} holds a {config.model_kind} run: resume it "
                         "without --model")
    shape = {k: v for k, v in (("image_size", args.image_size), ("in_channels", args.channels)) if v is not None}
    return replace(config, **given, **epochs, device=args.device or config.device,
                   model=_with_flags(config.model, {**model_flags, **shape}))


def _with_flags(model, flags: dict):
    """The model config with the flags that apply to it; a flag of another family is an error."""
    names = {f.name for f in fields(model)}
    wrong = sorted(k for k in flags if k not in names)
    if wrong:
        owners = {o.field: o for o in model_options()}
        said = "; ".join(f"{owners[k].flag} belongs to {', '.join(owners[k].kinds)}" if k in owners else f"--{k}"
                         for k in wrong)
        raise ValueError(f"{', '.join(owners[k].flag if k in owners else '--' + k for k in wrong)} does not apply "
                         f"to a {type(model).__name__} ({said}): choose that family with --model, or drop the flag")
    return replace(model, **flags)


def prior_config(args: argparse.Namespace, vqvae_state: Optional[dict], saved: Optional[dict]) -> TrainConfig:
    """The prior's TrainConfig: the VQ-VAE's data set and seed with the prior's defaults, or the resumed run's own."""
    given = {name: getattr(args, name) for name in PRIOR_FLAGS if getattr(args, name) is not None}
    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    if saved is not None:
        try:
            config = TrainConfig.from_dict(saved["train_config"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{args.resume} holds no usable training config ({err}): it cannot be resumed"
                                  ) from None
        if config.model_kind != CodePrior.kind:
            raise CheckpointError(f"{args.resume} holds a {config.model_kind} run, not a prior: resume it with "
                                  "`train --resume`")
        return replace(config, **given, **epochs, device=args.device or config.device)
    if vqvae_state.get("kind") != VQVAE.kind:
        raise CheckpointError(f"{args.vqvae} holds a {vqvae_state.get('kind')} model: train-prior needs a VQ-VAE "
                              "checkpoint (train one with `train --model vqvae`)")
    vq_run = vqvae_state.get("train_config") or {}
    base = dict(dataset=vq_run.get("dataset", "fashion-mnist"), seed=vq_run.get("seed", 0), lr=PRIOR_LR,
                epochs=PRIOR_EPOCHS)
    model = PriorConfig(vqvae=VQVAEConfig.from_dict(vqvae_state["model_config"], complete=True))
    return TrainConfig(**{**base, **given, **epochs}, device=args.device or "auto", model=model)


def run_train(args: argparse.Namespace) -> dict:
    """Train as the notebook does and write OUT/metrics.json; return the metrics."""
    if not args.out.strip():
        raise ValueError("--out is empty: name an output folder")
    saved = read_checkpoint(args.resume) if args.resume is not None else None
    config = train_config(args, saved)
    set_seed(config.seed)
    model = model_class(config.model_kind)(config.model)
    return _train_and_record(args, config, model, saved)


def run_train_prior(args: argparse.Namespace) -> dict:
    """Train a CodePrior over a VQ-VAE checkpoint's codes (or resume one) and write OUT/metrics.json."""
    if not args.out.strip():
        raise ValueError("--out is empty: name an output folder")
    if (args.vqvae is None) == (args.resume is None):
        raise ValueError("name the VQ-VAE checkpoint to train a prior for, or --resume a prior run (not both)")
    saved = read_checkpoint(args.resume) if args.resume is not None else None
    vq_state = read_checkpoint(args.vqvae) if args.vqvae is not None else None
    config = prior_config(args, vq_state, saved)
    set_seed(config.seed)
    if vq_state is not None:
        vqvae = model_from_checkpoint(vq_state, args.vqvae, kind=VQVAE.kind)
        prior = CodePrior.for_vqvae(vqvae, **{k: v for k, v in config.model.to_dict().items() if k != "vqvae"})
    else:
        prior = CodePrior(config.model)  # its weights, the VQ-VAE's included, come from the resumed checkpoint
    args.binarized = False
    return _train_and_record(args, config, prior, saved)


def _train_and_record(args: argparse.Namespace, config: TrainConfig, model, saved: Optional[dict]) -> dict:
    """Train model on config.dataset into args.out; write and return metrics.json's contents."""
    out = Path(args.out)
    train_ds, test_ds = (_load(config.dataset, split, args, model.image_shape) for split in ("train", "test"))
    if config.binarize:
        test_ds = binarize(test_ds, seed=0)
    if saved is not None and _finished_history(saved, config) is not None:  # killed after its last checkpoint
        print(f"{args.resume} has already trained {config.epochs} epochs; writing {out / 'metrics.json'} from it",
              file=sys.stderr)
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON result only
        # a finished run goes through every check of a resume (lock, folder, settings), then trains nothing
        history = train(model, train_ds, test_ds, config, out_dir=out, resume=args.resume, overwrite=args.overwrite,
                        progress=not args.quiet, allow_finished=True)
    metrics = {
        **{k: v for k, v in history[-1].items() if k.startswith("test_")},
        "train_seconds": sum(h["train_seconds"] for h in history),
        "epochs": len(history),
        "model_kind": config.model_kind,
        "config": config.to_dict(),
        "history": history,
    }
    if is_main():  # under torchrun, rank 0 writes
        atomic_write(out / "metrics.json", lambda f: f.write(json.dumps(metrics, indent=2).encode()))
    return metrics


def run_evaluate(args: argparse.Namespace) -> dict:
    """Score a checkpoint of any generative family on the test split; return the report (printed as JSON by main)."""
    _check_range(args.iwae_k, "--iwae-k", 1, MAX_IWAE_K)
    _check_range(args.samples, "--samples", PR_K + 1, MAX_SAMPLES)
    if not args.temperature > 0:
        raise ValueError(f"--temperature {args.temperature}: expected a number > 0 (1 samples the prior itself)")
    if args.subset is not None:
        _check_range(args.subset, "--subset", PR_K + 1, 10**9)
    device = resolve_device(args.device)
    if launched_by_torchrun():  # the test set is shared out and the sums reduced
        init_from_env(device.type)
        device = local_device(device)
    saved = read_checkpoint(args.checkpoint, map_location=device)
    kind, scored = saved.get("kind"), sorted(generative_models())
    if kind in registered_models() and kind not in scored:
        raise CheckpointError(f"{args.checkpoint} holds a {kind} checkpoint: evaluate scores {', '.join(scored)} "
                              "checkpoints (the last.pt or best.pt that training writes)")
    model = model_from_checkpoint(saved, args.checkpoint, device)
    options = _sample_options(model, args.temperature)
    dataset = canonical_name(args.dataset or (saved.get("train_config") or {}).get("dataset", "fashion-mnist"))
    train_ds, full_test = (_load(dataset, split, args, model.image_shape) for split in ("train", "test"))
    grey_test = full_test.subset(args.subset)
    test_ds = binarize(grey_test, seed=0) if args.binarized else grey_test
    classifier, about = None, {}
    if train_ds.has_labels:  # the feature classifier learns from the labels
        path = args.classifier or default_classifier_path(train_ds.name.split("/")[0], train_ds.image_shape)
        classifier, accuracy = load_or_train_classifier(args.classifier, train_ds, full_test, device=device)
        about = {"classifier": str(path), "classifier_sha256": file_sha256(path), "classifier_test_accuracy": accuracy}
    report = evaluation_report(model, test_ds, train_ds, classifier, iwae_k=args.iwae_k, n_samples=args.samples,
                               seed=args.seed, real_test=grey_test, iwae_precision=args.iwae_precision,
                               progress=is_main(), sample_options=options)
    if classifier is None:
        report["notes"].append(f"{dataset} has no class labels: no feature classifier, so no Fréchet distance, "
                               "precision/recall or class histogram")
    if is_main():
        print(format_report(report), file=sys.stderr)
    return {"checkpoint": str(args.checkpoint), "dataset": dataset, "binarized": args.binarized, **report, **about}


def _sample_options(model, temperature: float) -> dict:
    """{"temperature": T} for a model whose sample() takes one (the VQ-VAE prior); refused for others unless 1."""
    sample = getattr(model, "sample", None)
    if sample is not None and "temperature" in inspect.signature(sample).parameters:
        return {"temperature": temperature}
    if temperature != 1.0:
        raise ValueError(f"--temperature {temperature}: a {model.kind} model samples without a temperature; drop "
                         "the flag")
    return {}


def run_classifier(args: argparse.Namespace) -> dict:
    """Train the feature classifier anew and save it atomically; return its path and test accuracy."""
    dataset = canonical_name(args.dataset)
    out = args.out or cached_classifier_path(f"classifier-{dataset}.pt")
    _check_range(args.epochs, "--epochs", 1, 1000)
    model, accuracy = train_classifier(load_dataset(dataset, "train", root=args.data_dir),
                                       load_dataset(dataset, "test", root=args.data_dir), epochs=args.epochs,
                                       device=resolve_device(args.device))
    save_checkpoint(model, out, test_accuracy=accuracy, epochs=args.epochs, dataset=dataset)
    return {"classifier": str(out), "dataset": dataset, "epochs": args.epochs, "test_accuracy": accuracy}


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
    commands = {"train": run_train, "train-prior": run_train_prior, "evaluate": run_evaluate,
                "classifier": run_classifier}
    main_process = True
    try:
        result = commands[args.command](args)
        main_process = is_main()
    except (ValueError, OSError) as err:  # bad input, missing data, unwritable output, a bad checkpoint
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


def _load(name: str, split: str, args: argparse.Namespace, image_shape: tuple[int, int, int]):
    """A split of the data set, at the model's image shape (C, H, W)."""
    return load_dataset(name, split, root=args.data_dir, image_size=image_shape[-1], channels=image_shape[0],
                        skip_bad_images=args.skip_bad_images)


def _finished_history(saved: dict, config: TrainConfig) -> Optional[list]:
    """The resumed checkpoint's history when it already reaches config.epochs (nothing left to train)."""
    history = saved.get("history")
    return history if isinstance(history, list) and history and len(history) == config.epochs else None


def _check_range(value: int, flag: str, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{flag} {value}: expected a number from {low:,} to {high:,}")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
