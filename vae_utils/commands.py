"""What each command of the command line does (cli.py parses the arguments): train, train-prior, evaluate,
classifier. Each returns the JSON-ready result that cli.main prints."""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Optional


from .capabilities import GaussianLatent
from .checkpoints import CheckpointError, model_from_checkpoint, read_checkpoint, save_checkpoint
from .config import MAX_IWAE_K, MAX_SAMPLES, PR_K, PRESETS, RECIPES, TrainConfig
from .configfile import config_from_file
from .data import DATASETS, binarize, canonical_name, is_conditional, load_dataset
from .distributed import init_from_env, is_main, launched_by_torchrun, local_device
from .features import (cached_classifier_path, default_classifier_path, file_sha256, load_or_train_classifier,
                       train_classifier)
from .files import atomic_write
from .grids import save_run_pictures
from .inception import InceptionFeatures
from .models.prior import CodePrior, PriorConfig
from .models.vqvae import VQVAE, VQVAEConfig
from .options import PRIOR_EPOCHS, PRIOR_FLAGS, PRIOR_LR, TRAIN_FLAGS, model_options, trainable_models
from .registry import generative_models, model_class, registered_models
from .report import evaluation_report, format_report
from .repro import resolve_device, set_seed
from .samplers import SAMPLERS, GMMSampler
from .training import selected_epoch, stop_reason, train
from .zoo import format_zoo, pretrained

def train_config(args: argparse.Namespace, saved: Optional[dict] = None) -> TrainConfig:
    """The run's TrainConfig: a new run's preset for its data set, or the resumed run's own settings, with the
    flags given (a resumed run refuses those that differ, in `train`)."""
    given = {name: getattr(args, name) for name in TRAIN_FLAGS if getattr(args, name) is not None}
    if args.binarized:
        given["binarize"] = True
    model_flags = {o.field: getattr(args, o.dest) for o in model_options() if getattr(args, o.dest, None) is not None}
    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    if getattr(args, "config", None) is not None:
        return _file_config(args, given, model_flags, epochs)
    if args.resume is None:
        recipe_kind = RECIPES[args.recipe].get("kind", "vae") if args.recipe is not None else None
        kind = args.model or recipe_kind or "vae"
        name = canonical_name(args.dataset or "fashion-mnist")
        base = TrainConfig.for_dataset(name) if name in PRESETS else TrainConfig(dataset=name)
        if args.recipe is not None:
            if kind != recipe_kind or name != "fashion-mnist":
                raise ValueError(f"--recipe {args.recipe} is a {recipe_kind} recipe for fashion-mnist: drop "
                                 "--model/--dataset")
            base = TrainConfig.recipe(args.recipe)
        model, family = base.model, trainable_models()[kind].config_class
        reshaped = args.image_size is not None or args.channels is not None or name not in PRESETS
        if not reshaped and kind != base.model_kind and issubclass(family, type(model)):
            model = family(**model.to_dict())  # a variant of the preset's family (the IWAE): the same networks
        elif reshaped or kind != base.model_kind:
            size, channels = ((model.image_size, model.in_channels) if name in PRESETS else
                              (DATASETS[name].image_size, DATASETS[name].channels))
            model = family.for_images(args.image_size or size, args.channels or channels)
        family_defaults = {} if args.recipe else getattr(trainable_models()[kind], "train_defaults", {})
        return replace(base, **{**family_defaults, **given, "dataset": name}, **epochs, device=args.device or "auto",
                       model=_with_flags(model, model_flags), model_kind=kind, data_root=_root(args.data_dir))
    try:
        config = TrainConfig.from_dict(saved["train_config"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{args.resume} holds no usable training config ({err}): it cannot be resumed") from None
    if args.model is not None and args.model != config.model_kind:
        raise ValueError(f"--model {args.model}, but {args.resume} holds a {config.model_kind} run: resume it "
                         "without --model")
    shape = {k: v for k, v in (("image_size", args.image_size), ("in_channels", args.channels)) if v is not None}
    return replace(config, **given, **epochs, device=args.device or config.device,
                   model=_with_flags(config.model, {**model_flags, **shape}),
                   data_root=_root(args.data_dir) or config.data_root)


def _file_config(args: argparse.Namespace, given: dict, model_flags: dict, epochs: dict) -> TrainConfig:
    """`train --config FILE`: the file's run, the flags given on the command line overriding it."""
    if args.resume is not None or args.recipe is not None:
        drop = "--resume (a resumed run takes its settings from the checkpoint)" if args.resume else "--recipe"
        raise ValueError(f"--config {args.config} starts a new run from the file: drop {drop}")
    overrides = {**given, **epochs}
    if "dataset" in overrides:
        overrides["dataset"] = canonical_name(overrides["dataset"])
    for key, value in (("model_kind", args.model), ("device", args.device), ("data_root", _root(args.data_dir))):
        if value is not None:
            overrides[key] = value
    shape = {k: v for k, v in (("image_size", args.image_size), ("in_channels", args.channels)) if v is not None}
    return config_from_file(args.config, **overrides, model={**model_flags, **shape})


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
        return replace(config, **given, **epochs, device=args.device or config.device,
                       data_root=_root(args.data_dir) or config.data_root)
    if vqvae_state.get("kind") != VQVAE.kind:
        raise CheckpointError(f"{args.vqvae} holds a {vqvae_state.get('kind')} model: train-prior needs a VQ-VAE "
                              "checkpoint (train one with `train --model vqvae`)")
    vq_run = vqvae_state.get("train_config") or {}
    base = dict(dataset=vq_run.get("dataset", "fashion-mnist"), seed=vq_run.get("seed", 0), lr=PRIOR_LR,
                epochs=PRIOR_EPOCHS, data_root=_root(args.data_dir) or vq_run.get("data_root"))
    model = PriorConfig(vqvae=VQVAEConfig.from_dict(vqvae_state["model_config"], complete=True))
    return TrainConfig(**{**base, **given, **epochs}, device=args.device or "auto", model=model)


def run_train(args: argparse.Namespace) -> dict:
    """Train as the notebook does and write OUT/metrics.json; return the metrics."""
    args.out = _output_folder(args)
    saved = read_checkpoint(args.resume) if args.resume is not None else None
    config = train_config(args, saved)
    set_seed(config.seed)
    model = model_class(config.model_kind)(config.model)
    return _train_and_record(args, config, model, saved)


def run_train_prior(args: argparse.Namespace) -> dict:
    """Train a CodePrior over a VQ-VAE checkpoint's codes (or resume one) and write OUT/metrics.json."""
    args.out = _output_folder(args)
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
    root = _existing(config.data_root)
    # the training images the run uses (its subset: the first n; with a validation split, the whole split, from which
    # `train` holds out the validation rows before it takes the subset) and the whole test split
    subset = config.subset if not config.val_size else None
    if not args.quiet and is_main():
        print(f"loading {config.dataset} (train and test splits)", file=sys.stderr, flush=True)
    train_ds, test_ds = (_load(config.dataset, split, args, model.image_shape, root, subset if split == "train"
                               else None) for split in ("train", "test"))
    n_train = min(len(train_ds) - config.val_size, config.subset or len(train_ds))  # the images trained on
    given = {o.field for o in model_options() if getattr(args, o.dest, None) is not None}
    n_classes = max(len(train_ds.classes or ()), int(train_ds.labels.max()) + 1) if train_ds.has_labels else 0
    fitted = config.model.for_training_set(n_train, given, n_classes)  # checks; a new run's data-dependent fields
    if saved is None and fitted != config.model:
        config = replace(config, model=fitted)
        set_seed(config.seed)  # the model is built as run_train would have built it with this config
        model = model_class(config.model_kind)(config.model)
    if config.binarize:
        test_ds = binarize(test_ds, seed=0)
    finished = saved is not None and _finished_history(saved, config) is not None  # killed after its last checkpoint
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON result only
        # a finished run goes through every check of a resume (lock, folder, settings), then trains nothing
        history = train(model, train_ds, test_ds, config, out_dir=out, resume=args.resume, overwrite=args.overwrite,
                        progress=not args.quiet, allow_finished=True,
                        log_dir=None if getattr(args, "no_tensorboard", False) else out / "tensorboard")
    if finished:  # said once every check has passed: a refused resume writes nothing
        print(f"{args.resume} has already finished training; writing {out / 'metrics.json'} from it",
              file=sys.stderr)
    metric = getattr(model, "best_metric", "neg_elbo")
    chosen = selected_epoch(history, metric)
    metrics = {
        **{k: v for k, v in history[chosen - 1].items() if k.startswith(("test_", "val_"))},
        "train_seconds": sum(h["train_seconds"] for h in history),
        "epochs": len(history),
        "selected_epoch": chosen,
        "selection": (f"the epoch of the best validation {metric} (val_size {config.val_size}); the test split was "
                      "scored once, with its weights" if config.val_size else
                      "none: no validation split, so the last epoch is the model and the test split was scored once, "
                      "at the end"),
        "stopped": stop_reason(history, config, metric) or f"after the last of {config.epochs} epochs",
        "model_kind": config.model_kind,
        "config": config.to_dict(),
        "history": history,
    }
    if is_main():  # under torchrun, rank 0 writes
        if not args.quiet:
            print(f"drawing samples.png and reconstructions.png into {out}", file=sys.stderr, flush=True)
        metrics["pictures"] = [p.name for p in save_run_pictures(model, test_ds, out, config.seed)]
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
    if args.inception_weights is not None and not args.fid:
        raise ValueError("--inception-weights is the network of --fid: add --fid, or drop the flag")
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
    inception = InceptionFeatures(args.inception_weights, device=device) if args.fid else None  # before any work
    if args.sampler != "prior" and not isinstance(model, GaussianLatent):
        raise ValueError(f"--sampler {args.sampler}: a {model.kind} model has no Gaussian posterior to fit a density to; "
                         "use --sampler prior")
    if args.sampler != "prior" and is_conditional(model):
        raise ValueError(f"--sampler {args.sampler}: a {model.kind} model decodes z with a label, which a density over z "
                         "does not give; use --sampler prior")
    run = saved.get("train_config") if isinstance(saved.get("train_config"), dict) else {}
    dataset = canonical_name(args.dataset or run.get("dataset", "fashion-mnist"))
    # the run's own data root (a folder's images, say) while it exists and the data set is the run's; --data-dir wins
    root = _existing(run.get("data_root")) if args.dataset is None else None
    full_test = _load(dataset, "test", args, model.image_shape, root)
    factors = full_test.factors is not None  # dSprites: disentanglement, no feature classifier (made for natural images)
    grey_test = full_test.subset(args.subset)
    test_ds = binarize(grey_test, seed=0) if args.binarized else grey_test
    classify = full_test.has_labels and not factors
    train_ds = _load(dataset, "train", args, model.image_shape, root) if classify or args.sampler != "prior" else None
    classifier, about = None, {}
    if classify:  # the feature classifier learns from the labels
        path = args.classifier or default_classifier_path(train_ds.name.split("/")[0], train_ds.image_shape)
        classifier, accuracy = load_or_train_classifier(args.classifier, train_ds, full_test, device=device)
        about = {"classifier": str(path), "classifier_sha256": file_sha256(path), "classifier_test_accuracy": accuracy}
    ex_post = None
    if args.sampler == "gmm":
        ex_post = GMMSampler(model, train_ds, args.gmm_components, args.seed)
    elif args.sampler != "prior":
        ex_post = SAMPLERS[args.sampler](model, train_ds, seed=args.seed)
    report = evaluation_report(model, test_ds, train_ds, classifier, iwae_k=args.iwae_k, n_samples=args.samples,
                               seed=args.seed, real_test=grey_test, iwae_precision=args.iwae_precision,
                               progress=is_main(), sample_options=options,
                               classifier_accuracy=about.get("classifier_test_accuracy"), ex_post=ex_post,
                               inception=inception)
    if factors:
        report["notes"].append(f"{dataset} carries its generative factors: the disentanglement metrics, and no feature classifier (it is made "
                               "for natural images), so no Fréchet distance, precision/recall or class histogram")
    elif classifier is None:
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


def _output_folder(args: argparse.Namespace) -> str:
    """--out, or the folder of the checkpoint being resumed; an empty or missing name is an error."""
    if args.out is None and args.resume is not None:
        return str(args.resume.parent)
    if args.out is None:
        raise ValueError("--out is required: name an output folder for the checkpoints (or --resume a run)")
    if not args.out.strip():
        raise ValueError("--out is empty: name an output folder")
    return args.out


def _root(data_dir: Optional[str]) -> Optional[str]:
    """--data-dir as an absolute path, for the run's record (None when not given)."""
    return str(Path(data_dir).expanduser().resolve()) if data_dir else None


def _existing(root) -> Optional[str]:
    """A recorded data root while it still exists; None otherwise (then the usual search)."""
    return root if isinstance(root, str) and Path(root).exists() else None


def _load(name: str, split: str, args: argparse.Namespace, image_shape: tuple[int, int, int],
          recorded_root: Optional[str] = None, subset: Optional[int] = None):
    """A split of the data set (its first `subset` images), at the model's image shape (C, H, W), from --data-dir,
    else the run's root."""
    return load_dataset(name, split, root=args.data_dir or recorded_root, image_size=image_shape[-1],
                        channels=image_shape[0], skip_bad_images=args.skip_bad_images, subset=subset)


def _finished_history(saved: dict, config: TrainConfig) -> Optional[list]:
    """The resumed checkpoint's history when it already reaches config.epochs (nothing left to train)."""
    history = saved.get("history")
    if not isinstance(history, list) or not history or not all(isinstance(h, dict) for h in history):
        return None
    try:
        stopped = stop_reason(history, config, getattr(model_class(config.model_kind), "best_metric", "neg_elbo")
                              ) is not None
    except (KeyError, TypeError):  # a damaged history: train's checks name it
        return None
    return history if len(history) == config.epochs or stopped else None


def _check_range(value: int, flag: str, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{flag} {value}: expected a number from {low:,} to {high:,}")


def run_zoo(args: argparse.Namespace) -> dict:
    """The pretrained models, as a table on stderr and as JSON."""
    entries = pretrained()
    print(format_zoo(entries), file=sys.stderr)
    return {"models": entries}
