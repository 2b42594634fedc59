"""The feature classifier behind the Fréchet distance: a small CNN whose penultimate layer gives the features.

Training it, and the distances computed from its features, are in features.py (the evaluation layer).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import Tensor, nn

from ..config import CHANNEL_COUNTS, Config, check, check_int
from ..registry import register_model

FEATURES = 128  # size of the feature vector (the penultimate layer)


@dataclass(frozen=True)
class ClassifierConfig(Config):
    """Architecture of the feature classifier behind the Fréchet distance; saved inside its checkpoint."""

    in_channels: int = 1  # 1 (grey) or 3 (RGB)
    n_classes: int = 10  # labels of the data set it is trained on

    def __post_init__(self) -> None:
        check(self.in_channels in CHANNEL_COUNTS, "in_channels", self.in_channels, f"one of {CHANNEL_COUNTS}")
        check_int(self.n_classes, "n_classes", 2, 100_000)


@register_model("feature-classifier")
class FeatureClassifier(nn.Module):
    """Two conv blocks and a 128-d feature layer; `features(x)` is what the Fréchet distance compares."""

    config_class = ClassifierConfig

    def __init__(self, config: Optional[ClassifierConfig] = None, **overrides) -> None:
        super().__init__()
        self.config = config or ClassifierConfig(**overrides)
        self.body = nn.Sequential(
            nn.Conv2d(self.config.in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, H/2, W/2)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(7),  # (B, 64, 7, 7)
            nn.Flatten(), nn.Linear(64 * 49, FEATURES), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, self.config.n_classes)

    @property
    def n_classes(self) -> int:
        """Number of classes the head predicts."""
        return self.config.n_classes

    def features(self, x: Tensor) -> Tensor:
        """(B, 128) features of images (B, C, H, W) in [0, 1]."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
