"""Sample quality in a feature space: a small classifier trained on the data set itself, the Fréchet distance
between its features, and improved precision/recall (Kynkäänniemi et al., 2019).

FID's Inception network cannot be downloaded here and fits 28x28 grey images poorly; this CNN is trained by the
project (`python -m vae_utils classifier`, or on first use) and its test accuracy is reported. The Fashion-MNIST
one ships with the package (`vae_utils/weights/`), so every user scores with the same features; others are
trained once and kept in the user's cache (`$VAE_CACHE_DIR`, default ~/.cache/vae_utils).
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import sys
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset

from .checkpoints import CheckpointError, model_from_checkpoint, read_checkpoint, save_checkpoint
from .data import DATASETS, ImageDataset, canonical_name, iterate_batches
from .models.classifier import FeatureClassifier
from .repro import autocast, resolve_precision

SHIPPED_DIR = Path(__file__).resolve().parent / "weights"  # classifiers that ship with the package


def train_classifier(train_data: ImageDataset, test_data: ImageDataset, epochs: int = 3, seed: int = 0,
                     device: Union[str, torch.device] = "cpu") -> tuple[FeatureClassifier, float]:
    """Train with Adam and a cosine schedule; return the model (eval mode) and its test accuracy."""
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs={epochs!r}: the feature classifier needs at least one epoch of training")
    device = torch.device(device)
    torch.manual_seed(seed)
    model = FeatureClassifier(in_channels=train_data.image_shape[0], n_classes=int(train_data.labels.max()) + 1)
    model.to(device)
    steps = epochs * math.ceil(len(train_data) / 128)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    precision = resolve_precision("auto", device)
    order = torch.Generator().manual_seed(seed)
    labels = train_data.labels.to(device)
    for _ in range(epochs):
        permutation = torch.randperm(len(train_data), generator=order)
        for i, x in enumerate(iterate_batches(train_data, 128, device, permutation)):
            y = labels[permutation[i * 128:(i + 1) * 128].to(device)]
            with autocast(device, precision):
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()
    return model, accuracy(model, test_data)


@torch.no_grad()
def accuracy(model: FeatureClassifier, data: ImageDataset) -> float:
    """Fraction of correctly classified images."""
    device = next(model.parameters()).device
    predictions = torch.cat([model(x).argmax(1).cpu() for x in iterate_batches(data, 1000, device)])
    return (predictions == data.labels).float().mean().item()


@torch.no_grad()
def classifier_features(model: FeatureClassifier, images: Union[Tensor, Dataset], batch_size: int = 1000) -> Tensor:
    """(N, 128) features of a float image tensor (N, C, H, W) in [0, 1] or of a data set."""
    device = next(model.parameters()).device
    if isinstance(images, Tensor):
        return torch.cat([model.features(images[i:i + batch_size].to(device)).cpu()
                          for i in range(0, len(images), batch_size)])
    return torch.cat([model.features(x).cpu() for x in iterate_batches(images, batch_size, device)])


@torch.no_grad()
def class_histogram(model: FeatureClassifier, images: Tensor) -> Tensor:
    """Fraction of images assigned to each class, (n_classes,): shows whether a generator forgets classes."""
    predictions = predicted_classes(model, images)
    return torch.bincount(predictions, minlength=model.n_classes).float() / len(images)


def predicted_classes(model: FeatureClassifier, images: Tensor) -> Tensor:
    """The classifier's class for each image (N,), on the CPU."""
    device = next(model.parameters()).device
    return model.head(classifier_features(model, images).to(device)).argmax(1).cpu()


def cache_dir() -> Path:
    """The user's cache for trained classifiers: $VAE_CACHE_DIR, else ~/.cache/vae_utils."""
    return Path(os.environ.get("VAE_CACHE_DIR") or Path.home() / ".cache" / "vae_utils")


def cached_classifier_path(name: str) -> Path:
    """Where a classifier trained by the user for `name` is kept (and looked for first)."""
    return cache_dir() / "classifiers" / name


def default_classifier_path(dataset: str, image_shape: Optional[tuple[int, ...]] = None) -> Path:
    """The classifier used for a data set: one the user trained (cache), else the one shipped with vae_utils.

    Never depends on the working directory; a data set with neither gets the cache path, where it is trained.
    Images of another shape than the set's own (image_shape) get a classifier of their own.
    """
    name = dataset
    if ":" not in dataset:  # a known set (a folder's name is "folder:NAME-DIGEST")
        name = canonical_name(dataset)
        source = DATASETS[name]
        if image_shape is not None and tuple(image_shape) != (source.channels, source.image_size, source.image_size):
            name += "-{}x{}x{}".format(*image_shape)
    name = "classifier-" + re.sub(r"[^A-Za-z0-9._-]+", "_", name) + ".pt"
    cached, shipped = cached_classifier_path(name), SHIPPED_DIR / name
    return shipped if shipped.is_file() and not cached.is_file() else cached


def load_or_train_classifier(path: Union[str, Path, None], train_data: ImageDataset, test_data: ImageDataset,
                             device: Union[str, torch.device] = "cpu", epochs: int = 3,
                             ) -> tuple[FeatureClassifier, float]:
    """The classifier at path (default: `default_classifier_path` of the data set), or a new one trained and saved.

    A path the caller names is read, never written, unless nothing is there yet: a file there that is not a usable
    classifier is a CheckpointError. Training one is announced on stderr: Fréchet distances from different
    classifiers are not comparable.
    """
    dataset = train_data.name.split("/")[0]
    named = path is not None
    path = Path(path) if named else default_classifier_path(dataset, train_data.image_shape)
    if path.exists():
        try:
            state = read_checkpoint(path, map_location=device)
            model = model_from_checkpoint(state, path, device, kind=FeatureClassifier.kind)
            if model.config.in_channels != train_data.image_shape[0]:
                raise ValueError(f"it reads images of {model.config.in_channels} channel(s), these have "
                                 f"{train_data.image_shape[0]}")
            with torch.no_grad():  # one image through it: a classifier for another image size fails here, not later
                model(test_data[0][0].unsqueeze(0).to(device))
            return model, float(state["test_accuracy"])
        except (CheckpointError, KeyError, TypeError, ValueError, OSError, RuntimeError) as err:
            if named:
                raise CheckpointError(f"{path} is not a usable feature classifier ({_one_line(err)}); it is left "
                                      "as it is: name a classifier checkpoint (`python -m vae_utils classifier --out "
                                      "PATH` makes one) or a path where nothing exists yet") from None
            why = f"{path} is unusable ({err})"
    else:
        why = f"there is none at {path}"
    if path.is_relative_to(SHIPPED_DIR):  # never write into the installed package
        path = cached_classifier_path(path.name)
    print(f"vae_utils: training a feature classifier for {dataset} ({why}); it is saved to {path}. Fréchet "
          "distances are comparable only between runs that use the same classifier file.", file=sys.stderr)
    model, acc = train_classifier(train_data, test_data, epochs=epochs, device=device)
    save_checkpoint(model, path, test_accuracy=acc, epochs=epochs, dataset=dataset)
    return model, acc


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300] or type(err).__name__


def file_sha256(path: Union[str, Path]) -> str:
    """SHA-256 of a file's bytes: names the exact classifier behind a Fréchet distance."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fitted to features (N, F), (M, F)."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two (N, F) feature matrices with the same F, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("need at least two feature vectors on each side to fit a covariance")
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    sqrt_a = _psd_sqrt(cov_a)
    # tr (S_a S_b)^(1/2) = tr (S_a^(1/2) S_b S_a^(1/2))^(1/2), a symmetric PSD matrix: stable via eigh
    cross = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp_min(0).sqrt().sum()
    value = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(value.item(), 0.0)


def precision_recall(real: Tensor, fake: Tensor, k: int = 3, chunk: int = 2048) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019): k-NN balls around each set's features."""
    real, fake = real.float(), fake.float()
    precision = _coverage(real, fake, k, chunk)  # generated samples that fall in the real manifold
    recall = _coverage(fake, real, k, chunk)  # real samples that fall in the generated manifold
    return precision, recall


def _psd_sqrt(m: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(m)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def _knn_radii(x: Tensor, k: int, chunk: int) -> Tensor:
    """Distance from each row of x to its k-th nearest other row."""
    if x.shape[0] <= k:
        raise ValueError(f"need more than k={k} feature vectors, got {x.shape[0]}")
    return torch.cat([torch.cdist(x[i:i + chunk], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), chunk)])


def _coverage(support: Tensor, queries: Tensor, k: int, chunk: int) -> float:
    """Fraction of queries inside at least one k-NN ball of the support set."""
    radii = _knn_radii(support, k, chunk)
    inside = [(torch.cdist(queries[i:i + chunk], support) <= radii).any(dim=1) for i in range(0, len(queries), chunk)]
    return torch.cat(inside).float().mean().item()
