"""The negative ELBO and its two terms, in nats per image."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import LIKELIHOODS


class LossTerms(NamedTuple):
    """Batch means of the per-image terms, in nats per image: total = recon + beta * kl."""

    total: Tensor
    recon: Tensor
    kl: Tensor


def kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) of each latent dimension: (B, latent_dim) in nats."""
    # Kingma & Welling (2013), Appendix B: -KL = 1/2 * sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)
    mu, logvar = mu.float(), logvar.float()  # accumulate in fp32 under autocast
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image, summed over latent dims: (B,) in nats."""
    return kl_per_dim(mu, logvar).sum(dim=1)


def check_unit_range(x: Tensor) -> None:
    """Raise ValueError unless every value of x lies in [0, 1] (what the Bernoulli likelihood assumes)."""
    lo, hi = torch.aminmax(x.detach())
    if lo < 0 or hi > 1 or not (torch.isfinite(lo) and torch.isfinite(hi)):
        raise ValueError(f"images must lie in [0, 1] for the Bernoulli likelihood, got values in "
                         f"[{lo.item():.4g}, {hi.item():.4g}]; rescale them (e.g. x / 255) or normalise differently")


def reconstruction_loss(
    x_logits: Tensor, x: Tensor, likelihood: str = "bernoulli", gaussian_std: float = 0.1, check_range: bool = True
) -> Tensor:
    """-log p(x|z) per image, summed over pixels: (B,) in nats."""
    if not isinstance(x_logits, Tensor) or not isinstance(x, Tensor):
        raise ValueError(f"expected two tensors (logits, images), got {type(x_logits).__name__} and "
                         f"{type(x).__name__}")
    if x_logits.shape != x.shape:
        raise ValueError(f"x_logits has shape {tuple(x_logits.shape)} but x has {tuple(x.shape)}")
    x_logits, x = x_logits.float(), x.float()
    if likelihood == "bernoulli":
        if check_range:
            check_unit_range(x)
        # BCE on grey levels (PyTorch's example's convention), stable from logits: softplus(l) - x * l.
        nll = F.binary_cross_entropy_with_logits(x_logits, x, reduction="none")
    elif likelihood == "gaussian":
        # N(x; sigmoid(logits), std^2): a scaled squared error plus the normalising constant.
        nll = 0.5 * ((x - torch.sigmoid(x_logits)) / gaussian_std).pow(2) + math.log(gaussian_std * math.sqrt(2 * math.pi))
    else:
        raise ValueError(f"likelihood={likelihood!r} is not allowed: expected one of {LIKELIHOODS}")
    return nll.flatten(1).sum(dim=1)


def vae_loss(out, x: Tensor, beta: float = 1.0, likelihood: str = "bernoulli", gaussian_std: float = 0.1,
             check_range: bool = True) -> LossTerms:
    """Negative ELBO (beta-weighted KL) of a VAEOutput for images x, as batch means of per-image nats."""
    if not all(hasattr(out, name) for name in ("x_logits", "mu", "logvar")):
        raise ValueError(f"vae_loss expects the VAEOutput of model(x), got {type(out).__name__}; "
                         "or call model.loss(x)")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta={beta!r} is not allowed: expected a finite number >= 0")
    recon = reconstruction_loss(out.x_logits, x, likelihood, gaussian_std, check_range).mean()
    kl = kl_divergence(out.mu, out.logvar).mean()
    return LossTerms(recon + beta * kl, recon, kl)


def kl_warmup_factor(epochs_done: float, warmup_epochs: int) -> float:
    """Linear KL warm-up (Bowman et al., 2016; Sønderby et al., 2016): 0 at the start, 1 after warmup_epochs."""
    if warmup_epochs == 0:
        return 1.0
    return min(1.0, epochs_done / warmup_epochs)
