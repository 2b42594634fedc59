"""DIP-VAE (Kumar et al., 2018): the VAE with a penalty that pushes the covariance of the aggregate posterior
towards the identity, so that its dimensions are decorrelated (disentangled) without weighting the whole KL."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from ..config import TrainConfig, check, is_number
from ..losses import kl_divergence, kl_warmup_factor, reconstruction_loss
from ..registry import register_model
from .vae import VAE, VAEConfig

DIP_TYPES = ("i", "ii")


@dataclass(frozen=True)
class DIPVAEConfig(VAEConfig):
    """The VAE's architecture (every VAEConfig field), which covariance is penalised and how much."""

    dip_type: str = "ii"  # "i": the covariance of the posterior means; "ii": of the aggregate posterior, Cov[mu] + E[Sigma]
    lambda_od: float = 10.0  # weight of the squared off-diagonal entries (disentanglement_lib's sweep: 1-50)
    lambda_d: Optional[float] = None  # weight of the squared distance of the diagonal from 1; None: 10 x lambda_od for
    # type i, lambda_od for type ii (Kumar et al., Sec. 3, and disentanglement_lib's lambda_d_factor)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.dip_type in DIP_TYPES, "dip_type", self.dip_type, f"one of {DIP_TYPES}")
        for name in ("lambda_od", "lambda_d"):
            value = getattr(self, name)
            if value is not None:
                check(is_number(value) and math.isfinite(value) and value >= 0, name, value, "a finite number >= 0")

    @property
    def diagonal_weight(self) -> float:
        """lambda_d, or its default for the type."""
        if self.lambda_d is not None:
            return self.lambda_d
        return self.lambda_od * (10.0 if self.dip_type == "i" else 1.0)


class DIPTerms(NamedTuple):
    """What `DIPVAE.loss` returns: batch means in nats per image (the penalty is one figure per batch)."""

    total: Tensor  # recon + beta * kl + dip: what training minimises
    neg_elbo: Tensor  # recon + kl: the -ELBO (picks best.pt)
    recon: Tensor  # -log p(x|z)
    kl: Tensor  # KL(q(z|x) || N(0, I)), analytic
    dip: Tensor  # lambda_od * sum_{i != j} C_ij^2 + lambda_d * sum_i (C_ii - 1)^2


def dip_penalty(mu: Tensor, logvar: Tensor, dip_type: str, lambda_od: float, lambda_d: float) -> Tensor:
    """The DIP regulariser of a batch (Kumar et al., 2018, Eqs. 6-7): C = Cov[mu] (type i) or Cov[mu] + E[diag
    exp(logvar)] (type ii), the batch's covariance of the posterior means taken with 1/B; 0-dim tensor."""
    mu = mu.float()
    centred = mu - mu.mean(0, keepdim=True)
    cov = centred.T @ centred / mu.shape[0]  # (D, D)
    if dip_type == "ii":
        cov = cov + torch.diag(logvar.float().exp().mean(0))
    diagonal = torch.diagonal(cov)
    off_diagonal = cov - torch.diag(diagonal)
    return lambda_od * off_diagonal.pow(2).sum() + lambda_d * (diagonal - 1).pow(2).sum()


@register_model("dipvae")
class DIPVAE(VAE):
    """A VAE whose objective adds the DIP penalty (Kumar et al., 2018): the aggregate posterior's covariance is
    pushed towards the identity, matching the moments of q(z) to the prior's. `--dip-type i|ii`."""

    config_class = DIPVAEConfig
    total_name = "objective"  # not a bound: the penalty is added to it
    best_metric = "neg_elbo"

    def loss(self, x: Tensor, config: Optional[TrainConfig] = None, epochs_done: float = 0.0,
             generator: Optional[torch.Generator] = None, check_range: bool = True,
             batch_rows: Optional[tuple[int, int]] = None) -> DIPTerms:
        """recon + beta * warm-up * KL + the DIP penalty of the batch, one sampled z per image."""
        c = self.config
        beta = 1.0 if config is None else config.beta * kl_warmup_factor(epochs_done, config.kl_warmup_epochs)
        mu, logvar = self.encode(x)  # (B, D) each
        z = self.reparameterize(mu, logvar, generator, batch_rows)
        recon = reconstruction_loss(self.decoder(z), x, c.likelihood, c.gaussian_std, check_range).mean()
        kl = kl_divergence(mu, logvar).mean()
        dip = dip_penalty(mu, logvar, c.dip_type, c.lambda_od, c.diagonal_weight)
        return DIPTerms(recon + beta * kl + dip, (recon + kl).detach(), recon.detach(), kl.detach(), dip.detach())
