"""A small classifier trained on the data set itself: the feature space for Fréchet distance and class histograms.

FID's Inception network cannot be downloaded here and fits 28x28 grey images poorly; this CNN is trained by the
project (`python -m vae_utils classifier`, or on first use), its test accuracy is reported, and its weights
are cached in saved_models/.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from .checkpoints import CheckpointError, atomic_torch_save, read_checkpoint
from .data import ImageDataset, iterate_batches
from .repro import autocast, resolve_precision

FEATURES = 128  # size of the feature vector (the penultimate layer)


class FeatureClassifier(nn.Module):
    """Two conv blocks and a 128-d feature layer; `features(x)` is what the Fréchet distance compares."""

    def __init__(self, in_channels: int = 1, n_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, H/2, W/2)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(7),  # (B, 64, 7, 7)
            nn.Flatten(), nn.Linear(64 * 49, FEATURES), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, n_classes)
        self.in_channels, self.n_classes = in_channels, n_classes

    def features(self, x: Tensor) -> Tensor:
        """(B, 128) features of images (B, C, H, W) in [0, 1]."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def train_classifier(train_data: ImageDataset, test_data: ImageDataset, epochs: int = 3, seed: int = 0,
                     device: Union[str, torch.device] = "cpu") -> tuple[FeatureClassifier, float]:
    """Train with Adam and a cosine schedule; return the model (eval mode) and its test accuracy."""
    device = torch.device(device)
    torch.manual_seed(seed)
    n_classes = int(train_data.labels.max()) + 1
    model = FeatureClassifier(train_data.image_shape[0], n_classes).to(device)
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
    device = next(model.parameters()).device
    predictions = model.head(classifier_features(model, images).to(device)).argmax(1).cpu()
    return torch.bincount(predictions, minlength=model.n_classes).float() / len(images)


def load_or_train_classifier(path: Union[str, Path], train_data: ImageDataset, test_data: ImageDataset,
                             device: Union[str, torch.device] = "cpu", epochs: int = 3,
                             ) -> tuple[FeatureClassifier, float]:
    """The cached classifier at path, or a new one trained (and cached there) when it is absent or unreadable."""
    path = Path(path)
    if path.is_file():
        try:
            state = read_checkpoint(path, map_location=device)
            model = FeatureClassifier(state["in_channels"], state["n_classes"]).to(device)
            model.load_state_dict(state["model_state"])
            return model.eval(), float(state["test_accuracy"])
        except (CheckpointError, KeyError, RuntimeError) as err:
            print(f"retraining the feature classifier: {path} is unusable ({err})")
    model, acc = train_classifier(train_data, test_data, epochs=epochs, device=device)
    atomic_torch_save({"format": "vae_utils.checkpoint", "format_version": 1, "kind": "feature-classifier",
                       "in_channels": model.in_channels, "n_classes": model.n_classes, "test_accuracy": acc,
                       "epochs": epochs, "model_state": {k: v.cpu() for k, v in model.state_dict().items()}}, path)
    return model, acc
