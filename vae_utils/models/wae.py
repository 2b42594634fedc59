"""The Wasserstein autoencoder with the MMD penalty (WAE-MMD, Tolstikhin et al., 2018): a deterministic
autoencoder whose codes are pushed, as a whole, towards the prior N(0, I) by the maximum mean discrepancy with the
inverse multiquadratic kernel; samples decode draws of the prior."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from ..config import TrainConfig
from ..losses import imq_mmd, reconstruction_loss
from ..registry import register_model
from .infovae import InfoVAEConfig, prior_draws
from .vae import VAE, VAEOutput


@dataclass(frozen=True)
class WAEConfig(InfoVAEConfig):
    """The VAE's architecture (every VAEConfig field; the encoder's log-variance head goes unused) and the MMD's
    weight."""

    mmd_weight: float = 10.0  # weight of MMD(q(z), p(z)), IMQ kernel: the WAE's lambda (Tolstikhin et al.'s MNIST value)


class WAETerms(NamedTuple):
    """What `WAE.loss` returns: batch means per image (the MMD is one figure per batch)."""

    total: Tensor  # recon + mmd_weight * mmd
    recon: Tensor  # the reconstruction cost c(x, G(z)): -log p(x|z) of the config's likelihood at z = the code
    mmd: Tensor  # MMD^2 between the batch's codes and as many draws of N(0, I)


@register_model("wae")
class WAE(VAE):
    """WAE-MMD (Tolstikhin et al., 2018, Algorithm 2) on the VAE's networks: z = the encoder's mean, no noise, no
    KL. Without a posterior density there is no ELBO, importance weights or bits/dim: the report gives the
    reconstruction cost, the MMD and sample quality, and says so."""

    config_class = WAEConfig
    total_name = "objective"
    best_metric = "objective"
    beta_refused = "a WAE has no KL term (its MMD is weighed by --mmd-weight)"
    no_density_note = ("a WAE is a deterministic autoencoder: it has no posterior density, so no -ELBO, IWAE NLL, "
                       "bits/dim, KL per dimension or active units; its figures are the reconstruction cost, the MMD "
                       "and sample quality")
    posterior = None  # a point code, not a distribution: no KL per dimension, active units or latent walks
    log_importance_weights = None  # no density q(z|x): no IWAE NLL

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None,
                batch_rows: Optional[tuple[int, int]] = None) -> VAEOutput:
        """Encode to the code z (the mean head) and decode it; logvar is the unused head's output."""
        mu, logvar = self.encode(x)
        return VAEOutput(self.decoder(mu), mu, logvar, mu)

    def loss(self, x: Tensor, config: Optional[TrainConfig] = None, epochs_done: float = 0.0,
             generator: Optional[torch.Generator] = None, check_range: bool = True,
             batch_rows: Optional[tuple[int, int]] = None) -> WAETerms:
        """recon + mmd_weight * MMD(codes, prior draws), one prior draw per image."""
        c = self.config
        z, _ = self.encode(x)  # (B, D)
        recon = reconstruction_loss(self.decoder(z), x, c.likelihood, c.gaussian_std, check_range).mean()
        mmd = imq_mmd(z, prior_draws(len(z), c.latent_dim, z, generator, batch_rows))
        return WAETerms(recon + c.mmd_weight * mmd, recon.detach(), mmd.detach())

    def skip_noise(self, n: int, generator: Optional[torch.Generator] = None, samples: int = 1) -> None:
        """Draw, and drop, the prior draws `loss` takes for n images."""
        torch.randn((n, self.latent_dim), generator=generator, device=next(self.parameters()).device)
