"""A run's TensorBoard log (`torch.utils.tensorboard`): the training terms per step, the validation terms per epoch, grids
of samples and reconstructions every few epochs, and the run's hyperparameters with its final metrics.

    tensorboard --logdir runs        # every run under runs/, compared in the HPARAMS tab

Scalars are written every `every` steps, so that the host syncs they need stay off most steps; a resumed run
reopens the log with `purge_step` just after its checkpoint's step, so the steps the killed run logged after that
checkpoint are hidden rather than duplicated.
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

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
        self.log_dir = log_dir
        with self._failures():  # the folder and the event file up front: an unwritable log stops nothing midway
            log_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=log_dir, prefix=".write-test."):
                pass
            # the checkpoint's own step keeps its events (its epoch's record); the killed run's later ones are hidden
            self.writer = SummaryWriter(str(log_dir), purge_step=start_step + 1 if start_step else None)
            self.writer.flush()
        self.every, self.images_every = every, images_every

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        """Any failure of the writer (its thread's included: a full disk, a folder that went away) as one OSError
        that names the log's folder and says how to train without it."""
        try:
            yield
        except Exception as err:  # tensorboard's own error classes are not OSErrors
            text = " ".join(str(err).split())[:200] or type(err).__name__
            raise OSError(getattr(err, "errno", None), f"cannot write the TensorBoard log in {self.log_dir}: {text}; "
                          "free some space or choose another folder, or train without the log (--no-tensorboard; "
                          "log_dir=None)") from None

    def wants_step(self, step: int) -> bool:
        """Whether the global step is one that gets logged (the caller then computes the gradient norm)."""
        return step % self.every == 0

    def step(self, step: int, terms: Any, lr: float, grad_norm: Optional[float], skipped: int) -> None:
        """The training terms of one step (a named tuple of tensors), its learning rate and gradient norm."""
        with self._failures():
            for name, value in terms._asdict().items():
                self.writer.add_scalar(f"train/{'loss' if name == 'total' else name}", float(value.detach()), step)
            self.writer.add_scalar("train/lr", lr, step)
            if grad_norm is not None:
                self.writer.add_scalar("train/grad_norm", grad_norm, step)
            self.writer.add_scalar("train/skipped", skipped, step)

    def epoch(self, record: dict[str, float], step: int) -> None:
        """The epoch's record: validation terms (test terms only with test_every_epoch, under their own name),
        seconds, skipped steps and updates, mean gradient norm."""
        with self._failures():
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
        device, grids = next(model.parameters()).device, {}
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # training's draws unchanged
            if isinstance(model, Sampler) and not getattr(model, "conditional", False):
                grids["samples"] = _grid(model.sample(GRID, generator=torch.Generator(device).manual_seed(seed)))
            if isinstance(val_data, ImageDataset) and hasattr(model, "reconstruct"):
                x, extra = next(iter(model_inputs(model, val_data.subset(min(GRID // 2, len(val_data))), GRID)))
                grids["reconstructions"] = _grid(torch.cat([x, model.reconstruct(x, **extra)]))
        with self._failures():
            for name, grid in grids.items():
                self.writer.add_image(name, grid, step)

    def hparams(self, config: dict[str, Any], metrics: dict[str, float]) -> None:
        """The run's settings and final test metrics, one row of TensorBoard's HPARAMS table."""
        with self._failures():
            flat = {k: _hparam(v) for k, v in config.items() if k != "model" and v is not None}
            flat.update({f"model.{k}": _hparam(v) for k, v in config.get("model", {}).items() if v is not None})
            self.writer.add_hparams(flat, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")

    def close(self) -> None:
        with self._failures():
            self.writer.close()


def _grid(images: Tensor) -> Tensor:
    return make_grid(images.float().clamp(0, 1).cpu(), nrow=8, padding=2)


def _hparam(value: Any) -> Any:
    """TensorBoard's hparams take numbers, strings and booleans: tuples and dicts become text, and a file name's
    undecodable bytes (surrogates, which its protocol buffers refuse) are written as backslash escapes."""
    if isinstance(value, (int, float, bool)):
        return value
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")
