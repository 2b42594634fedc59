"""Sample quality in a feature space: Fréchet distance and precision/recall (Kynkäänniemi et al., 2019)."""
from __future__ import annotations

import torch
from torch import Tensor


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
