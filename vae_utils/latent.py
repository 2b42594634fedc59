"""Walking the latent space: interpolation between the posterior means of two images."""
from __future__ import annotations

import torch
from torch import Tensor

from .model import VAE


@torch.no_grad()
def interpolate(model: VAE, x_a: Tensor, x_b: Tensor, steps: int = 10) -> Tensor:
    """Decoded images (steps, C, H, W) along the straight line from mu(x_a) to mu(x_b), ends included."""
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps={steps!r}: expected an integer >= 2 (the two ends are included)")
    x = torch.stack([_single(x_a, "x_a"), _single(x_b, "x_b")])  # (2, C, H, W)
    device = next(model.parameters()).device
    mu, _ = model.encode(x.to(device))  # (2, latent_dim)
    t = torch.linspace(0, 1, steps, device=device).unsqueeze(1)  # (steps, 1)
    return model.decode((1 - t) * mu[0] + t * mu[1])


def _single(x: Tensor, name: str) -> Tensor:
    """Accept one image as (C, H, W) or (1, C, H, W)."""
    if x.dim() == 4 and x.shape[0] == 1:
        return x[0]
    if x.dim() != 3:
        raise ValueError(f"{name} must be one image (C, H, W) or (1, C, H, W), got shape {tuple(x.shape)}")
    return x
