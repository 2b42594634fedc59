"""How well single latent dimensions capture single generative factors: the mutual information gap (MIG, Chen et
al., 2018), for data sets that carry their factors (dSprites) and models with a Gaussian posterior.

MI between a latent dimension and a factor is estimated as disentanglement_lib does (Locatello et al., 2019): the
posterior means binned into equal-width bins, the discrete mutual information with the factor's index. Chen et al.
estimate it from the full posterior q(z|x) instead; the two agree in ranking models, not in every digit.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .metrics import _require, latent_stats
from .capabilities import GaussianLatent

MIG_BINS = 20  # disentanglement_lib's default


def binned(codes: np.ndarray, bins: int = MIG_BINS) -> np.ndarray:
    """Each column of codes (N, D) as bin indices 0..bins-1 of equal-width bins over the column's range."""
    low, high = codes.min(0), codes.max(0)
    width = np.where(high > low, high - low, 1.0)
    return np.clip(np.floor((codes - low) / width * bins), 0, bins - 1).astype(np.int64)


def discrete_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats of two integer sequences of the same length, from their joint histogram."""
    from sklearn.metrics import mutual_info_score  # scikit-learn is needed by this metric only

    return float(mutual_info_score(a, b))


def mutual_information_gap(codes: Tensor, factors: Tensor, names: Sequence[str], bins: int = MIG_BINS) -> dict:
    """MIG of latent codes (N, D) against factor indices (N, F): for each factor with more than one value, the gap
    between the two latent dimensions that share the most information with it, divided by its entropy; the mean
    over those factors is `mig` (0: no dimension stands out, 1: one dimension holds the factor and no other)."""
    if len(codes) != len(factors) or len(codes) < 2:
        raise ValueError(f"codes {tuple(codes.shape)} and factors {tuple(factors.shape)}: expected the same number "
                         "(at least 2) of images")
    z = binned(codes.double().cpu().numpy(), bins)
    f = factors.cpu().numpy()
    gaps = {}
    for j, name in enumerate(names):
        if len(np.unique(f[:, j])) < 2:
            continue  # a constant factor (dSprites' colour) carries no information
        entropy = discrete_mutual_information(f[:, j], f[:, j])
        mi = sorted((discrete_mutual_information(z[:, d], f[:, j]) for d in range(z.shape[1])), reverse=True)
        gaps[name] = (mi[0] - (mi[1] if len(mi) > 1 else 0.0)) / entropy
    if not gaps:
        raise ValueError("every factor is constant over these images: MIG needs factors that vary")
    return {"mig": float(np.mean(list(gaps.values()))), "mig_per_factor": {k: round(v, 4) for k, v in gaps.items()},
            "mig_bins": bins, "mig_images": len(codes)}


@torch.no_grad()
def mig(model: nn.Module, dataset: Dataset, bins: int = MIG_BINS) -> dict:
    """MIG of the model's posterior means over an ImageDataset that carries its factors (e.g. dSprites)."""
    _require(model, GaussianLatent, "Gaussian posterior (posterior(x) -> mu, logvar)")
    factors = getattr(dataset, "factors", None)
    if factors is None:
        raise ValueError(f"{getattr(dataset, 'name', 'the data set')} carries no generative factors: MIG needs a set "
                         "that does (dsprites, dsprites-generated)")
    return mutual_information_gap(latent_stats(model, dataset).mu, factors, dataset.factor_names, bins)
