"""InfoVAE (Zhao et al., 2019): the VAE's objective with a divergence between the aggregate posterior q(z) and the
prior added, here the maximum mean discrepancy (MMD) with the inverse multiquadratic kernel, so that the code keeps
information about x that a strong KL term would squeeze out."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from ..config import TrainConfig, check, is_number
from ..losses import imq_mmd, kl_divergence, kl_warmup_factor, reconstruction_loss
from ..registry import register_model
from .vae import VAE, VAEConfig


@dataclass(frozen=True)
class InfoVAEConfig(VAEConfig):
    """The VAE's architecture (every VAEConfig field) and the weight of the MMD term."""

    mmd_weight: float = 1000.0  # weight of MMD(q(z), p(z)), IMQ kernel: InfoVAE's alpha + lambda - 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check(is_number(self.mmd_weight) and math.isfinite(self.mmd_weight) and self.mmd_weight >= 0, "mmd_weight",
              self.mmd_weight, "a finite number >= 0")


class MMDTerms(NamedTuple):
    """What `InfoVAE.loss` returns: batch means in nats per image (the MMD is one figure per batch)."""

    total: Tensor  # recon + beta * kl + mmd_weight * mmd: what training minimises
    neg_elbo: Tensor  # recon + kl: the -ELBO (picks best.pt)
    recon: Tensor  # -log p(x|z)
    kl: Tensor  # KL(q(z|x) || N(0, I)), analytic
    mmd: Tensor  # MMD^2 between the batch's z ~ q(z|x) and as many draws of N(0, I)


def prior_draws(n: int, latent_dim: int, like: Tensor, generator: Optional[torch.Generator],
                batch_rows: Optional[tuple[int, int]]) -> Tensor:
    """n draws of N(0, I) for the MMD (rows start... of a batch split across processes, as `reparameterize`)."""
    total = n if batch_rows is None else batch_rows[1]
    w = torch.randn((total, latent_dim), generator=generator, device=like.device, dtype=torch.float32)
    return w if batch_rows is None else w[batch_rows[0]:batch_rows[0] + n]


@register_model("infovae")
class InfoVAE(VAE):
    """InfoVAE with the MMD divergence (Zhao et al., 2019, Eq. 6): -L = recon + (1 - alpha) KL + (alpha + lambda - 1)
    MMD(q(z), p(z)). Here `--beta` is the KL's weight 1 - alpha (1: the ELBO's; 0: the MMD-VAE, alpha = 1) and
    `--mmd-weight` is alpha + lambda - 1."""

    config_class = InfoVAEConfig
    total_name = "objective"
    best_metric = "neg_elbo"

    def loss(self, x: Tensor, config: Optional[TrainConfig] = None, epochs_done: float = 0.0,
             generator: Optional[torch.Generator] = None, check_range: bool = True,
             batch_rows: Optional[tuple[int, int]] = None) -> MMDTerms:
        """recon + beta * warm-up * KL + mmd_weight * MMD, one sampled z per image and one prior draw per image."""
        c = self.config
        beta = 1.0 if config is None else config.beta * kl_warmup_factor(epochs_done, config.kl_warmup_epochs)
        mu, logvar = self.encode(x)  # (B, D)
        z = self.reparameterize(mu.float(), logvar.float(), generator, batch_rows)
        recon = reconstruction_loss(self.decoder(z), x, c.likelihood, c.gaussian_std, check_range).mean()
        kl = kl_divergence(mu, logvar).mean()
        mmd = imq_mmd(z, prior_draws(len(z), c.latent_dim, z, generator, batch_rows))
        return MMDTerms(recon + beta * kl + c.mmd_weight * mmd, (recon + kl).detach(), recon.detach(), kl.detach(),
                        mmd.detach())

    def skip_noise(self, n: int, generator: Optional[torch.Generator] = None, samples: int = 1) -> None:
        """Draw, and drop, what `loss` (z, then the prior draws) or `log_importance_weights` draw for n images."""
        super().skip_noise(n, generator, samples)
        if samples == 1:
            torch.randn((n, self.latent_dim), generator=generator, device=next(self.parameters()).device)
