"""The training loop shared by the notebook and the command line: resumable, crash-safe, loud on NaN."""
from __future__ import annotations

import math
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import Dataset
from tqdm.auto import tqdm  # a widget in notebooks, text in terminals

from .checkpoints import CheckpointError, manifest, model_from_checkpoint, read_checkpoint, save_checkpoint
from .config import TrainConfig, short_repr
from .compiling import compile_objective
from .configfile import check_config_file, write_config
from .data import (ImageDataset, bernoulli_pixels, binarize, check_labels, dataset_checksum, dataset_image_shape,
                   is_conditional, iterate_batches, validation_split)
from .distributed import (all_reduce_sum, broadcast_object, gather_objects, init_from_env, is_main,
                          launched_by_torchrun, local_device, rank, shard, world_size)
from .metrics import evaluate
from .rundir import OutputLock, output_dir, prepare_output_dir
from .runlog import RunLog
from .threads import ThreadGovernor
from .repro import (autocast, bars_disabled, get_rng_state, resolve_device, resolve_precision, set_rng_state,
                    set_seed)

History = list[dict[str, float]]
CHANGEABLE_ON_RESUME = ("epochs", "device", "data_root", "compile", "patience", "test_every_epoch", "threads")
# ^ every other TrainConfig field must match the run's own (the data may move: its checksum, not its path, says
# whether it is the same)
GRAD_SCALE_DECAY = 0.99  # the running scale of gradient norms that skip_factor multiplies: an EMA over ~100 updates
MAX_SKIPS_IN_A_ROW = 100  # this many skipped updates in a row stop the run: its weights no longer change
VAL_BINARIZATION_SEED = 1  # a binarized run's validation images are drawn once with this seed (the test split's: 0)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped instead of continuing with broken weights."""


class UpdatesSkippedError(NonFiniteLossError):
    """Every recent update's gradient norm was far above its running scale: training stopped instead of idling."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped training between two steps; the message says how to resume."""


@dataclass
class RunState:
    """Where a run stands: with the model, optimizer and random states, all a checkpoint needs to continue it."""

    epoch: int = 1  # the epoch being trained (1-based)
    step: int = 0  # steps of this epoch already taken
    history: History = field(default_factory=list)  # one record per finished epoch
    order_state: Optional[Tensor] = None  # the data-order generator's state at the start of this epoch
    sums: dict[str, Tensor] = field(default_factory=dict)  # this epoch's loss terms summed over images (float64)
    images: int = 0  # images this epoch's sums cover
    seconds: float = 0.0  # training seconds of this epoch so far
    skipped: int = 0  # non-finite steps dropped this epoch (on_nonfinite="skip")
    updates_skipped: int = 0  # updates not taken this epoch: gradient norm above skip_factor x the running scale
    grad_norm_sum: float = 0.0  # this epoch's gradient norms (before clipping) summed, when clipping or skipping
    grad_norms: int = 0  # how many that sum holds
    grad_scale: float = 0.0  # running scale (EMA) of the gradient norms of updates taken; 0 before the first
    skips_in_a_row: int = 0  # updates skipped since the last one taken

    def add(self, sums: dict[str, Tensor], n: int) -> None:
        """Accumulate the loss terms summed over n images (float64 tensors), without a host sync."""
        for name, value in sums.items():
            self.sums[name] = self.sums.get(name, 0) + value
        self.images += n

    def finish_epoch(self, next_order_state: Tensor) -> dict[str, float]:
        """The epoch's training record; the state moves to the start of the next epoch."""
        n = max(self.images, 1)
        record = {"epoch": self.epoch, **{_train_key(k): v.item() / n for k, v in self.sums.items()},
                  "train_seconds": self.seconds, "skipped_steps": self.skipped}
        if self.grad_norms or self.updates_skipped:
            record.update(grad_norm=self.grad_norm_sum / max(self.grad_norms, 1), skipped_updates=self.updates_skipped)
        self.history.append(record)
        self.epoch, self.step, self.order_state = self.epoch + 1, 0, next_order_state
        self.sums, self.images, self.seconds, self.skipped = {}, 0, 0.0, 0
        self.updates_skipped, self.grad_norm_sum, self.grad_norms = 0, 0.0, 0
        return record

    def to_checkpoint(self) -> dict:
        """The resume keys, in one place (read back by `from_checkpoint`)."""
        return {"position": {"epoch": self.epoch, "step": self.step}, "history": self.history,
                "epoch_order_state": self.order_state,
                "partial_sums": {k: v.item() for k, v in self.sums.items()}, "partial_images": self.images,
                "partial_seconds": self.seconds, "partial_skipped": self.skipped,
                "partial_updates": {"skipped": self.updates_skipped, "grad_norm_sum": self.grad_norm_sum,
                                    "grad_norms": self.grad_norms, "grad_scale": self.grad_scale,
                                    "skips_in_a_row": self.skips_in_a_row}}

    @classmethod
    def from_checkpoint(cls, state: dict, device: torch.device) -> "RunState":
        """The run state saved by `to_checkpoint`."""
        sums = {k: torch.tensor(v, dtype=torch.float64, device=device) for k, v in state["partial_sums"].items()}
        updates = state.get("partial_updates", {})  # absent from checkpoints of runs before clipping existed
        return cls(epoch=state["position"]["epoch"], step=state["position"]["step"], history=list(state["history"]),
                   order_state=state["epoch_order_state"], sums=sums, images=state["partial_images"],
                   seconds=state["partial_seconds"], skipped=state["partial_skipped"],
                   updates_skipped=updates.get("skipped", 0), grad_norm_sum=updates.get("grad_norm_sum", 0.0),
                   grad_norms=updates.get("grad_norms", 0), grad_scale=updates.get("grad_scale", 0.0),
                   skips_in_a_row=updates.get("skips_in_a_row", 0))

    def best(self, metric: str = "neg_elbo") -> float:
        """Lowest validation value of metric so far (inf when none): the -ELBO for a VAE (the model's best_metric)."""
        key = f"val_{metric}"
        return min((h[key] for h in self.history if key in h), default=math.inf)


@dataclass
class _Run:
    """What one call of `train` works with; `checkpoint()` gathers it for the file."""

    model: nn.Module
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    state: RunState
    device: torch.device
    precision: str
    checksum: Optional[str]
    steps_per_epoch: int
    out_dir: Optional[Path]
    objective: Callable = None  # model.loss, or the same through DistributedDataParallel under torchrun
    scaler: Optional[torch.amp.GradScaler] = None  # fp16 only: scales the loss so that small gradients survive
    ema: Optional[AveragedModel] = None  # the moving average of the weights (config.ema_decay > 0)
    log: Optional[RunLog] = None  # the TensorBoard log (train's log_dir), on rank 0
    train_rows: Optional[Tensor] = None  # the rows of the training split trained on, when a validation split is held
    # out (None: all of them)
    val_data: Optional[Dataset] = None  # the held-out validation images (config.val_size of them)
    best_state: Optional[dict] = None  # the scored weights of the best validation epoch met in this call
    grad_norm: Optional[float] = None  # the last step's gradient norm, when clipping or skipping computed it
    governor: Optional[ThreadGovernor] = None  # torch's threads, following the machine's load (config.threads)

    @property
    def global_step(self) -> int:
        """Steps taken since the run began (the x axis of its TensorBoard log)."""
        return (self.state.epoch - 1) * self.steps_per_epoch + self.state.step

    @property
    def scored(self) -> nn.Module:
        """The weights evaluation uses: the moving average when there is one."""
        return self.model if self.ema is None else self.ema.module

    def checkpoint(self) -> dict:
        """What a checkpoint holds besides the model; collective under torchrun (every rank's random state)."""
        rng_states = gather_objects(get_rng_state())
        ema = {} if self.ema is None else dict(ema_state={k: v.detach().cpu() for k, v in
                                                          self.ema.module.state_dict().items()},
                                               ema_updates=int(self.ema.n_averaged))
        return dict(**ema, optimizer_state=self.optimizer.state_dict(), scheduler_state=self.scheduler.state_dict(),
                    scaler_state=self.scaler.state_dict() if self.scaler is not None else {},
                    train_config=self.config.to_dict(), rng_state=rng_states[0], rank_rng_states=rng_states,
                    world_size=world_size(), data_checksum=self.checksum,
                    manifest={**manifest(), "data_sha256": self.checksum}, **self.state.to_checkpoint())

    def save(self, *names: str) -> None:
        """Write the checkpoint under each name in turn, on rank 0 only; every rank must call it."""
        payload = self.checkpoint()
        if is_main():
            for name in names:
                save_checkpoint(self.model, self.out_dir / name, **payload)


def train(
    model: nn.Module,
    train_data: Dataset,
    test_data: Optional[Dataset] = None,
    config: Optional[TrainConfig] = None,
    *,
    out_dir: Union[str, Path, None] = None,
    resume: Union[str, Path, None] = None,
    overwrite: bool = False,
    progress: bool = True,
    on_epoch_end: Optional[Callable[[dict[str, float]], None]] = None,
    allow_finished: bool = False,
    log_dir: Union[str, Path, None] = None,
) -> History:
    """Train with Adam on the model's loss; return one record per epoch (losses in nats per image).

    Any model whose `loss(x, config, epochs_done, ...)` returns named terms with a `total` trains here: the VAE,
    the VQ-VAE and its CodePrior.

    With config.val_size = N, N images of train_data are held out (`validation_split`, seeded by config.seed; a
    binarized run draws their pixels once, with a fixed seed) and scored after every epoch: those figures (keys
    `val_*`) choose the best epoch (the model's `best_metric`, e.g. the -ELBO) and stop the run early after
    config.patience epochs without a better one. When training ends the model holds the chosen epoch's weights
    (without a validation split: the last epoch's, nothing is chosen), and test_data, if given, is scored once with
    them: its figures (`test_*`) join that epoch's record (`selected_epoch` finds it). Only
    config.test_every_epoch scores test_data after every epoch, a curve that chooses nothing.

    A fresh run seeds every random generator with config.seed first, so its result depends on the model's initial
    weights, the data and the config alone. With `out_dir`, `last.pt` is written atomically after every epoch
    (and on Ctrl-C/SIGTERM) and `best.pt` whenever the validation figure improves (every epoch without a
    validation split); a folder that holds another run is refused unless `overwrite=True`. With `resume`, training continues bit-exactly from such a checkpoint up to
    `config.epochs` epochs in total; a run that already has them is refused, unless allow_finished=True: then,
    after every check a resume makes (the lock, the folder, the settings), its history is returned untrained.
    With `log_dir`, the run writes a TensorBoard log there (runlog.py; a resumed run appends to it).
    """
    config = replace(config or TrainConfig(model=model.config, model_kind=model.kind), model=model.config,
                     model_kind=model.kind)
    device = resolve_device(config.device)
    if launched_by_torchrun():
        init_from_env(device.type)
        device = local_device(device)
    _check_shapes(model, train_data, test_data)
    train_data, train_rows, val_data = split_training_data(train_data, config)
    checksum = dataset_checksum(train_data)  # with a validation split, of the whole split: val_size, seed and subset
    # (checked on resume too) say which rows are trained on
    if isinstance(train_data, ImageDataset) and not train_data.mapped:  # the whole set on the device, as uint8
        train_data = train_data.with_images(train_data.images.to(device))
    out_dir = output_dir(out_dir)
    model.to(device, memory_format=torch.channels_last).train()  # faster convolutions in oneDNN and cuDNN
    optimizer = make_optimizer(model, config.lr, config.weight_decay)
    steps_per_epoch = math.ceil((len(train_data) if train_rows is None else len(train_rows)) / config.batch_size)
    run = _Run(model, config, optimizer, make_scheduler(optimizer, config, steps_per_epoch), RunState(), device,
               resolve_precision(config.precision, device), checksum, steps_per_epoch, out_dir,
               _objective(model, config.compile), train_rows=train_rows, val_data=val_data)
    if run.precision == "fp16":
        run.scaler = torch.amp.GradScaler(device.type)
    if config.ema_decay:
        run.ema = AveragedModel(model, multi_avg_fn=ema_update(config.ema_decay), use_buffers=True)
    progress = progress and is_main()
    with OutputLock(out_dir if is_main() else None):
        error = None
        if out_dir is not None and is_main():
            try:
                prepare_output_dir(out_dir, model, resume, overwrite)
                check_config_file(out_dir / "config.toml", config, resume is not None, overwrite)
            except (OSError, ValueError) as err:
                error = err
        error = broadcast_object(error)  # every rank stops when rank 0 cannot write
        if error is not None:
            raise error
        if resume is not None:  # checked before config.toml is written: a refused resume leaves the run's own file
            _resume(run, resume, allow_finished)
        if out_dir is not None and is_main():  # the resolved run, which `train --config` takes back as it is
            write_config(config, out_dir / "config.toml")
        if resume is None:
            set_seed(config.seed)
            run.state.order_state = torch.Generator().manual_seed(config.seed).get_state()
        if log_dir is not None and is_main():
            run.log = RunLog(Path(log_dir), start_step=run.global_step)
        done = len(run.state.history)
        metric = getattr(model, "best_metric", "neg_elbo")
        run.governor = ThreadGovernor(config.threads)
        try:
            with _StopSignals() as stop:
                while run.state.epoch <= config.epochs and stop_reason(run.state.history, config, metric) is None:
                    next_order_state = _train_epoch(run, train_data, stop, progress)
                    record = _finish_epoch(run, test_data, next_order_state)
                    if progress:
                        tqdm.write(format_record(record, config.epochs))
                    if on_epoch_end is not None:
                        on_epoch_end(record)
            reason = stop_reason(run.state.history, config, metric)
            if reason is not None and progress and len(run.state.history) > done:
                tqdm.write(reason)
            chosen = _choose_and_score(run, test_data, metric, progress)
            if run.log is not None and len(run.state.history) > done:  # a finished run resumed adds no second row
                run.log.hparams(config.to_dict(), {k: v for k, v in chosen.items() if k.startswith(
                    ("test_", "val_", "train_")) and isinstance(v, float)})
        finally:
            run.governor.restore()
            if run.log is not None:
                run.log.close()
    return run.state.history


def split_training_data(data: Dataset, config: TrainConfig) -> tuple[Dataset, Optional[Tensor], Optional[Dataset]]:
    """(training data, the rows trained on or None for all, validation data or None) as config.val_size and
    config.subset say: the validation rows are held out of the whole split first, then the subset is the first
    config.subset of the rest; a binarized run's validation pixels are drawn once (VAL_BINARIZATION_SEED)."""
    if not config.val_size:
        return _subset(data, config.subset), None, None
    rows, val_rows = validation_split(len(data), config.val_size, config.seed)
    if config.subset is not None:
        if config.subset > len(rows):
            raise ValueError(f"subset={config.subset} but {len(rows)} training images remain after holding out "
                             f"val_size={config.val_size}: pass at most {len(rows)}")
        rows = rows[:config.subset]
    val = data.take(val_rows) if isinstance(data, ImageDataset) else torch.utils.data.Subset(data, val_rows.tolist())
    if config.binarize and isinstance(val, ImageDataset):
        val = binarize(val, seed=VAL_BINARIZATION_SEED)
    return data, rows, val


def epochs_without_improvement(history: History, metric: str = "neg_elbo", warmup_epochs: int = 0) -> int:
    """Epochs since the validation figure last improved; epochs before warmup_epochs do not count (the reference
    code of the VampPrior and Exemplar VAE resets its counter during KL warm-up)."""
    best, count = math.inf, 0
    for record in history:
        value = record.get(f"val_{metric}", math.inf)
        if value < best:
            best, count = value, 0
        elif record["epoch"] >= warmup_epochs:
            count += 1
    return count


def stop_reason(history: History, config: TrainConfig, metric: str = "neg_elbo") -> Optional[str]:
    """Why the run stopped before config.epochs (early stopping: config.patience epochs without a better validation
    figure), or None when it did not or has not."""
    if not config.patience or not history:
        return None
    waited = epochs_without_improvement(history, metric, config.kl_warmup_epochs)
    if waited < config.patience:
        return None
    best = selected_epoch(history, metric)
    name = "-ELBO" if metric == "neg_elbo" else metric
    return (f"stopped early after epoch {history[-1]['epoch']}: no better validation {name} for {waited} epochs "
            f"(patience {config.patience}); the best, {history[best - 1][f'val_{metric}']:.4f}, was at epoch {best}")


def selected_epoch(history: History, metric: str = "neg_elbo") -> int:
    """The epoch a run chose: the one with the lowest validation figure (the first of equals), or the last epoch when
    the run held out no validation split (nothing is chosen then)."""
    scored = [(h[f"val_{metric}"], h["epoch"]) for h in history if f"val_{metric}" in h]
    return min(scored)[1] if scored else history[-1]["epoch"]


def _choose_and_score(run: _Run, test_data: Optional[Dataset], metric: str, progress: bool = False
                      ) -> dict[str, float]:
    """Give the model the chosen epoch's weights, score test_data with them once (unless that epoch already was, by
    test_every_epoch), and return the chosen epoch's record; with progress, say so as it starts."""
    model, history = run.model, run.state.history
    chosen = selected_epoch(history, metric) if history else None
    earlier = chosen is not None and chosen != history[-1]["epoch"]  # only a validation split chooses an earlier one
    best_state = (run.best_state or _best_from_file(run, chosen)) if earlier else None
    if best_state is not None:
        model.load_state_dict(best_state)
    elif run.ema is not None:  # the model carries the averaged weights, as load_checkpoint gives them back
        model.load_state_dict(run.ema.module.state_dict())
    model.to(memory_format=torch.contiguous_format).eval()  # as load_checkpoint builds it: same numbers after a reload
    if chosen is None:
        return {}
    record = history[chosen - 1]
    if test_data is not None and not any(k.startswith("test_") for k in record):
        if progress and is_main():
            tqdm.write(f"scoring the test split ({len(test_data):,} images) once, with epoch {chosen}'s weights")
        record.update({f"test_{k}": v for k, v in evaluate(model, test_data, seed=run.config.seed).items()})
    return record


def _best_from_file(run: _Run, epoch: int) -> Optional[dict]:
    """The weights of epoch `epoch` from OUT/best.pt (a resumed run whose best epoch came before this call), or None
    (with a warning: the model keeps the last epoch's weights) where no such file is found."""
    path = None if run.out_dir is None else run.out_dir / "best.pt"
    if path is not None and path.is_file():
        saved = read_checkpoint(path)
        if len(saved.get("history", [])) == epoch:
            return saved.get("ema_state") or saved["model_state"]  # the scored weights: the average, if any
    print(f"vae_utils: the best validation epoch, {epoch}, came before this resume and no best.pt of it was found "
          "beside the run: the model keeps the last epoch's weights", file=sys.stderr)
    return None


def _train_epoch(run: _Run, data: Dataset, stop: "_StopSignals", progress: bool) -> Tensor:
    """Take the steps of run.state.epoch from run.state.step on; return the data order's state for the next epoch.

    Under torchrun every rank walks the same global batches and takes its share of each (the global batch size is
    config.batch_size); one all-reduce per step agrees on non-finite losses and signals and sums the loss terms.
    Raises TrainingInterrupted (after saving last.pt) on Ctrl-C/SIGTERM, NonFiniteLossError on a NaN/inf loss.
    """
    state, config = run.state, run.config
    order = torch.Generator()
    order.set_state(state.order_state)
    rows = run.train_rows
    permutation = torch.randperm(len(data), generator=order) if rows is None else rows[
        torch.randperm(len(rows), generator=order)]
    check_range = not isinstance(data, ImageDataset)  # uint8 / 255 lies in [0, 1] by construction
    world, me = world_size(), rank()
    start, interrupted = time.perf_counter(), None
    labelled = is_conditional(run.model)  # a conditional model's loss takes the labels too
    bar = tqdm(iterate_batches(data, config.batch_size, run.device, permutation, start=state.step, labels=labelled),
               initial=state.step, total=run.steps_per_epoch, desc=f"epoch {state.epoch}/{config.epochs}",
               leave=False, disable=not progress or bars_disabled())
    try:
        for batch in bar:
            if run.governor is not None:
                run.governor.step()
            x, y = batch if labelled else (batch, None)
            state.step += 1
            if config.binarize:  # dynamic binarization: fresh binary pixels every time (whole global batch)
                x = bernoulli_pixels(x)
            x = x.contiguous(memory_format=torch.channels_last)
            rows = shard(len(x), world, me)
            n = rows.stop - rows.start  # an empty share computes one image with weight 0: DDP needs every rank
            epochs_done = state.epoch - 1 + state.step / run.steps_per_epoch  # for schedules such as KL warm-up
            part = rows if n else slice(0, 1)
            extra = {} if y is None else {"labels": y[part]}
            with autocast(run.device, run.precision):
                terms = run.objective(x[part], config, epochs_done, check_range=check_range,
                                      batch_rows=(rows.start if n else 0, len(x)), **extra)
            nonfinite, stopping = _agree(terms, n, stop, state)
            if nonfinite:
                if config.on_nonfinite == "skip":
                    state.skipped += 1
                    continue
                raise NonFiniteLossError(_nonfinite_message(terms, run))
            run.optimizer.zero_grad(set_to_none=True)
            # DDP averages gradients over ranks: weighting each rank's batch mean by its share makes that the
            # gradient of the global batch mean, whatever the split
            loss = terms.total if world == 1 else terms.total * (n * world / len(x))
            if run.scaler is None:
                loss.backward()
                if _update_allowed(run):
                    run.optimizer.step()
            else:  # fp16: a step whose gradients overflow is skipped and the scale lowered
                run.scaler.scale(loss).backward()
                if _update_allowed(run):
                    run.scaler.step(run.optimizer)
                run.scaler.update()
            if run.ema is not None:
                run.ema.update_parameters(run.model)
            if run.log is not None and run.log.wants_step(run.global_step):
                run.log.step(run.global_step, terms, run.optimizer.param_groups[0]["lr"], _grad_norm(run),
                             state.skipped + state.updates_skipped)
            run.scheduler.step()
            if stopping:
                interrupted = stop.signal or "a signal to another process"
                break
    finally:
        state.seconds += time.perf_counter() - start
        bar.close()
    if interrupted is not None:
        raise TrainingInterrupted(_interrupt(interrupted, run))
    return order.get_state()


def _update_allowed(run: _Run) -> bool:
    """Clip the gradient's global norm to config.grad_clip and say whether to take the update: not when its norm
    (before clipping) is non-finite or above config.skip_factor times the running scale of the norms of updates
    taken (VDVAE's skip; counted in the epoch's record). Without clipping or skipping: always, without a sync."""
    config, state = run.config, run.state
    if not (config.grad_clip or config.skip_factor):
        return True
    if run.scaler is not None:
        run.scaler.unscale_(run.optimizer)
    norm = run.grad_norm = float(torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip or math.inf))
    if config.skip_factor and (not math.isfinite(norm) or (state.grad_scale and norm > config.skip_factor
                                                            * state.grad_scale)):
        state.updates_skipped, state.skips_in_a_row = state.updates_skipped + 1, state.skips_in_a_row + 1
        if state.skips_in_a_row >= MAX_SKIPS_IN_A_ROW:
            raise UpdatesSkippedError(
                f"{state.skips_in_a_row} updates in a row skipped at epoch {state.epoch}, step {state.step}: their "
                f"gradient norms (last {norm:.4g}) are all above {config.skip_factor} x the running scale "
                f"{state.grad_scale:.4g}, so the weights no longer change (lr={config.lr} too high, or skip_factor "
                f"too small). {_last_good(run)}")
        return False
    state.grad_norm_sum, state.grad_norms, state.skips_in_a_row = state.grad_norm_sum + norm, state.grad_norms + 1, 0
    state.grad_scale = norm if not state.grad_scale else GRAD_SCALE_DECAY * state.grad_scale + (
        1 - GRAD_SCALE_DECAY) * norm
    return True


def _grad_norm(run: _Run) -> float:
    """The step's gradient norm: the one clipping computed, else computed now (only on the steps a log records)."""
    if run.config.grad_clip or run.config.skip_factor:
        return run.grad_norm
    grads = [p.grad for p in run.model.parameters() if p.grad is not None]
    return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0


def _agree(terms, n: int, stop: "_StopSignals", state: RunState) -> tuple[bool, bool]:
    """(non-finite loss anywhere, a signal anywhere); adds the batch's terms to the sums unless non-finite.

    One process: a host sync on the loss. Under torchrun: one all-reduce of the flags and the terms' sums, so
    every rank takes the same decision and holds the same sums.
    """
    if world_size() == 1:
        nonfinite = not torch.isfinite(terms.total)
        if not nonfinite:
            state.add({name: value.detach().double() * n for name, value in terms._asdict().items()}, n)
        return nonfinite, stop.signal is not None
    device = terms.total.device
    values = (torch.stack([t.detach().double() for t in terms]) * n if n else
              torch.zeros(len(terms), dtype=torch.float64, device=device))
    flags = torch.tensor([n > 0 and not bool(torch.isfinite(terms.total)), stop.signal is not None, n],
                         dtype=torch.float64, device=device)
    packed = all_reduce_sum(torch.cat([flags, values]))  # on the device: nccl reduces CUDA tensors only
    nonfinite, stopping = bool(packed[0] > 0), bool(packed[1] > 0)
    if not nonfinite:
        state.add(dict(zip(terms._fields, packed[3:])), int(packed[2]))
    return nonfinite, stopping


def _finish_epoch(run: _Run, test_data: Optional[Dataset], next_order_state: Tensor) -> dict[str, float]:
    """Close the epoch's record, score the validation split (and the test split only with test_every_epoch), and
    save last.pt (best.pt first when the validation figure improved, or every epoch without a validation split)."""
    state = run.state
    if state.images == 0:
        raise NonFiniteLossError(f"every step of epoch {state.epoch} had a non-finite loss and was skipped; the "
                                 f"model is broken or the data hold NaN/inf. {_last_good(run)}")
    metric = getattr(run.model, "best_metric", "neg_elbo")
    best = state.best(metric)
    record = state.finish_epoch(next_order_state)
    if run.val_data is not None:
        record.update({f"val_{k}": v for k, v in evaluate(run.scored, run.val_data, seed=run.config.seed).items()})
    if test_data is not None and run.config.test_every_epoch:
        record.update({f"test_{k}": v for k, v in evaluate(run.scored, test_data, seed=run.config.seed).items()})
    broken = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
    weights = [*run.model.parameters(), *(run.ema.module.parameters() if run.ema is not None else ())]
    if broken or not all(torch.isfinite(p).all() for p in weights):
        state.history.pop()
        what = f"{', '.join(broken)} became non-finite" if broken else "the weights became non-finite"
        raise NonFiniteLossError(f"after epoch {record['epoch']}, {what}: the last step broke the model "
                                 f"(lr={run.config.lr} too high?). {_last_good(run)}")
    if run.log is not None:
        run.log.epoch(record, run.global_step)
        run.log.images(run.scored, run.val_data, record["epoch"], record["epoch"] == run.config.epochs,
                       run.global_step, run.config.seed)
    improved = run.val_data is None or record[f"val_{metric}"] < best
    if improved and run.val_data is not None:
        run.best_state = {k: v.detach().cpu().clone() for k, v in run.scored.state_dict().items()}
    if run.out_dir is not None:
        run.save(*(["best.pt"] if improved else []), "last.pt")  # best first: a kill between them leaves a good pair
    return record


def _resume(run: _Run, path: Union[str, Path], allow_finished: bool = False) -> None:
    """Load a checkpoint written by `train` into the run; check that it belongs to this run."""
    saved = _read_resumable(path, run.model, run.config, run.checksum, run.device, allow_finished)
    step = saved["position"]["step"]
    if step > run.steps_per_epoch:
        raise CheckpointError(f"{path}: the training state's field 'position' is damaged (step {step} of an epoch of "
                              f"{run.steps_per_epoch} steps): resume from another checkpoint (e.g. best.pt) or train "
                              "anew")
    _check_optimizer_state(path, run.optimizer, saved["optimizer_state"])
    _load_field(path, "optimizer_state", lambda: run.optimizer.load_state_dict(saved["optimizer_state"]))
    # the scheduler's state is the step reached; a longer run follows its new curve
    _load_field(path, "scheduler_state", lambda: run.scheduler.load_state_dict(saved["scheduler_state"]))
    if run.scaler is not None and saved.get("scaler_state"):
        _load_field(path, "scaler_state", lambda: run.scaler.load_state_dict(saved["scaler_state"]))
    if run.ema is not None:
        _load_field(path, "ema_state", lambda: _load_ema(run.ema, saved["ema_state"], saved["ema_updates"]))
    saved_world = saved.get("world_size", 1)
    if saved_world == world_size():
        set_rng_state(saved.get("rank_rng_states", [saved["rng_state"]])[rank()])
    else:
        set_rng_state(saved["rng_state"])
        if is_main():
            print(f"vae_utils: {path} was trained by {saved_world} process(es), this run has {world_size()}: it "
                  "continues with the same global batch, but not bit-exactly (sums are reduced in another order)",
                  file=sys.stderr)
    run.state = RunState.from_checkpoint(saved, run.device)
    run.model.train()


def ema_decay_at(decay: float, updates: Union[int, Tensor]) -> Union[float, Tensor]:
    """The moving average's decay after `updates` updates: min(decay, (1 + n) / (10 + n)), the warm-up of
    TensorFlow's ExponentialMovingAverage, so that a short run's average is not dominated by its first weights (a
    fixed 0.999 still gives its initial weights 10% after 2,300 steps). A tensor count gives a tensor."""
    warm = (1 + updates) / (10 + updates)
    return torch.clamp(warm, max=decay) if isinstance(warm, Tensor) else min(decay, warm)


def ema_update(decay: float) -> Callable:
    """AveragedModel's multi_avg_fn for the warmed-up moving average: averaged <- averaged + (1 - d) (current -
    averaged) over all parameters at once, with d computed where the count lives (no host sync per step)."""
    def update(averaged: list[Tensor], current: list[Tensor], updates: Tensor) -> None:
        step = torch._foreach_sub(current, averaged)
        torch._foreach_mul_(step, 1 - ema_decay_at(decay, updates))
        torch._foreach_add_(averaged, step)
    return update


def _load_ema(ema: AveragedModel, state: dict, updates: int) -> None:
    """The moving average's weights and update count, as `_Run.checkpoint` saved them."""
    ema.module.load_state_dict(state)
    ema.n_averaged.fill_(int(updates))


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam (AdamW with weight_decay > 0), fused into one kernel over all parameters where this torch build has it
    (about 15% faster here). A model with `parameter_groups(lr)` (FactorVAE's discriminator) sets its own groups."""
    make = partial(torch.optim.AdamW, weight_decay=weight_decay) if weight_decay else torch.optim.Adam
    groups = model.parameter_groups(lr) if hasattr(model, "parameter_groups") else model.parameters()
    try:
        return make(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):  # torch < 2.4 has no fused Adam on CPU
        groups = model.parameter_groups(lr) if hasattr(model, "parameter_groups") else model.parameters()
        return make(groups, lr=lr)


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


def format_record(record: dict[str, float], epochs: int) -> str:
    """One line per epoch: train and test losses with their parts (nats per image), whatever the model's terms."""
    def terms(prefix: str, total: str) -> str:
        parts = [f"{k[len(prefix):]} {v:.2f}" for k, v in record.items() if k.startswith(prefix)
                 and k not in (prefix + total, "train_seconds") and isinstance(v, float)]
        return f"{record[prefix + total]:.2f}" + (f" ({', '.join(parts)})" if parts else "")

    line = f"epoch {record['epoch']:>3}/{epochs}  train {terms('train_', 'loss')}"
    for split in ("val", "test"):  # the first key of each split is its total (evaluate's order)
        total = next((k[len(split) + 1:] for k in record if k.startswith(f"{split}_")), None)
        if total is not None:
            name = "-ELBO" if total == "neg_elbo" else total
            line += f"  {split} {name} {terms(f'{split}_', total)}"
    if record.get("skipped_steps"):
        line += f"  skipped {record['skipped_steps']} non-finite steps"
    if record.get("skipped_updates"):
        line += f"  skipped {record['skipped_updates']} updates (gradient norm)"
    return line + f"  [{record['train_seconds']:.1f} s]"


class _Objective(nn.Module):
    """The model's loss as a module's forward, so that DistributedDataParallel syncs its gradients."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        return self.model.loss(*args, **kwargs)


def _objective(model: nn.Module, compiled: bool = False) -> Callable:
    """model.loss in one process; under torchrun, the same through DistributedDataParallel; with compiled, under
    torch.compile (compiling.py)."""
    device = next(model.parameters()).device
    if world_size() == 1:
        objective = lambda *args, **kwargs: model.loss(*args, **kwargs)  # noqa: E731 (looked up per call)
    else:
        objective = torch.nn.parallel.DistributedDataParallel(
            _Objective(model), device_ids=[device.index] if device.type == "cuda" else None)
    return compile_objective(objective, device) if compiled else objective


def _train_key(term: str) -> str:
    return "train_loss" if term == "total" else f"train_{term}"


def _check_shapes(model: nn.Module, train_data: Dataset, test_data: Optional[Dataset]) -> None:
    for name, data in (("train_data", train_data), ("test_data", test_data)):
        if data is None:
            continue
        if len(data) == 0:
            raise ValueError(f"{name} is empty: pass a data set with images")
        if tuple(dataset_image_shape(data)) != model.image_shape:
            raise ValueError(f"{name} holds images of shape {tuple(dataset_image_shape(data))} but the model "
                             f"expects {model.image_shape}: build the VAE with matching in_channels/image_size")
        if is_conditional(model):
            check_labels(model, data, name)


def _subset(data: Dataset, n: Optional[int]) -> Dataset:
    if isinstance(data, ImageDataset):
        return data.subset(n)
    if n is not None and n > len(data):
        raise ValueError(f"subset={n} but the training data hold {len(data)} images: pass at most {len(data)}")
    return data if n is None else torch.utils.data.Subset(data, range(n))


def _read_resumable(path, model: nn.Module, config: TrainConfig, checksum: Optional[str], device,
                    allow_finished: bool = False) -> dict:
    """Load a checkpoint written by `train` into model; check that it belongs to this run."""
    state = read_checkpoint(path, map_location=device)
    model_from_checkpoint(state, path, device, model, ema=False)  # checks the family and architecture, loads the
    # weights the optimizer was at
    missing = [k for k in ("position", "optimizer_state", "scheduler_state", "rng_state", "train_config",
                           "epoch_order_state", "partial_sums", "partial_images") if k not in state]
    if "position" not in state:
        raise CheckpointError(f"{path} holds no training state (it was written by save_checkpoint, not by train): "
                              "load it with load_checkpoint, or train anew")
    if missing:
        raise CheckpointError(f"{path} lacks the training state {missing}: it was written by an older vae_utils or "
                              "is damaged; resume from another checkpoint or train anew")
    _check_resume_fields(state, path)
    if state.get("data_checksum") != checksum:
        raise CheckpointError(f"{path} was trained on other data (sha256 {state.get('data_checksum')}, now "
                              f"{checksum}): resume with the same data set and subset")
    try:
        saved = TrainConfig.from_dict(state["train_config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: the saved training config is invalid: {err}") from None
    changed = [f"{f.name}={getattr(saved, f.name)!r}, not {getattr(config, f.name)!r}" for f in fields(TrainConfig)
               if f.name not in CHANGEABLE_ON_RESUME and getattr(saved, f.name) != getattr(config, f.name)]
    if changed:
        raise CheckpointError(f"{path} was trained with {'; '.join(changed)}: resume with the run's own settings "
                              f"(only {' and '.join(CHANGEABLE_ON_RESUME)} may change), or start a new run")
    done = len(state["history"])
    if done > config.epochs or (done == config.epochs and not allow_finished):
        raise ValueError(f"{path} has already trained {done} epochs; pass epochs > {done} to train further")
    reason = stop_reason(state["history"], config, getattr(model, "best_metric", "neg_elbo"))
    if reason is not None and not allow_finished:
        raise ValueError(f"{path} has {reason}: pass a patience above {config.patience} to train further")
    return state


RESUME_FIELDS = {"position": dict, "history": list, "optimizer_state": dict, "scheduler_state": dict,
                 "rng_state": dict, "train_config": dict, "partial_sums": dict, "partial_images": int,
                 "partial_seconds": (int, float), "partial_skipped": int, "epoch_order_state": Tensor,
                 "rank_rng_states": list, "partial_updates": dict, "ema_state": dict, "ema_updates": int}


def _check_resume_fields(state: dict, path) -> None:
    """Every field a resume reads has the type `train` wrote it with; a CheckpointError names the first that has
    not (a damaged or edited file), before anything is loaded."""
    def bad(name: str, what: str) -> CheckpointError:
        return CheckpointError(f"{path}: the training state's field {name!r} is damaged ({what}): resume from "
                               "another checkpoint (e.g. best.pt) or train anew")

    for name, kind in RESUME_FIELDS.items():
        if name in state and (not isinstance(state[name], kind) or isinstance(state[name], bool)):
            raise bad(name, f"a {type(state[name]).__name__}")
    position = state["position"]
    if not all(isinstance(position.get(k), int) and position[k] >= low for k, low in (("epoch", 1), ("step", 0))):
        raise bad("position", f"{short_repr(position)}, not an epoch >= 1 and a step >= 0")
    if isinstance(state["history"], list) and position["epoch"] != len(state["history"]) + 1:
        raise bad("position", f"epoch {position['epoch']}, but the history holds {len(state['history'])} finished "
                              "epochs")
    if not all(isinstance(h, dict) for h in state["history"]):
        raise bad("history", "not a list of records")
    if not all(isinstance(v, (int, float)) for v in state["partial_sums"].values()):
        raise bad("partial_sums", "values that are not numbers")
    if not {"state", "param_groups"} <= set(state["optimizer_state"]):
        raise bad("optimizer_state", "no 'state' and 'param_groups'")
    if state["epoch_order_state"].dtype != torch.uint8 or state["epoch_order_state"].numel() != len(
            torch.Generator().get_state()):
        raise bad("epoch_order_state", "not a generator's state")
    ranks = [(f"rank_rng_states[{i}]", rng) for i, rng in enumerate(state.get("rank_rng_states") or [])]
    for name, rng in [("rng_state", state["rng_state"]), *ranks]:
        _load_field(path, name, lambda: _try_rng_state(rng))


def _check_optimizer_state(path, optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Every saved per-parameter state tensor has its parameter's shape (step counters: one value) and a floating
    dtype, before the optimizer sees it: fused Adam writes through them without checking, so a forged shape would
    corrupt memory. A CheckpointError names optimizer_state otherwise."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: the training state's field 'optimizer_state' is damaged ({what}): resume "
                               "from another checkpoint (e.g. best.pt) or train anew")

    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved_ids = [i for group in saved.get("param_groups", []) if isinstance(group, dict)
                 for i in group.get("params", [])]
    if len(saved_ids) != len(params) or not isinstance(saved.get("state"), dict):
        raise bad(f"{len(saved_ids)} parameters, the model has {len(params)}")
    index = dict(zip(saved_ids, params))
    for key, entry in saved["state"].items():
        if key not in index or not isinstance(entry, dict):
            raise bad(f"a state for parameter {key!r}, which its param_groups do not list")
        for name, value in entry.items():
            if not isinstance(value, Tensor) or not value.is_floating_point():
                raise bad(f"{name} of parameter {key} is not a floating-point tensor")
            expected = () if name == "step" else tuple(index[key].shape)
            if tuple(value.shape) != expected and not (name == "step" and value.numel() == 1):
                raise bad(f"{name} of parameter {key} has shape {tuple(value.shape)}, not {expected}")


def _try_rng_state(rng: dict) -> None:
    """Raise unless rng is a random state set_rng_state takes; the current state is kept either way."""
    current = get_rng_state()
    try:
        set_rng_state(rng)
    finally:
        set_rng_state(current)


def _load_field(path, name: str, load: Callable[[], object]) -> object:
    """load(), any error of a damaged field turned into a CheckpointError that names it."""
    try:
        return load()
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as err:
        what = " ".join(str(err).split())[:200] or type(err).__name__
        raise CheckpointError(f"{path}: the training state's field {name!r} is damaged ({what}): resume from "
                              "another checkpoint (e.g. best.pt) or train anew") from None


def _last_good(run: _Run) -> str:
    if run.out_dir is None:
        return "Nothing was saved (pass out_dir to keep checkpoints)."
    last = run.out_dir / "last.pt"
    if last.is_file():
        return f"The last good checkpoint, {last}, is kept."
    return "No checkpoint was written yet."


def _nonfinite_message(terms, run: _Run) -> str:
    state, config = run.state, run.config
    values = {k: v.item() for k, v in terms._asdict().items()}
    parts = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if k != "total")
    if all(math.isfinite(v) for k, v in values.items() if k != "total"):
        cause = f"beta={config.beta} times the KL overflows: use a smaller beta"
    else:
        cause = f"a learning rate too high (lr={config.lr}) or inputs with NaN/inf"
    return (f"loss became {values['total']} at epoch {state.epoch}, step {state.step}/{run.steps_per_epoch} "
            f"({parts}); likely cause: {cause}. {_last_good(run)} Set on_nonfinite='skip' to drop such batches "
            "instead")


def _interrupt(signame: str, run: _Run) -> str:
    state = run.state
    where = f"training stopped by {signame} at epoch {state.epoch}, step {state.step}/{run.steps_per_epoch}"
    if run.out_dir is None:
        return where + "; nothing was saved (pass out_dir to keep resumable checkpoints)"
    run.save("last.pt")
    path = run.out_dir / "last.pt"
    return (f"{where}; saved {path}. Resume with vu.train(..., resume='{path}') (the same data and config) or "
            f"`python -m vae_utils train --resume {shlex.quote(str(path))}` (its settings come from the checkpoint)")


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
