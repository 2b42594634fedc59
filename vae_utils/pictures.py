"""The notebook's pictures from a terminal: `sample`, `reconstruct`, `interpolate` and `traverse` each load a
checkpoint of any family, draw what the family allows (a one-line error where a picture does not apply) and write
one PNG grid. cli.py parses the arguments; each command returns the JSON-ready result that cli.main prints."""
from __future__ import annotations

import argparse

import torch
from torch import Tensor, nn

from .capabilities import GaussianLatent, Sampler
from .checkpoints import model_from_checkpoint, read_checkpoint
from .commands import _check_range, _existing, _load, _sample_options
from .data import ImageDataset, canonical_name, is_conditional, model_inputs
from .latent import interpolate, traverse
from .metrics import latent_stats
from .grids import draw_samples, reconstruction_rows
from .plotting import save_images
from .repro import resolve_device


def _model(args: argparse.Namespace) -> tuple[nn.Module, dict, torch.device]:
    """(the checkpoint's model, the checkpoint, the device), after checking --out names a PNG file."""
    if args.out.suffix.lower() != ".png":
        raise ValueError(f"--out {args.out}: name a .png file for the grid")
    device = resolve_device(args.device)
    saved = read_checkpoint(args.checkpoint, map_location=device)
    return model_from_checkpoint(saved, args.checkpoint, device), saved, device


def _test_split(args: argparse.Namespace, model: nn.Module, saved: dict, n: int) -> ImageDataset:
    """The test split of --dataset (default: the checkpoint's own) at the model's image shape; at least n images."""
    run = saved.get("train_config") if isinstance(saved.get("train_config"), dict) else {}
    dataset = canonical_name(args.dataset or run.get("dataset", "fashion-mnist"))
    root = _existing(run.get("data_root")) if args.dataset is None else None
    test = _load(dataset, "test", args, model.image_shape, root)
    if len(test) < n:
        raise ValueError(f"{dataset}'s test split has {len(test)} images, fewer than the {n} asked for")
    return test


def _test_images(args: argparse.Namespace, model: nn.Module, saved: dict, n: int) -> tuple[Tensor, dict]:
    """The first n test images with the labels a conditional model needs: (images (n, C, H, W) on the model's
    device, {"labels": ...} or {})."""
    return next(iter(model_inputs(model, _test_split(args, model, saved, n).subset(n), n)))


def _refuse(model: nn.Module, args: argparse.Namespace, picture: str, needs: str) -> ValueError:
    return ValueError(f"{args.checkpoint} holds a {model.kind} model: {picture} needs {needs}, which it has not")


def _written(args: argparse.Namespace, images: Tensor, nrow: int, **about) -> dict:
    save_images(images, args.out, nrow=nrow)
    return {"checkpoint": str(args.checkpoint), "out": str(args.out), **about}


MAX_PICTURE_SAMPLES = 10_000  # samples one picture may hold (--n), conditional or not


def run_sample(args: argparse.Namespace) -> dict:
    """Draw --n samples from a checkpoint (seeded by --seed) and write them as one PNG grid to --out."""
    _check_range(args.n, "--n", 1, MAX_PICTURE_SAMPLES)
    _check_range(args.nrow, "--nrow", 1, 1_000)
    if not args.temperature > 0:
        raise ValueError(f"--temperature {args.temperature}: expected a number > 0 (1 samples the prior itself)")
    model, _, device = _model(args)
    if not isinstance(model, Sampler):
        raise ValueError(f"{args.checkpoint} holds a {model.kind} model, which cannot sample (train a prior for a "
                         "VQ-VAE: `train-prior`)")
    options = _sample_options(model, args.temperature)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    if is_conditional(model):
        if args.label is None and model.n_classes > args.n:  # a row per class with one sample each draws more than --n
            raise ValueError(f"--n {args.n}: the model has {model.n_classes:,} classes and draws a row per class; "
                             f"pass --n {model.n_classes} or more (at most {MAX_PICTURE_SAMPLES:,}), or one "
                             "class with --label")
        if args.label is not None:
            _check_range(args.label, "--label", 0, model.n_classes - 1)
    elif args.label is not None:
        raise ValueError(f"--label {args.label}: a {model.kind} model is not conditioned on a label; drop the flag "
                         "(train --model cvae for one that is)")
    images, nrow = draw_samples(model, args.n, args.nrow, generator, options, args.label)
    return _written(args, images, nrow, n=len(images), seed=args.seed, **options,
                    **({} if args.label is None else {"label": args.label}))


@torch.no_grad()
def run_reconstruct(args: argparse.Namespace) -> dict:
    """The first --n test images in the top row and their reconstructions below; a hierarchical model gets one row
    per number of top groups decoded from the posterior (the rest at their prior means)."""
    _check_range(args.n, "--n", 1, 1_000)
    model, saved, _ = _model(args)
    if not hasattr(model, "reconstruct"):
        raise _refuse(model, args, "reconstruct", "a reconstruct() method")
    x, extra = _test_images(args, model, saved, args.n)
    rows = reconstruction_rows(model, x, extra)
    return _written(args, torch.cat([x, *rows]), args.n, n=args.n, rows=1 + len(rows))


@torch.no_grad()
def run_interpolate(args: argparse.Namespace) -> dict:
    """--pairs rows, each decoding the path between the posterior means of test images 2i and 2i+1."""
    _check_range(args.pairs, "--pairs", 1, 100)
    _check_range(args.steps, "--steps", 2, 100)
    model, saved, _ = _model(args)
    if not isinstance(model, GaussianLatent) or is_conditional(model):
        raise _refuse(model, args, "interpolate", "a Gaussian posterior over one latent vector and an unconditional "
                      "decoder")
    x, _ = _test_images(args, model, saved, 2 * args.pairs)
    rows = [interpolate(model, x[2 * i], x[2 * i + 1], args.steps, args.method) for i in range(args.pairs)]
    return _written(args, torch.cat(rows), args.steps, pairs=args.pairs, steps=args.steps, method=args.method)


@torch.no_grad()
def run_traverse(args: argparse.Namespace) -> dict:
    """The --dims most active latent dimensions (largest KL over 1,000 test images), each traversed from -span to
    span in --steps values around test image --image: one row per dimension."""
    _check_range(args.dims, "--dims", 1, 4096)
    _check_range(args.steps, "--steps", 2, 100)
    if not 0 < args.span <= 10:
        raise ValueError(f"--span {args.span}: expected a number above 0 and at most 10 (prior standard deviations)")
    if args.image < 0:
        raise ValueError(f"--image {args.image}: expected the index of a test image, 0 or more")
    model, saved, _ = _model(args)
    if not isinstance(model, GaussianLatent) or is_conditional(model):
        raise _refuse(model, args, "traverse", "a Gaussian posterior over one latent vector and an unconditional "
                      "decoder")
    test = _test_split(args, model, saved, args.image + 1)
    stats = latent_stats(model, test.subset(min(len(test), 1000)))
    dims = stats.kl_per_dim.argsort(descending=True)[:min(args.dims, model.latent_dim)].tolist()
    images = traverse(model, test[args.image][0], dims, torch.linspace(-args.span, args.span, args.steps))
    return _written(args, images, args.steps, dims=dims, steps=args.steps, span=args.span, image=args.image)
