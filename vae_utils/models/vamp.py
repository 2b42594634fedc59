"""The VampPrior (Tomczak & Welling, 2018): the prior is the mixture of the encoder's posteriors at K learned
pseudo-inputs, p(z) = (1/K) sum_k q(z | u_k), on the VAE's networks."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Collection, NamedTuple, Optional

import torch
from torch import Tensor, nn

from ..config import TrainConfig, check_int
from ..importance import LOG_2PI, gaussian_log_weights
from ..losses import kl_warmup_factor, reconstruction_loss
from ..registry import register_model
from .vae import VAE, VAEConfig


@dataclass(frozen=True)
class VampConfig(VAEConfig):
    """The VAE's architecture (every VAEConfig field) and the number of pseudo-inputs of the prior."""

    pseudo_inputs: int = 500  # K, learned images whose posteriors make the prior (the paper's 500 for MNIST)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.pseudo_inputs, "pseudo_inputs", 1, 100_000)

    def for_training_set(self, n_images: int, given: Collection[str] = (), n_classes: int = 0) -> "VampConfig":
        """This config, unless it has more pseudo-inputs than there are training images (ValueError)."""
        if self.pseudo_inputs > n_images:
            raise ValueError(f"pseudo_inputs={self.pseudo_inputs} is more than the {n_images:,} training images: "
                             f"choose at most {n_images:,}")
        return self


class VampTerms(NamedTuple):
    """What `VampVAE.loss` returns: batch means in nats per image, total = recon + beta * kl."""

    total: Tensor
    recon: Tensor  # -log p(x|z)
    kl: Tensor  # log q(z|x) - log p(z) at the sampled z: a one-sample estimate of KL(q(z|x) || p(z))


def diagonal_normal_log_prob(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, exp(logvar)) summed over the last dimension (broadcasting): nats."""
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)


def mixture_log_probs(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu_k, exp(logvar_k)) of z (..., D) under each of K diagonal Gaussians (K, D): (..., K) nats.

    The square expanded into three matrix products, (z^2) (1/var)^T - 2 z (mu/var)^T + sum mu^2/var, instead of a
    (..., K, D) tensor of differences: the IWAE NLL with k=5000 and K=500 runs in minutes instead of hours."""
    z, mu, logvar = z.double(), mu.double(), logvar.double()  # float64: the expansion cancels large terms
    precision = torch.exp(-logvar)  # (K, D)
    flat = z.reshape(-1, z.shape[-1])
    quadratic = (flat.pow(2) @ precision.T - 2 * flat @ (mu * precision).T
                 + (mu.pow(2) * precision).sum(-1)).clamp_min(0)  # (N, K): sum_d (z_d - mu_kd)^2 / var_kd
    log_probs = -0.5 * (quadratic + logvar.sum(-1) + z.shape[-1] * LOG_2PI)
    return log_probs.view(*z.shape[:-1], len(mu)).float()


@register_model("vamp")
class VampVAE(VAE):
    """A VAE with the VampPrior: the KL term is estimated by Monte Carlo against the mixture, `sample` draws a
    pseudo-input's posterior and decodes it, and the IWAE NLL uses the mixture as log p(z)."""

    config_class = VampConfig

    def __init__(self, config: Optional[VampConfig] = None, **overrides) -> None:
        super().__init__(config, **overrides)
        config = self.config
        # u_k = sigmoid(pseudo_logits_k): images in (0, 1), as the encoder expects; started near grey 0.5
        self.pseudo_logits = nn.Parameter(0.1 * torch.randn(config.pseudo_inputs, *self.image_shape))

    def pseudo_posteriors(self) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of q(z | u_k) for every pseudo-input: (K, latent_dim) each, in fp32."""
        mu, logvar = self.encoder(torch.sigmoid(self.pseudo_logits).to(next(self.encoder.parameters()).dtype))
        return mu.float(), logvar.float()

    def log_prior(self, z: Tensor, components: Optional[tuple[Tensor, Tensor]] = None) -> Tensor:
        """log p(z) = logsumexp_k log q(z | u_k) - log K for z (..., D): (...,) nats."""
        mu, logvar = self.pseudo_posteriors() if components is None else components  # (K, D)
        return torch.logsumexp(mixture_log_probs(z.float(), mu, logvar), dim=-1) - math.log(len(mu))

    def loss(self, x: Tensor, config: Optional[TrainConfig] = None, epochs_done: float = 0.0,
             generator: Optional[torch.Generator] = None, check_range: bool = True,
             batch_rows: Optional[tuple[int, int]] = None) -> VampTerms:
        """Negative ELBO with the VampPrior: recon + beta * (log q(z|x) - log p(z)) at one sampled z per image."""
        beta = 1.0 if config is None else config.beta * kl_warmup_factor(epochs_done, config.kl_warmup_epochs)
        c = self.config
        mu, logvar = self.encode(x)  # (B, D)
        mu, logvar = mu.float(), logvar.float()  # z formed and log q(z|x) evaluated in fp32: under bf16 autocast a
        # rounded z biases the Monte Carlo KL (by about -1.3 nats/image at posterior sd 0.01)
        z = self.reparameterize(mu, logvar, generator, batch_rows)
        recon = reconstruction_loss(self.decoder(z), x, c.likelihood, c.gaussian_std, check_range).mean()
        kl = (diagonal_normal_log_prob(z, mu, logvar) - self.log_prior(z)).mean()
        return VampTerms(recon + beta * kl, recon, kl)

    def log_importance_weights(self, x: Tensor, k: int, generator: Optional[torch.Generator] = None, *,
                               check_range: bool = True, precision: str = "fp32", **options) -> Tensor:
        """log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x) with the VampPrior as p(z): (B, k) nats."""
        mu, logvar = self.encode(x)
        components = self.pseudo_posteriors()  # once per call, not per chunk of samples
        c = self.config
        return gaussian_log_weights(mu, logvar, self.decoder, x, k, c.likelihood, c.gaussian_std, generator,
                                    check_range=check_range, precision=precision,
                                    log_prior=lambda z: self.log_prior(z, components), **options)

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """n images (n, C, H, W) in [0, 1]: a pseudo-input drawn uniformly, z ~ q(z | u_k), decoded."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n={n!r}: expected a positive number of samples")
        device = self.pseudo_logits.device
        if generator is not None and generator.device != device:
            raise ValueError(f"generator is on {generator.device} but the model is on {device}")
        mu, logvar = self.pseudo_posteriors()
        which = torch.randint(len(mu), (n,), generator=generator, device=device)
        eps = torch.randn((n, mu.shape[1]), generator=generator, device=device)
        return self.decode(mu[which] + torch.exp(0.5 * logvar[which]) * eps)
