"""A run's TensorBoard log (`torch.utils.tensorboard`): the training terms per step, the validation terms per epoch, grids
of samples and reconstructions every few epochs, and the run's hyperparameters with its final metrics.

    tensorboard --logdir runs        # every run under runs/, compared in the HPARAMS tab

Scalars are written every `every` steps, so that the host syncs they need stay off most steps; a resumed run
reopens the log with `purge_step` just after its checkpoint's step, so the steps the killed run logged after that
checkpoint are hidden rather than duplicated.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torchvision.utils import make_grid

from .capabilities import Sampler
from .data import ImageDataset, model_inputs

LOG_EVERY = 10  # steps between two logged training steps
IMAGES_EVERY = 5  # epochs between two image grids (the last epoch always has them)
GRID = 32  # images per grid


class RunLog:
    """One run's SummaryWriter and what `train` writes to it."""

    def __init__(self, log_dir: Path, start_step: int = 0, every: int = LOG_EVERY,
                 images_every: int = IMAGES_EVERY) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:  # torch's writer needs the tensorboard package
            raise ImportError(f"logging to TensorBoard needs the tensorboard package ({err}): pip install tensorboard, "
                              "or turn logging off (log_dir=None; --no-tensorboard)") from None
        # the checkpoint's own step keeps its events (its epoch's record); the killed run's later ones are hidden
        self.writer = SummaryWriter(str(log_dir), purge_step=start_step + 1 if start_step else None)
        self.every, self.images_every = every, images_every

    def wants_step(self, step: int) -> bool:
        """Whether the global step is one that gets logged (the caller then computes the gradient norm)."""
        return step % self.every == 0

    def step(self, step: int, terms: Any, lr: float, grad_norm: Optional[float], skipped: int) -> None:
        """The training terms of one step (a named tuple of tensors), its learning rate and gradient norm."""
        for name, value in terms._asdict().items():
            self.writer.add_scalar(f"train/{'loss' if name == 'total' else name}", float(value.detach()), step)
        self.writer.add_scalar("train/lr", lr, step)
        if grad_norm is not None:
            self.writer.add_scalar("train/grad_norm", grad_norm, step)
        self.writer.add_scalar("train/skipped", skipped, step)

    def epoch(self, record: dict[str, float], step: int) -> None:
        """The epoch's record: validation terms (test terms only with test_every_epoch, under their own name),
        seconds, skipped steps and updates, mean gradient norm."""
        for key, value in record.items():
            if key == "epoch" or not isinstance(value, (int, float)):
                continue
            split = key.split("_", 1)[0]
            group = {"val": "validation", "test": "test_every_epoch"}.get(split, "epoch")
            self.writer.add_scalar(f"{group}/{key.split('_', 1)[1] if group != 'epoch' else key}", value, step)

    @torch.no_grad()
    def images(self, model: nn.Module, val_data: Optional[ImageDataset], epoch: int, last: bool, step: int,
               seed: int) -> None:
        """Grids of samples and of validation reconstructions every images_every epochs and after the last one."""
        if not (last or epoch % self.images_every == 0):
            return
        device = next(model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # training's draws unchanged
            if isinstance(model, Sampler) and not getattr(model, "conditional", False):
                samples = model.sample(GRID, generator=torch.Generator(device).manual_seed(seed))
                self.writer.add_image("samples", _grid(samples), step)
            if isinstance(val_data, ImageDataset) and hasattr(model, "reconstruct"):
                x, extra = next(iter(model_inputs(model, val_data.subset(min(GRID // 2, len(val_data))), GRID)))
                self.writer.add_image("reconstructions", _grid(torch.cat([x, model.reconstruct(x, **extra)])), step)

    def hparams(self, config: dict[str, Any], metrics: dict[str, float]) -> None:
        """The run's settings and final test metrics, one row of TensorBoard's HPARAMS table."""
        flat = {k: _hparam(v) for k, v in config.items() if k != "model" and v is not None}
        flat.update({f"model.{k}": _hparam(v) for k, v in config.get("model", {}).items() if v is not None})
        self.writer.add_hparams(flat, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")

    def close(self) -> None:
        self.writer.close()


def _grid(images: Tensor) -> Tensor:
    return make_grid(images.float().clamp(0, 1).cpu(), nrow=8, padding=2)


def _hparam(value: Any) -> Any:
    """TensorBoard's hparams take numbers, strings and booleans: tuples and dicts become text."""
    return value if isinstance(value, (int, float, str, bool)) else str(value)
