"""Posterior collapse diagnostics: KL per latent dimension and active units (Burda et al., 2015)."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .data import iterate_batches
from .model import VAE


class LatentStats(NamedTuple):
    """Posterior means over a data set and what they say about each latent dimension."""

    mu: Tensor  # (N, D) posterior means
    kl_per_dim: Tensor  # (D,) KL(q(z_d|x) || N(0, 1)) averaged over the data, nats
    activity: Tensor  # (D,) variance over the data of the posterior mean, Cov_x(E_q[z_d])
    active: Tensor  # (D,) bool: activity > threshold


@torch.no_grad()
def latent_stats(model: VAE, dataset: Dataset, threshold: float = 0.01, batch_size: int = 1000) -> LatentStats:
    """Per-dimension KL and activity; a unit is active when its activity exceeds threshold (0.01 in Burda et al.)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    mus, kl_sum, n = [], None, 0
    for x in iterate_batches(dataset, batch_size, device):
        mu, logvar = (t.float() for t in model.encode(x))
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).double().sum(0)  # (D,)
        kl_sum = kl if kl_sum is None else kl_sum + kl
        mus.append(mu.cpu())
        n += x.shape[0]
    model.train(was_training)
    if n == 0:
        raise ValueError("cannot compute latent statistics on an empty data set")
    mu = torch.cat(mus)
    activity = mu.double().var(dim=0, unbiased=False) if n > 1 else torch.zeros(mu.shape[1], dtype=torch.float64)
    return LatentStats(mu, (kl_sum / n).cpu(), activity, activity > threshold)


def active_units(model: VAE, dataset: Dataset, threshold: float = 0.01) -> int:
    """Number of latent dimensions whose posterior mean varies over the data by more than threshold."""
    return int(latent_stats(model, dataset, threshold).active.sum())
