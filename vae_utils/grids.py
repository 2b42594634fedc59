"""Picture grids of any family: samples (a conditional model a row per class) and reconstructions (a hierarchical
model a row per number of top groups), for the picture commands (pictures.py) and the end of a `train` run."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from .capabilities import Hierarchical, Sampler
from .data import ImageDataset, is_conditional, model_inputs
from .plotting import save_images


def draw_samples(model: nn.Module, n: int, nrow: int, generator: torch.Generator, options: dict,
                 label: Optional[int] = None) -> tuple[Tensor, int]:
    """n samples in rows of nrow; a conditional model draws a row per class (nrow each, n rounded down to whole
    rows) or, given label, n of that class: (images, nrow)."""
    options = dict(options)
    if is_conditional(model):
        if label is None:
            nrow = max(1, n // model.n_classes)
            n = nrow * model.n_classes
            options["labels"] = torch.arange(model.n_classes).repeat_interleave(nrow)
        else:
            options["labels"] = label
    return model.sample(n, generator=generator, **options), nrow


def reconstruction_rows(model: nn.Module, x: Tensor, extra: dict) -> list[Tensor]:
    """The reconstructions of x, one row; a hierarchical model one row per number of top groups decoded from the
    posterior (the rest at their prior means)."""
    if isinstance(model, Hierarchical):
        return [model.reconstruct(x, groups=g) for g in range(1, model.n_groups + 1)]
    return [model.reconstruct(x, **extra)]


@torch.no_grad()
def save_run_pictures(model: nn.Module, test: ImageDataset, out: Path, seed: int) -> list[Path]:
    """At the end of a `train` run: OUT/samples.png (64 samples seeded by the run's seed; a conditional model a row
    per class) and OUT/reconstructions.png (the first 8 test images over their reconstructions), each where the
    family draws it; the files written."""
    written = []
    if isinstance(model, Sampler):
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
        n = max(64, getattr(model, "n_classes", 0)) if is_conditional(model) else 64
        images, nrow = draw_samples(model, n, 8, generator, {})  # a temperature's default is 1: the model itself
        written.append(save_images(images, out / "samples.png", nrow=nrow))
    if hasattr(model, "reconstruct") and len(test):
        x, extra = next(iter(model_inputs(model, test.subset(min(8, len(test))), 8)))
        written.append(save_images(torch.cat([x, *reconstruction_rows(model, x, extra)]), out / "reconstructions.png",
                                   nrow=len(x)))
    return written
