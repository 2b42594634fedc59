"""The importance-weighted autoencoder (Burda et al., 2016): the VAE's networks trained on the k-sample bound."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from ..config import TrainConfig, check_int
from ..importance import LOG_2PI, standard_normal_log_prob
from ..losses import check_unit_range, kl_divergence, reconstruction_loss
from ..registry import register_model
from .vae import VAE, VAEConfig


@dataclass(frozen=True)
class IWAEConfig(VAEConfig):
    """The VAE's architecture (every VAEConfig field) and the number of importance samples of the training bound."""

    k: int = 5  # importance samples per image in the training objective (Burda et al. use 5 and 50); 1 = the VAE

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.k, "k", 1, 5000)

    def samples_per_image(self) -> int:
        """Decoder passes per training image: the k importance samples (TrainConfig bounds k x batch_size)."""
        return self.k


class IWAETerms(NamedTuple):
    """What `IWAE.loss` returns: batch means in nats per image."""

    total: Tensor  # -L_k = -E[log (1/k) sum_i w_i], the importance-weighted bound: what training minimises
    neg_elbo: Tensor  # -ELBO (recon + kl): the single-sample bound of the same networks, for comparison
    recon: Tensor  # -log p(x|z), averaged over the k samples
    kl: Tensor  # KL(q(z|x) || N(0, I)) in closed form (Kingma & Welling, 2013, App. B)


@register_model("iwae")
class IWAE(VAE):
    """A VAE whose objective is the k-sample importance-weighted bound L_k <= log p(x) (Burda et al., 2016, Eq. 8).

    L_1 is the ELBO and L_k tightens as k grows; the gradient weights each sample by its normalised importance
    weight, which keeps more latent units active. Everything else (networks, sampling, evaluation) is the VAE's.
    """

    config_class = IWAEConfig
    total_name = "neg_iwae_bound"  # how `evaluate` names the total: -L_k with the training k
    best_metric = "neg_iwae_bound"
    beta_refused = "the importance-weighted bound has no separate KL term to weigh"

    def loss(self, x: Tensor, config: Optional[TrainConfig] = None, epochs_done: float = 0.0,
             generator: Optional[torch.Generator] = None, check_range: bool = True,
             batch_rows: Optional[tuple[int, int]] = None) -> IWAETerms:
        """-L_k of images x, with its parts (batch means, nats per image): IWAETerms(total, neg_elbo, recon, kl).

        log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x) for z_i = mu + sigma * eps_i; L_k = logsumexp_i log w_i
        - log k. beta and KL warm-up do not apply (the bound has no separate KL term). batch_rows: see
        `VAE.reparameterize` (the noise of the whole batch is drawn, so that processes match one process).
        """
        c = self.config
        mu, logvar = self.encode(x)  # (B, D) each
        mu32, logvar32 = mu.float(), logvar.float()
        B, D, k = mu.shape[0], mu.shape[1], c.k
        if batch_rows is None:
            eps = torch.randn((B, k, D), generator=generator, device=mu.device)
        else:
            start, total = batch_rows
            eps = torch.randn((total, k, D), generator=generator, device=mu.device)[start:start + B]
        z = mu32.unsqueeze(1) + torch.exp(0.5 * logvar32).unsqueeze(1) * eps  # (B, k, D)
        logits = self.decoder(z.reshape(B * k, D).to(mu.dtype))  # (B*k, C', H, W)
        if check_range and c.likelihood != "gaussian":
            check_unit_range(x, c.likelihood)
        images = x.unsqueeze(1).expand(B, k, *x.shape[1:]).reshape(B * k, *x.shape[1:])
        log_px = -reconstruction_loss(logits, images, c.likelihood, c.gaussian_std, check_range=False).view(B, k)
        log_q = -0.5 * (eps.pow(2) + logvar32.unsqueeze(1) + LOG_2PI).sum(-1)  # (B, k)
        log_w = log_px + standard_normal_log_prob(z) - log_q  # (B, k)
        bound = torch.logsumexp(log_w, dim=1) - math.log(k)  # (B,)
        recon, kl = -log_px.mean(), kl_divergence(mu, logvar).mean()
        return IWAETerms(-bound.mean(), recon.detach() + kl.detach(), recon.detach(), kl.detach())

    def skip_noise(self, n: int, generator: Optional[torch.Generator] = None, samples: Optional[int] = None) -> None:
        """Draw, and drop, the noise that `loss` (samples=None: the training k) or `log_importance_weights`
        (samples=k) would draw for n images."""
        super().skip_noise(n, generator, self.config.k if samples is None else samples)
