"""Walking the latent space of any model with a Gaussian posterior (capabilities.GaussianLatent): interpolation,
traversals, a 2-D projection and the 2-D manifold."""
from __future__ import annotations

import torch
from torch import Tensor

from .capabilities import GaussianLatent

INTERPOLATIONS = ("linear", "slerp")


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation (Shoemake, 1985) between vectors a and b (D,) at fractions t (T,): (T, D)."""
    t = t.unsqueeze(1)
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if omega.abs() < 1e-6:  # parallel vectors: slerp is the straight line
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


@torch.no_grad()
def interpolate(model: GaussianLatent, x_a: Tensor, x_b: Tensor, steps: int = 10, method: str = "linear") -> Tensor:
    """Decoded images (steps, C, H, W) along the path from mu(x_a) to mu(x_b), ends included.

    "linear" is the straight line; "slerp" follows the great circle, keeping the path at the typical norm
    of a Gaussian latent instead of cutting through the low-density centre.
    """
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps={steps!r}: expected an integer >= 2 (the two ends are included)")
    if method not in INTERPOLATIONS:
        raise ValueError(f"method={method!r} is not allowed: expected one of {INTERPOLATIONS}")
    x = torch.stack([_single(x_a, "x_a"), _single(x_b, "x_b")])  # (2, C, H, W)
    device = next(model.parameters()).device
    mu, _ = model.posterior(x.to(device))  # (2, latent_dim)
    t = torch.linspace(0, 1, steps, device=device)  # (steps,)
    z = slerp(mu[0], mu[1], t) if method == "slerp" else (1 - t[:, None]) * mu[0] + t[:, None] * mu[1]
    return model.decode(z)


@torch.no_grad()
def traverse(model: GaussianLatent, x: Tensor, dims: list[int], values: Tensor | None = None) -> Tensor:
    """Decode mu(x) with one dimension at a time set to each of `values`: (len(dims) * len(values), C, H, W)."""
    values = torch.linspace(-3, 3, 9) if values is None else values
    bad = [d for d in dims if not 0 <= d < model.latent_dim]
    if bad:
        raise ValueError(f"dims {bad} out of range: the latent has {model.latent_dim} dimensions")
    device = next(model.parameters()).device
    mu, _ = model.posterior(_single(x, "x")[None].to(device))  # (1, D)
    z = mu.repeat(len(dims) * len(values), 1)
    for row, d in enumerate(dims):
        z[row * len(values):(row + 1) * len(values), d] = values.to(device)
    return model.decode(z)


def pca_2d(points: Tensor) -> Tensor:
    """Project points (N, D) onto their first two principal components: (N, 2)."""
    centred = points.double() - points.double().mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ v[:2].T).float()


@torch.no_grad()
def manifold_grid(model: GaussianLatent, n: int = 15, span: float = 2.5) -> Tensor:
    """For latent_dim=2: decoded images on an n x n grid of z in [-span, span]^2, row-major: (n*n, C, H, W)."""
    if model.latent_dim != 2:
        raise ValueError(f"the 2-D manifold needs latent_dim=2, this model has {model.latent_dim}")
    device = next(model.parameters()).device
    ys, xs = torch.linspace(span, -span, n, device=device), torch.linspace(-span, span, n, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # rows top to bottom, columns left to right
    z = torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)  # z_1 grows to the right, z_2 upwards
    return model.decode(z)


def _single(x: Tensor, name: str) -> Tensor:
    """Accept one image as (C, H, W) or (1, C, H, W)."""
    if x.dim() == 4 and x.shape[0] == 1:
        return x[0]
    if x.dim() != 3:
        raise ValueError(f"{name} must be one image (C, H, W) or (1, C, H, W), got shape {tuple(x.shape)}")
    return x
