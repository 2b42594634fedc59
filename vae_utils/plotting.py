"""Pictures: image grids (torchvision's make_grid/save_image) and loss curves (matplotlib)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Optional, Sequence, Union

import matplotlib.pyplot as plt
from torch import Tensor
from torchvision.utils import make_grid, save_image

from .config import ACTIVE_GROUP_NATS
from .files import atomic_write


def show_images(images: Tensor, nrow: int = 8, title: str = "", ax: Optional[plt.Axes] = None) -> plt.Axes:
    """Draw a batch (B, C, H, W) in [0, 1] as one grid."""
    grid = make_grid(images.detach().float().cpu(), nrow=nrow, padding=2, pad_value=1.0)  # (3, H', W')
    if ax is None:
        _, ax = plt.subplots(figsize=(min(12, 1.1 * nrow), min(12, 1.1 * -(-images.shape[0] // nrow))))
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
    return ax


def save_images(images: Tensor, path: Union[str, Path], nrow: int = 8) -> Path:
    """Write a batch (B, C, H, W) in [0, 1] as one PNG grid, atomically: an existing picture is replaced whole or
    kept, and a symbolic link at path is replaced by the picture, its target left alone."""
    path = Path(path)
    png = io.BytesIO()
    save_image(images.detach().float().cpu(), png, format="png", nrow=nrow, padding=2, pad_value=1.0)
    try:
        return atomic_write(path, lambda f: f.write(png.getvalue()))
    except OSError as err:
        raise OSError(err.errno, f"cannot write the picture {path}: {err.strerror or err}") from None


TERM_TITLES = {"recon": "reconstruction", "kl": "KL", "neg_elbo": "-ELBO"}


def plot_history(history: Sequence[dict], ax: Optional[Sequence[plt.Axes]] = None) -> Sequence[plt.Axes]:
    """Train and validation loss per epoch and each of its terms, one panel each (nats per image), for any model;
    the test curve too where every epoch has one (test_every_epoch), and the chosen epoch marked."""
    first = history[0]
    scored = next((s for s in ("val", "test") if any(k.startswith(f"{s}_") for k in first)), None)
    total = next((k.split("_", 1)[1] for k in first if scored and k.startswith(f"{scored}_")), None)  # evaluate
    # names the total first
    panels = [("train_loss", total, TERM_TITLES.get(total, total) if total else "loss")]
    panels += [(k, k[6:], TERM_TITLES.get(k[6:], k[6:])) for k in first
               if k.startswith("train_") and k not in ("train_loss", "train_seconds")]
    if ax is None:
        _, ax = plt.subplots(1, len(panels), figsize=(13 * len(panels) / 3, 3.5))
    epochs = [h["epoch"] for h in history]
    chosen = next((h["epoch"] for h in history if total and f"val_{total}" in h and h[f"val_{total}"] == min(
        r[f"val_{total}"] for r in history)), None)
    for a, (train_key, term, label) in zip(ax, panels):
        a.plot(epochs, [h[train_key] for h in history], "o-", label="train")
        for split, marker in (("val", "s-"), ("test", "^-")):
            key = f"{split}_{term}"
            if term is not None and all(key in h for h in history):
                a.plot(epochs, [h[key] for h in history], marker, label={"val": "validation", "test": "test"}[split])
        if chosen is not None:
            a.axvline(chosen, color="0.6", ls=":", label=f"chosen (epoch {chosen})")
        a.set_xlabel("epoch")
        a.set_ylabel("squared distance per image" if label == "commitment" else "nats per image")
        a.set_title(label)
        a.grid(alpha=0.3)
        a.legend()
    plt.tight_layout()
    return ax


def plot_kl_per_dim(kl_per_dim: Tensor, active: Optional[Tensor] = None, ax: Optional[plt.Axes] = None) -> plt.Axes:
    """Bar chart of the KL of each latent dimension, largest first; inactive units in grey."""
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3))
    order = kl_per_dim.argsort(descending=True)
    colors = ["C0" if active is None or active[i] else "0.7" for i in order.tolist()]
    ax.bar(range(len(order)), kl_per_dim[order].numpy(), color=colors)
    ax.set_xticks(range(len(order)), [str(i) for i in order.tolist()], fontsize=7)
    ax.set_xlabel("latent dimension (sorted by KL)")
    ax.set_ylabel("KL, nats per image")
    ax.set_title("KL per latent dimension" + ("" if active is None else f" ({int(active.sum())} active units)"))
    return ax


def plot_kl_per_group(kl_per_group: Sequence[float], names: Optional[Sequence[str]] = None,
                      ax: Optional[plt.Axes] = None) -> plt.Axes:
    """Bar chart of the KL of each group of a hierarchical VAE, top group first; inactive groups in grey."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3))
    values = [float(v) for v in kl_per_group]
    names = list(names) if names is not None else [str(i) for i in range(len(values))]
    active = [v >= ACTIVE_GROUP_NATS for v in values]
    ax.bar(range(len(values)), values, color=["C0" if a else "0.7" for a in active])
    ax.set_xticks(range(len(values)), names, fontsize=8)
    ax.set_xlabel("group of latents (top first)")
    ax.set_ylabel("KL, nats per image")
    ax.set_title(f"KL per group ({sum(active)} of {len(values)} active, >= {ACTIVE_GROUP_NATS} nats)")
    return ax


def plot_latent_projection(points: Tensor, labels: Optional[Tensor] = None,
                           class_names: Optional[Sequence[str]] = None, ax: Optional[plt.Axes] = None) -> plt.Axes:
    """Scatter of 2-D latent points (N, 2), coloured by class when labels are given."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5.5))
    if labels is None:
        ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=3, alpha=0.6)
    else:
        scatter = ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), c=labels.numpy(), cmap="tab10", s=3,
                             alpha=0.6)
        names = class_names or [str(i) for i in range(int(labels.max()) + 1)]
        ax.legend(scatter.legend_elements()[0], names, fontsize=7, markerscale=1.2, loc="best")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    return ax


def plot_class_histogram(fractions: Sequence[float], class_names: Optional[Sequence[str]] = None,
                         ax: Optional[plt.Axes] = None) -> plt.Axes:
    """Fraction of generated samples the classifier assigns to each class; a uniform data set gives 1/10 each."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3))
    names = class_names or [str(i) for i in range(len(fractions))]
    ax.bar(range(len(fractions)), fractions)
    ax.axhline(1 / len(fractions), color="k", lw=0.8, ls="--", label="uniform")
    ax.set_xticks(range(len(fractions)), names, rotation=30, fontsize=8)
    ax.set_xlabel("class the feature classifier gives a sample")
    ax.set_ylabel("fraction of samples")
    ax.set_title("Classes of the samples, as the feature classifier sees them")
    ax.legend()
    return ax


def plot_code_usage(counts: Tensor, ax: Optional[plt.Axes] = None) -> plt.Axes:
    """How often each codebook entry occurs (K,), most used first, on a log scale: dead codes show as a tail."""
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3))
    ordered = counts.double().sort(descending=True).values
    share = (ordered / ordered.sum()).numpy()
    ax.bar(range(len(share)), share, width=1.0, color="tab:blue")
    ax.set_yscale("log")
    ax.set_xlabel("codebook entries, most used first")
    ax.set_ylabel("share of grid cells")
    used = int((counts > 0).sum())
    ax.set_title(f"{used} of {len(counts)} codes used on the test split")
    return ax
