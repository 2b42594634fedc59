"""Inverse autoregressive flow in the posterior (Kingma et al., 2016): the VAE's diagonal Gaussian q(z0|x) moved
through K autoregressive steps, each a MADE (Germain et al., 2015) conditioned on a context vector from the encoder,
so that q(z_K|x) can be correlated and skewed at the cost of K small networks."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import TrainConfig, check_int
from ..importance import LOG_2PI, gaussian_log_weights, standard_normal_log_prob
from ..losses import kl_warmup_factor, reconstruction_loss
from ..registry import register_model
from .vae import VAE, VAEConfig

FORGET_BIAS = 1.0  # added to each step's gate logit, so that sigma starts near 0.73 and the flow near the identity


@dataclass(frozen=True)
class IAFConfig(VAEConfig):
    """The VAE's architecture (every VAEConfig field) and the flow's size."""

    flow_steps: int = 2  # K inverse autoregressive steps (the paper's MNIST runs: 2-8); 0 = the VAE's posterior
    flow_hidden: int = 320  # units of each step's two masked hidden layers (the paper's MNIST MADEs)
    context_dim: int = 32  # size of the encoder's context vector h that every step also reads

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.flow_steps, "flow_steps", 0, 64)
        check_int(self.flow_hidden, "flow_hidden", 1, 65536)
        check_int(self.context_dim, "context_dim", 1, 65536)


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out, in): MADE's autoregressive wiring."""

    def __init__(self, n_in: int, n_out: int, mask: Tensor) -> None:
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask.float(), persistent=False)  # rebuilt from the config, not saved

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """(m, s), each (..., D), of z (..., D) and a context h (..., C), output d a function of z_<d alone
    (Germain et al., 2015): degrees 1..D on the inputs and outputs, 1..D-1 in turn on the hidden units. context=0:
    no context (h is ignored), as a density estimator's MADE (the MAF sampler's)."""

    def __init__(self, dim: int, hidden: int, context: int = 0) -> None:
        super().__init__()
        inputs = torch.arange(1, dim + 1)
        units = torch.arange(hidden) % max(1, dim - 1) + 1  # (H,) each unit's degree
        self.first = MaskedLinear(dim, hidden, units[:, None] >= inputs[None, :])
        self.context = nn.Linear(context, hidden) if context else None
        self.second = MaskedLinear(hidden, hidden, units[:, None] >= units[None, :])
        out_mask = inputs[:, None] > units[None, :]  # (D, H): output d sees units of degree < d
        self.out = MaskedLinear(hidden, 2 * dim, torch.cat([out_mask, out_mask]))

    def forward(self, z: Tensor, h: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        a = self.first(z) if self.context is None else self.first(z) + self.context(h)
        a = F.elu(a)
        a = F.elu(self.second(a))
        m, s = self.out(a).chunk(2, dim=-1)
        return m, s


class IAFTerms(NamedTuple):
    """What `IAF.loss` returns: batch means in nats per image."""

    total: Tensor  # recon + beta * kl
    recon: Tensor  # -log p(x|z_K)
    kl: Tensor  # log q(z_K|x) - log p(z_K) at the sampled z_K (Monte Carlo, with the exact log-determinant)


@register_model("iaf")
class IAF(VAE):
    """A VAE whose posterior is a diagonal Gaussian followed by K inverse autoregressive steps (Kingma et al.,
    2016, Eqs. 10-14): z_k = sigma_k * z_{k-1} + (1 - sigma_k) * m_k with (m_k, s_k) = MADE_k(z_{k-1}, h),
    sigma_k = sigmoid(s_k + 1), the order of the dimensions reversed between steps; log q(z_K|x) = log q(z_0|x) -
    sum_k sum_d log sigma_k,d. The KL is estimated by one sample; the IWAE NLL uses the flow's density."""

    config_class = IAFConfig
    posterior = None  # q(z|x) is not a diagonal Gaussian: no KL per dimension, active units, GMM or latent walks

    def networks(self, config: IAFConfig) -> tuple[nn.Module, nn.Module]:
        encoder, decoder = super().networks(config)
        width = encoder.head[-1].in_features  # the encoder's last features, which also give the context h
        self.context_head = nn.Linear(width, config.context_dim)
        self.steps = nn.ModuleList(MADE(config.latent_dim, config.flow_hidden, config.context_dim)
                                   for _ in range(config.flow_steps))
        return encoder, decoder

    def encode_with_context(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(mu, logvar) of q(z0|x) and the context h, (B, D), (B, D), (B, C)."""
        self.check_input(x)
        encoder = self.encoder
        features = encoder.head[:-1](encoder.convs(x) if hasattr(encoder, "convs") else x)  # (B, width)
        mu, logvar = encoder.head[-1](features).chunk(2, dim=1)
        return mu, logvar, self.context_head(features)

    def flow(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """(z_K, log|det dz_K/dz_0|) of z_0 (..., D) with context h (..., C): (..., D), (...) in nats."""
        log_det = torch.zeros(z.shape[:-1], device=z.device)
        for i, step in enumerate(self.steps):
            if i > 0:
                z = z.flip(-1)  # reverse the order, so that each dimension is conditioned on all others in turn
            m, s = step(z, h)
            gate = s.float() + FORGET_BIAS
            sigma = torch.sigmoid(gate)
            z = sigma * z + (1 - sigma) * m.float()
            log_det = log_det + F.logsigmoid(gate).sum(-1)
        if len(self.steps) > 1 and len(self.steps) % 2 == 0:
            z = z.flip(-1)  # every dimension back in its own place, whatever K
        return z, log_det

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """q(z0|x)'s (mu, logvar), each (B, latent_dim): the base of the flow."""
        mu, logvar, _ = self.encode_with_context(x)
        return mu, logvar

    def loss(self, x: Tensor, config: Optional[TrainConfig] = None, epochs_done: float = 0.0,
             generator: Optional[torch.Generator] = None, check_range: bool = True,
             batch_rows: Optional[tuple[int, int]] = None) -> IAFTerms:
        """-ELBO with one z_K per image: recon + beta * warm-up * (log q(z_K|x) - log p(z_K)), batch means."""
        beta = 1.0 if config is None else config.beta * kl_warmup_factor(epochs_done, config.kl_warmup_epochs)
        c = self.config
        mu, logvar, h = self.encode_with_context(x)
        mu, logvar = mu.float(), logvar.float()
        z0 = self.reparameterize(mu, logvar, generator, batch_rows)  # (B, D)
        eps = (z0 - mu) * torch.exp(-0.5 * logvar)
        log_q0 = -0.5 * (eps.pow(2) + logvar + LOG_2PI).sum(-1)  # (B,)
        z, log_det = self.flow(z0, h.float())
        kl = (log_q0 - log_det - standard_normal_log_prob(z)).mean()
        recon = reconstruction_loss(self.decoder(z), x, c.likelihood, c.gaussian_std, check_range).mean()
        return IAFTerms(recon + beta * kl, recon, kl)

    def log_importance_weights(self, x: Tensor, k: int, generator: Optional[torch.Generator] = None, *,
                               check_range: bool = True, precision: str = "fp32", **options) -> Tensor:
        """log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x), z_i the flow's samples, q its density: (B, k)."""
        mu, logvar, h = self.encode_with_context(x)
        c = self.config
        context = h.float().unsqueeze(1)  # (B, 1, C), broadcast over the samples of each image

        def flow(z: Tensor) -> tuple[Tensor, Tensor]:
            return self.flow(z, context.expand(*z.shape[:-1], context.shape[-1]))

        return gaussian_log_weights(mu, logvar, self.decoder, x, k, c.likelihood, c.gaussian_std, generator,
                                    check_range=check_range, precision=precision, flow=flow, **options)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the flow's image of the base mean: (B, C, H, W) in [0, 1]."""
        mu, _, h = self.encode_with_context(x)
        return self.decode(self.flow(mu.float(), h.float())[0])
