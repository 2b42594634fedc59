"""The training loop shared by the notebook and the command line: resumable, crash-safe, loud on NaN."""
from __future__ import annotations

import math
import shutil
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm  # a widget in notebooks, text in terminals

from .checkpoints import CheckpointError, manifest, model_from_checkpoint, read_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import ImageDataset, dataset_checksum, dataset_image_shape, iterate_batches
from .losses import vae_loss
from .metrics import evaluate
from .model import VAE
from .repro import autocast, get_rng_state, resolve_device, resolve_precision, set_rng_state

History = list[dict[str, float]]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped instead of continuing with broken weights."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped training between two steps; the message says how to resume."""


def train(
    model: VAE,
    train_data: Dataset,
    test_data: Optional[Dataset] = None,
    config: Optional[TrainConfig] = None,
    *,
    out_dir: Union[str, Path, None] = None,
    resume: Union[str, Path, None] = None,
    progress: bool = True,
    on_epoch_end: Optional[Callable[[dict[str, float]], None]] = None,
) -> History:
    """Train with Adam on the negative ELBO; return one record per epoch (losses in nats per image).

    With `out_dir`, `last.pt` is written atomically after every epoch (and on Ctrl-C/SIGTERM) and `best.pt`
    whenever the test -ELBO improves. With `resume`, training continues bit-exactly from such a checkpoint
    up to `config.epochs` epochs in total.
    """
    config = replace(config or TrainConfig(model=model.config), model=model.config)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    _check_shapes(model, train_data, test_data)
    train_data = _subset(train_data, config.subset)
    checksum = dataset_checksum(train_data)
    if isinstance(train_data, ImageDataset):  # keep the whole data set on the device, as uint8
        train_data = ImageDataset(train_data.images.to(device), train_data.labels, train_data.name)
    check_range = not isinstance(train_data, ImageDataset)  # uint8 / 255 lies in [0, 1] by construction
    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is not None:
        check_output_dir(out_dir, model)

    model.to(device, memory_format=torch.channels_last).train()  # faster convolutions in oneDNN and cuDNN
    optimizer = make_optimizer(model, config.lr)
    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    order = torch.Generator().manual_seed(config.seed)  # the data order, saved with every checkpoint
    history: History = []
    epoch, step, elapsed, skipped = 1, 0, 0.0, 0
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # total, recon, kl (summed over images), images
    one = torch.ones((), device=device)  # the image counter's increment, allocated once
    epoch_order_state = order.get_state()
    if resume is not None:
        state = _read_resumable(resume, model, config, checksum, device)
        optimizer.load_state_dict(state["optimizer_state"])
        scheduler.load_state_dict(state["scheduler_state"])  # the step reached; a longer run follows its new curve
        set_rng_state(state["rng_state"])
        history = list(state["history"])
        epoch, step = state["position"]["epoch"], state["position"]["step"]
        epoch_order_state, elapsed = state["epoch_order_state"], state["partial_seconds"]
        sums, skipped = state["partial_sums"].to(device), state["partial_skipped"]
        model.train()
    best = min((h["test_neg_elbo"] for h in history if "test_neg_elbo" in h), default=math.inf)

    def snapshot() -> dict:
        return dict(optimizer_state=optimizer.state_dict(), scheduler_state=scheduler.state_dict(),
                    train_config=config.to_dict(), history=history, position={"epoch": epoch, "step": step},
                    epoch_order_state=epoch_order_state, partial_sums=sums.cpu(), partial_seconds=elapsed,
                    partial_skipped=skipped, rng_state=get_rng_state(), data_checksum=checksum,
                    manifest={**manifest(), "data_sha256": checksum})

    with _StopSignals() as stop:
        while epoch <= config.epochs:
            order.set_state(epoch_order_state)
            permutation = torch.randperm(len(train_data), generator=order)
            next_order_state = order.get_state()
            start = time.perf_counter()
            bar = tqdm(iterate_batches(train_data, config.batch_size, device, permutation, start=step),
                       initial=step, total=steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}",
                       disable=not progress, leave=False)
            for x in bar:
                step += 1
                x = x.contiguous(memory_format=torch.channels_last)
                if config.binarize:
                    x = torch.bernoulli(x)  # dynamic binarization: fresh binary pixels every time
                with autocast(device, precision):
                    out = model(x)
                beta = config.beta * kl_warmup_factor(epoch, step, steps_per_epoch, config.kl_warmup_epochs)
                terms = vae_loss(out, x, beta=beta, check_range=check_range)
                if not torch.isfinite(terms.total):
                    if config.on_nonfinite == "skip":
                        skipped += 1
                        continue
                    raise NonFiniteLossError(_nonfinite_message(terms, epoch, step, steps_per_epoch, config, out_dir))
                optimizer.zero_grad(set_to_none=True)
                terms.total.backward()
                optimizer.step()
                scheduler.step()
                sums += torch.stack([*(t.detach() for t in terms), one]).double() * len(x)
                if stop.signal is not None:
                    elapsed += time.perf_counter() - start
                    raise TrainingInterrupted(_interrupt(stop.signal, epoch, step, steps_per_epoch, out_dir,
                                                         model, snapshot))
            elapsed += time.perf_counter() - start
            record = _epoch_record(epoch, sums, elapsed, skipped)
            if test_data is not None:
                record.update({f"test_{k}": v for k, v in evaluate(model, test_data, seed=config.seed).items()})
            history.append(record)
            epoch, step, elapsed, skipped, epoch_order_state = epoch + 1, 0, 0.0, 0, next_order_state
            sums = torch.zeros_like(sums)
            if out_dir is not None:
                state = snapshot()
                save_checkpoint(model, out_dir / "last.pt", **state)
                if record.get("test_neg_elbo", math.inf) < best:
                    best = record["test_neg_elbo"]
                    save_checkpoint(model, out_dir / "best.pt", **state)
            if progress:
                tqdm.write(format_record(record, config.epochs))
            if on_epoch_end is not None:
                on_epoch_end(record)
    model.to(memory_format=torch.contiguous_format).eval()  # as load_checkpoint builds it: same numbers after a reload
    return history


def kl_warmup_factor(epoch: int, step: int, steps_per_epoch: int, warmup_epochs: int) -> float:
    """Linear KL warm-up (Bowman et al., 2016; Sønderby et al., 2016): 0 at the start, 1 after warmup_epochs."""
    if warmup_epochs == 0:
        return 1.0
    return min(1.0, (epoch - 1 + step / steps_per_epoch) / warmup_epochs)


def make_optimizer(model: VAE, lr: float) -> torch.optim.Adam:
    """Adam, fused into one kernel over all parameters where this torch build has it (about 15% faster here)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):  # torch < 2.4 has no fused Adam on CPU
        return torch.optim.Adam(model.parameters(), lr=lr)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """The per-step learning-rate schedule named by config.lr_schedule (a LambdaLR: its state is the step)."""
    total = config.epochs * steps_per_epoch
    if config.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: onecycle_factor(step, total))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def onecycle_factor(step: int, total: int, warmup: float = 0.1, start: float = 0.1, end: float = 0.01) -> float:
    """1cycle shape (Smith & Topin, 2017): linear warm-up from start*lr to lr, then cosine decay to end*lr."""
    warm = max(1, round(warmup * total))
    if step < warm:
        return start + (1.0 - start) * step / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * t))


def check_output_dir(out_dir: Path, model: VAE) -> None:
    """Fail before training when out_dir cannot be written or lacks room for two checkpoints."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise OSError(f"cannot write checkpoints to {out_dir}: {err.strerror or err}; "
                      "choose a writable output folder") from err
    # weights + Adam's two moments, in fp32, for last.pt, best.pt and one temporary file
    need = 3 * 3 * 4 * sum(p.numel() for p in model.parameters()) + (16 << 20)
    free = shutil.disk_usage(out_dir).free
    if free < need:
        raise OSError(f"only {free / 2**20:.0f} MiB free in {out_dir}, checkpoints need about {need / 2**20:.0f} MiB; "
                      "free some space or choose another output folder")


def format_record(record: dict[str, float], epochs: int) -> str:
    """One line per epoch: train and test losses with their parts, in nats per image."""
    line = (f"epoch {record['epoch']:>3}/{epochs}  train {record['train_loss']:.2f} "
            f"(recon {record['train_recon']:.2f}, kl {record['train_kl']:.2f})")
    if "test_neg_elbo" in record:
        line += (f"  test -ELBO {record['test_neg_elbo']:.2f} "
                 f"(recon {record['test_recon']:.2f}, kl {record['test_kl']:.2f})")
    if record.get("skipped_steps"):
        line += f"  skipped {record['skipped_steps']} non-finite steps"
    return line + f"  [{record['train_seconds']:.1f} s]"


def _epoch_record(epoch: int, sums: torch.Tensor, seconds: float, skipped: int) -> dict:
    total, recon, kl, n = sums.tolist()
    n = max(n, 1.0)
    return {"epoch": epoch, "train_loss": total / n, "train_recon": recon / n, "train_kl": kl / n,
            "train_seconds": seconds, "skipped_steps": skipped}


def _check_shapes(model: VAE, train_data: Dataset, test_data: Optional[Dataset]) -> None:
    for name, data in (("train_data", train_data), ("test_data", test_data)):
        if data is not None and tuple(dataset_image_shape(data)) != model.image_shape:
            raise ValueError(f"{name} holds images of shape {tuple(dataset_image_shape(data))} but the model "
                             f"expects {model.image_shape}: build the VAE with matching in_channels/image_size")


def _subset(data: Dataset, n: Optional[int]) -> Dataset:
    if isinstance(data, ImageDataset):
        return data.subset(n)
    return data if n is None else torch.utils.data.Subset(data, range(min(n, len(data))))


def _read_resumable(path, model: VAE, config: TrainConfig, checksum: Optional[str], device) -> dict:
    """Load a checkpoint written by `train` into model; check that it belongs to this run."""
    state = read_checkpoint(path, map_location=device)
    model_from_checkpoint(state, path, device, model)  # checks the architecture, loads the weights
    if "position" not in state:
        raise CheckpointError(f"{path} holds no training state (it was written by save_checkpoint, not by train): "
                              "load it with load_checkpoint, or train anew")
    saved = TrainConfig.from_dict(state["train_config"])
    if state.get("data_checksum") != checksum:
        raise CheckpointError(f"{path} was trained on other data (sha256 {state.get('data_checksum')}, now "
                              f"{checksum}): resume with the same data set and subset")
    if saved.batch_size != config.batch_size:
        raise CheckpointError(f"{path} was trained with batch_size={saved.batch_size}, not {config.batch_size}: "
                              "resume with the same batch size")
    done = len(state["history"])
    if done >= config.epochs:
        raise ValueError(f"{path} has already trained {done} epochs; pass epochs > {done} to train further")
    return state


def _nonfinite_message(terms, epoch, step, steps_per_epoch, config, out_dir) -> str:
    saved = f"in {out_dir / 'last.pt'}" if out_dir is not None and epoch > 1 else "not saved (no out_dir or epoch 1)"
    return (f"loss became {terms.total.item()} at epoch {epoch}, step {step}/{steps_per_epoch} (recon "
            f"{terms.recon.item():.4g}, kl {terms.kl.item():.4g}); likely causes: a learning rate too high "
            f"(lr={config.lr}) or inputs with NaN/inf. The last good checkpoint is {saved}; "
            "set on_nonfinite='skip' to drop such batches instead")


def _interrupt(signame, epoch, step, steps_per_epoch, out_dir, model, snapshot) -> str:
    where = f"training stopped by {signame} at epoch {epoch}, step {step}/{steps_per_epoch}"
    if out_dir is None:
        return where + "; nothing was saved (pass out_dir to keep resumable checkpoints)"
    path = save_checkpoint(model, out_dir / "last.pt", **snapshot())
    return (f"{where}; saved {path}. Resume with vu.train(..., resume='{path}') or "
            f"`python -m vae_utils train --resume {path} ...` (same data and batch size)")


class _StopSignals:
    """Turn the first SIGINT/SIGTERM into a flag checked between steps; a second one stops at once."""

    def __enter__(self) -> "_StopSignals":
        self.signal: Optional[str] = None
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped without saving")
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
