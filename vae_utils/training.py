"""The training loop shared by the notebook and the command line."""
from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from .checkpoints import read_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import ImageDataset, dataset_image_shape, iterate_batches
from .losses import vae_loss
from .metrics import evaluate
from .model import VAE
from .repro import autocast, get_rng_state, resolve_device, resolve_precision, set_rng_state

History = list[dict[str, float]]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped instead of continuing with broken weights."""


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

    With `out_dir`, `last.pt` is written after every epoch and `best.pt` whenever the test -ELBO improves.
    With `resume`, training continues from a checkpoint written by this function up to `config.epochs`.
    """
    config = replace(config or TrainConfig(model=model.config), model=model.config)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    for name, data in (("train_data", train_data), ("test_data", test_data)):
        if data is not None and tuple(dataset_image_shape(data)) != model.image_shape:
            raise ValueError(f"{name} holds images of shape {tuple(dataset_image_shape(data))} but the model "
                             f"expects {model.image_shape}: build the VAE with matching in_channels/image_size")
    if isinstance(train_data, ImageDataset):
        train_data = train_data.subset(config.subset)
    elif config.subset is not None:
        train_data = torch.utils.data.Subset(train_data, range(min(config.subset, len(train_data))))
    check_range = not isinstance(train_data, ImageDataset)  # uint8 / 255 is in [0, 1] by construction

    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    order = torch.Generator().manual_seed(config.seed)  # the data order, saved with every checkpoint
    history: History = []
    best = math.inf
    if resume is not None:
        state = read_checkpoint(resume, map_location=device)
        model.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        order.set_state(state["data_order_state"])
        set_rng_state(state["rng_state"])
        history = list(state["history"])
        best = min((h["test_neg_elbo"] for h in history if "test_neg_elbo" in h), default=math.inf)

    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    for epoch in range(len(history) + 1, config.epochs + 1):
        record = {"epoch": epoch}
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # total, recon, kl
        start = time.perf_counter()
        bar = tqdm(iterate_batches(train_data, config.batch_size, device, order), total=steps_per_epoch,
                   desc=f"epoch {epoch}/{config.epochs}", disable=not progress, leave=False)
        for step, x in enumerate(bar, start=1):
            with autocast(device, precision):
                out = model(x)
            terms = vae_loss(out, x, beta=config.beta, check_range=check_range)
            if not torch.isfinite(terms.total):
                raise NonFiniteLossError(
                    f"loss became {terms.total.item()} at epoch {epoch}, step {step}/{steps_per_epoch} "
                    f"(recon {terms.recon.item():.4g}, kl {terms.kl.item():.4g}); likely causes: a learning rate "
                    f"too high (lr={config.lr}), or inputs with NaN/inf. Weights of the last finished epoch are "
                    + (f"in {Path(out_dir) / 'last.pt'}" if out_dir and history else "not saved"))
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            optimizer.step()
            sums += torch.stack([t.detach() for t in terms]).double() * x.shape[0]
        record["train_seconds"] = time.perf_counter() - start
        total, recon, kl = (sums / len(train_data)).tolist()
        record.update(train_loss=total, train_recon=recon, train_kl=kl)
        if test_data is not None:
            metrics = evaluate(model, test_data, seed=config.seed)
            record.update({f"test_{k}": v for k, v in metrics.items()})
        history.append(record)
        if out_dir is not None:
            _save_training_state(model, optimizer, order, config, history, Path(out_dir), best)
            best = min(best, record.get("test_neg_elbo", math.inf))
        if progress:
            tqdm.write(format_record(record, config.epochs))
        if on_epoch_end is not None:
            on_epoch_end(record)
    model.eval()
    return history


def _save_training_state(model, optimizer, order, config, history, out_dir: Path, best: float) -> None:
    state = dict(
        optimizer_state=optimizer.state_dict(),
        train_config=config.to_dict(),
        epoch=len(history),
        history=history,
        data_order_state=order.get_state(),
        rng_state=get_rng_state(),
    )
    save_checkpoint(model, out_dir / "last.pt", **state)
    if history[-1].get("test_neg_elbo", math.inf) < best:
        save_checkpoint(model, out_dir / "best.pt", **state)


def format_record(record: dict[str, float], epochs: int) -> str:
    """One line per epoch: train and test losses with their parts, in nats per image."""
    line = (f"epoch {record['epoch']:>3}/{epochs}  train {record['train_loss']:.2f} "
            f"(recon {record['train_recon']:.2f}, kl {record['train_kl']:.2f})")
    if "test_neg_elbo" in record:
        line += (f"  test -ELBO {record['test_neg_elbo']:.2f} "
                 f"(recon {record['test_recon']:.2f}, kl {record['test_kl']:.2f})")
    return line + f"  [{record['train_seconds']:.1f} s]"
