"""A top-down hierarchical VAE in the form of NVAE (Vahdat & Kautz, 2020) and VDVAE (Child, 2021).

A deterministic bottom-up path summarises the image at each latent resolution; a top-down path, shared by the
generative model and the posterior, walks the groups of latents from the coarsest resolution to half the image's.
Group g has a prior p(z_g | z_<g) and a posterior q(z_g | x, z_<g), both diagonal Gaussians computed from the
top-down state (the posterior also from the bottom-up features), so

    -ELBO = E_q[-log p(x | z)] + sum_g E_q[KL(q(z_g | x, z_<g) || p(z_g | z_<g))]   (Sønderby et al., 2016, Eq. 13)

with each KL in closed form given the groups above it (VDVAE's estimator). The posterior is parameterised relative
to the prior (NVAE's residual normal), which keeps the KL terms small at the start.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import (CHANNEL_COUNTS, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, Config, TrainConfig, check, check_int,
                      check_positive, is_number, preset)
from ..importance import LOG_2PI, log_px_of_samples
from ..losses import (LIKELIHOODS, check_unit_range, decoder_channels, kl_warmup_factor, mean_image,
                      reconstruction_loss)
from ..nets import DenseResBlock, ResBlock, check_images, feature_sizes
from ..hub import HubMixin
from ..registry import register_model
from ..repro import autocast
from ..subpixel import UnshuffledDecoder

LOGVAR_BOUND = 10.0  # log-variances are soft-clamped to (-10, 10) (NVAE's soft clamp of its log-scales)


@dataclass(frozen=True)
class HVAEConfig(Config):
    """Architecture of the hierarchical VAE; saved inside every checkpoint."""

    in_channels: int = 1  # 1 (grey) or 3 (RGB)
    image_size: int = 28  # square images; the latent resolutions halve from image_size // 2
    groups: tuple[int, ...] = (2, 2)  # latent groups at each resolution, coarsest first (28: 7x7, then 14x14)
    widths: tuple[int, ...] = (32, 16)  # channels of both paths at each resolution, coarsest first
    z_channels: int = 4  # channels of each group's latent map: a z_channels x r x r diagonal Gaussian
    cells: int = 1  # residual cells after each group (top-down) and at each resolution (bottom-up)
    likelihood: str = "bernoulli"  # p(x|z), one of losses.LIKELIHOODS; "discretized-mix-logistic" for 8-bit colour
    gaussian_std: float = 0.1  # std of the Gaussian likelihood, in pixel units; unused otherwise
    free_bits: float = 0.0  # nats per group below which its batch-mean KL is not penalised in training (Kingma et
    # al., 2016); 0 = the plain ELBO

    def __post_init__(self) -> None:
        for name in ("groups", "widths"):
            check(isinstance(getattr(self, name), (list, tuple)) and len(getattr(self, name)) >= 1, name,
                  getattr(self, name), "a tuple with one entry per latent resolution")
            object.__setattr__(self, name, tuple(getattr(self, name)))  # JSON gives lists back
        check(self.in_channels in CHANNEL_COUNTS, "in_channels", self.in_channels, f"one of {CHANNEL_COUNTS}")
        check_int(self.image_size, "image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        n = len(self.groups)
        check(self.image_size >> n >= 1, "groups", self.groups,
              f"at most {int(math.log2(self.image_size))} resolutions for image_size={self.image_size} (each halves "
              f"the one below it, from {self.image_size // 2}); {n} would go below 1x1")
        check(len(self.widths) == n, "widths", self.widths, f"one width per resolution ({n}, as groups has)")
        for count in self.groups:
            check_int(count, "groups", 1, 64)
        for width in self.widths:
            check_int(width, "widths", 1, 4096)
        check_int(self.z_channels, "z_channels", 1, 1024)
        check_int(self.cells, "cells", 0, 16)
        check(self.likelihood in LIKELIHOODS, "likelihood", self.likelihood, f"one of {LIKELIHOODS}")
        check_positive(self.gaussian_std, "gaussian_std")
        check(is_number(self.free_bits) and math.isfinite(self.free_bits) and self.free_bits >= 0, "free_bits",
              self.free_bits, "a finite number >= 0")

    @property
    def resolutions(self) -> list[int]:
        """Side of the latent maps at each resolution, coarsest first (28: [7, 14])."""
        return feature_sizes(self.image_size, len(self.groups))[:0:-1]

    @classmethod
    def for_images(cls, image_size: int, in_channels: int, **overrides) -> "HVAEConfig":
        """The presets: 28x28 grey (7 and 14), 32x32 colour (4, 8, 16) and 64x64 colour (4 to 32), sized for the
        CPU (grey) and for one GPU (colour, with the discretized mixture of logistics)."""
        check_int(image_size, "image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        n = max(1, int(math.log2(image_size / 4)))  # down to 4x4 (7x7 for 28)
        if in_channels == 3:
            widths = tuple(128 if i < n - 1 or n == 1 else 64 for i in range(n))
            groups = tuple(2 if i < n - 2 or n <= 2 else (4 if i == n - 2 else 2) for i in range(n))
            defaults = dict(widths=widths, groups=groups, z_channels=16, cells=2, likelihood="discretized-mix-logistic")
        else:
            defaults = dict(widths=tuple(max(16, 32 >> i) for i in range(n)), groups=(2,) * n)
        return cls(**{"in_channels": in_channels, "image_size": image_size, **defaults, **overrides})

    @classmethod
    def for_dataset(cls, name: str, **overrides) -> "HVAEConfig":
        """The preset for a named data set's image shape (see config.PRESETS); overrides win."""
        shape = preset(name)["model"]
        return cls.for_images(shape.get("image_size", 28), shape.get("in_channels", 1), **overrides)


class HVAETerms(NamedTuple):
    """What `HVAE.loss` returns: batch means in nats per image."""

    total: Tensor  # what training minimises: recon + beta * KL (free bits per group); the -ELBO when evaluated
    recon: Tensor  # -log p(x|z)
    kl: Tensor  # sum over groups of KL(q(z_g|x, z_<g) || p(z_g|z_<g))


class Group(NamedTuple):
    """One group's latent sample and the Gaussians it came from: (B, z_channels, r, r) each; q is None when the
    group was drawn from its prior."""

    z: Tensor
    eps: Tensor  # the standard normal noise z was made from
    p_mu: Tensor
    p_logvar: Tensor
    q_mu: Optional[Tensor]
    q_logvar: Optional[Tensor]


def soft_clamp(x: Tensor, bound: float = LOGVAR_BOUND) -> Tensor:
    """bound * tanh(x / bound): x where |x| << bound, never beyond it, gradients everywhere."""
    return bound * torch.tanh(x / bound)


def gaussian_kl(q_mu: Tensor, q_logvar: Tensor, p_mu: Tensor, p_logvar: Tensor) -> Tensor:
    """KL(N(q_mu, e^q_logvar) || N(p_mu, e^p_logvar)) elementwise, nats (computed in fp32)."""
    q_mu, q_logvar, p_mu, p_logvar = (t.float() for t in (q_mu, q_logvar, p_mu, p_logvar))
    return 0.5 * (p_logvar - q_logvar + (q_logvar.exp() + (q_mu - p_mu).pow(2)) / p_logvar.exp() - 1.0)


def gaussian_log_prob(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, e^logvar) summed over all but the first dimension: (B,) nats, in fp32."""
    z, mu, logvar = z.float(), mu.float(), logvar.float()
    return (-0.5 * ((z - mu).pow(2) / logvar.exp() + logvar + LOG_2PI)).flatten(1).sum(1)


class GroupBlock(nn.Module):
    """One latent group on the top-down path (VDVAE's top-down block): the prior from the state h, the posterior
    from h and the bottom-up features, the sample added back to h through a 1x1 convolution, residual cells.

    With dense=True the state, features and group are vectors and every layer is a linear one (the ladder's
    groups, models/ladder.py); features_width is the bottom-up features' size (the state's width by default), and
    dropout that of the dense cells.
    """

    def __init__(self, width: int, z_channels: int, cells: int, out_scale: float, dense: bool = False,
                 features_width: Optional[int] = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.z_channels = z_channels
        layer = nn.Linear if dense else partial(nn.Conv2d, kernel_size=3, padding=1)
        self.prior = nn.Sequential(nn.SiLU(), layer(width, 2 * z_channels + width))
        self.posterior = nn.Sequential(nn.SiLU(), layer(width + (features_width or width), 2 * z_channels))
        self.z_proj = nn.Linear(z_channels, width) if dense else nn.Conv2d(z_channels, width, 1)
        self.cells = nn.Sequential(*(DenseResBlock(width, dropout) if dense else ResBlock(width) for _ in range(cells)))
        with torch.no_grad():  # start as p = N(0, I), q close to p, and small residual updates (VDVAE's init)
            self.prior[1].weight.zero_()
            self.prior[1].bias.zero_()
            self.posterior[1].weight.mul_(0.1)
            self.z_proj.weight.mul_(out_scale)
            for cell in self.cells:
                cell.body[-1].weight.mul_(out_scale)

    def forward(self, h: Tensor, features: Optional[Tensor], eps: Tensor, temperature: float = 1.0,
                posterior_mean: bool = False) -> tuple[Tensor, Group]:
        """(next state, the group) for state h (B, width, r, r): from the posterior when features (the bottom-up
        path's, same shape as h) are given, z = mu + sigma * eps; else from the prior, z = mu + T sigma eps."""
        z_ch = self.z_channels
        p_mu, p_logvar, feat = self.prior(h).split((z_ch, z_ch, h.shape[1]), dim=1)
        p_logvar = soft_clamp(p_logvar)
        if features is not None:
            d_mu, d_logvar = self.posterior(torch.cat([h, features], dim=1)).chunk(2, dim=1)
            q_mu, q_logvar = p_mu + d_mu, soft_clamp(p_logvar + d_logvar)  # NVAE's residual normal
            z = q_mu if posterior_mean else q_mu + torch.exp(0.5 * q_logvar) * eps
        else:
            q_mu = q_logvar = None
            z = p_mu + temperature * torch.exp(0.5 * p_logvar) * eps
        h = self.cells(h + feat + self.z_proj(z))
        return h, Group(z, eps, p_mu, p_logvar, q_mu, q_logvar)


class BottomUp(nn.Module):
    """The deterministic encoder path: a stride-2 convolution to the finest latent resolution, then residual cells
    and a stride-2 convolution per resolution; its features at each resolution, coarsest first."""

    def __init__(self, config: HVAEConfig) -> None:
        super().__init__()
        widths = config.widths[::-1]  # finest first
        self.stem = nn.Conv2d(config.in_channels, widths[0], 4, 2, 1)
        self.stages = nn.ModuleList(nn.Sequential(*(ResBlock(w) for _ in range(config.cells))) for w in widths)
        self.downs = nn.ModuleList(nn.Conv2d(a, b, 4, 2, 1) for a, b in zip(widths, widths[1:]))

    def forward(self, x: Tensor) -> list[Tensor]:
        h, features = self.stem(2 * x - 1), []
        for i, stage in enumerate(self.stages):
            if i:
                h = self.downs[i - 1](F.silu(h))
            h = stage(h)
            features.append(h)
        return features[::-1]  # coarsest first, as the top-down path walks them


@register_model("hvae")
class HVAE(HubMixin, nn.Module):
    """Top-down hierarchical VAE (Sønderby et al., 2016; Kingma et al., 2016; NVAE; VDVAE): groups of spatial
    latents at several resolutions, each conditioned on the groups above it, in prior and posterior alike."""

    config_class = HVAEConfig
    total_name = "neg_elbo"  # evaluated without a training config, the total is the -ELBO
    best_metric = "neg_elbo"
    train_defaults = dict(ema_decay=0.999, grad_clip=200.0, skip_factor=10.0)  # `train --model hvae` starts here

    def __init__(self, config: Optional[HVAEConfig] = None, **overrides) -> None:
        super().__init__()
        self.config = c = self._resolve_config(config, overrides)
        sizes = c.resolutions
        n_groups = sum(c.groups)
        out_scale = 1 / math.sqrt(n_groups * max(1, c.cells))
        self.bottom_up = BottomUp(c)
        self.top = nn.Parameter(torch.zeros(1, c.widths[0], sizes[0], sizes[0]))  # the learned start of the path
        self.levels = nn.ModuleList(nn.ModuleList(GroupBlock(w, c.z_channels, c.cells, out_scale) for _ in range(g))
                                    for w, g in zip(c.widths, c.groups))
        self.ups = nn.ModuleList(nn.Conv2d(a, b, 1) for a, b in zip(c.widths, c.widths[1:]))  # after 2x upsampling
        out_channels = decoder_channels(c.likelihood, c.in_channels)
        self.out = nn.Sequential(nn.SiLU(), nn.ConvTranspose2d(c.widths[-1], out_channels, 4, 2, 1,
                                                               output_padding=c.image_size - 2 * sizes[-1]))
        self.group_shapes = [(c.z_channels, r, r) for r, g in zip(sizes, c.groups) for _ in range(g)]

    @classmethod
    def _resolve_config(cls, config: Optional[Config], overrides: dict) -> Config:
        """The family's config from a config and/or field overrides (overrides win)."""
        if config is None:
            return cls.config_class(**overrides)
        return cls.config_class(**{**config.to_dict(), **overrides}) if overrides else config

    @property
    def n_groups(self) -> int:
        """Number of latent groups, top (coarsest) first in every per-group result."""
        return len(self.group_shapes)

    def group_names(self) -> list[str]:
        """A label per group, top first: its resolution and its place there (e.g. "7x7 #2")."""
        return [f"{r}x{r} #{i + 1}" for r, g in zip(self.config.resolutions, self.config.groups) for i in range(g)]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images this model takes and makes."""
        return (self.config.in_channels, self.config.image_size, self.config.image_size)

    @property
    def likelihood(self) -> str:
        """p(x|z), one of losses.LIKELIHOODS: whether -log p(x) converts to bits/dim."""
        return self.config.likelihood

    def check_input(self, x: Tensor) -> None:
        """Raise ValueError unless x is a float batch of shape (B, C, H, W) that matches the config."""
        check_images(self, x)

    def _noise(self, n: int, generator: Optional[torch.Generator], batch_rows: Optional[tuple[int, int]] = None
               ) -> list[Tensor]:
        """Standard normal noise for every group, (n, z_channels, r, r) each; with batch_rows=(start, total), the
        rows start... of a batch of total images (see VAE.reparameterize)."""
        device = self.top.device
        start, total = batch_rows if batch_rows is not None else (0, n)
        return [torch.randn((total, *shape), generator=generator, device=device)[start:start + n]
                for shape in self.group_shapes]

    def _prior_noise(self, n: int, generator: Optional[torch.Generator], temperatures: list[float]) -> list[Tensor]:
        """The noise of sampling from the prior: none drawn when every temperature is 0 (the means need none)."""
        if any(temperatures):
            return self._noise(n, generator)
        return [torch.zeros((n, *shape), device=self.top.device) for shape in self.group_shapes]

    def _top_down(self, features: Optional[list[Tensor]], n: int, noise: list[Tensor],
                  temperature: Sequence[float], posterior_groups: int, posterior_mean: bool = False
                  ) -> tuple[Tensor, list[Group]]:
        """Walk the groups top-down: the first posterior_groups from the posterior (features given), the rest
        from the prior at their temperatures; return the likelihood's parameters and every group."""
        h, groups = self._walk(features, n, noise, temperature, posterior_groups, posterior_mean)
        return self.out(h), groups

    def _walk(self, features: Optional[list[Tensor]], n: int, noise: list[Tensor], temperature: Sequence[float],
              posterior_groups: int, posterior_mean: bool = False) -> tuple[Tensor, list[Group]]:
        """The top-down path of `_top_down` up to its last state (B, width, r, r), before the output layer."""
        h = self.top.expand(n, -1, -1, -1)
        groups: list[Group] = []
        for i, blocks in enumerate(self.levels):
            if i:
                h = self.ups[i - 1](F.interpolate(h, size=self.config.resolutions[i], mode="nearest"))
            level = features[i] if features is not None else None
            for block in blocks:
                g = len(groups)
                h, group = block(h, level if g < posterior_groups else None, noise[g].to(h.dtype), temperature[g],
                                 posterior_mean)
                groups.append(group)
        return h, groups

    def _iwae_output(self) -> UnshuffledDecoder:
        """The output layer as the IWAE evaluation runs it (a family with a sub-pixel form returns that)."""
        return UnshuffledDecoder(self.out, 1)

    def _temperatures(self, temperature: Union[float, Sequence[float]]) -> list[float]:
        """One temperature per group from a number or a sequence; ValueError for a negative, NaN or inf one."""
        values = list(temperature) if isinstance(temperature, (list, tuple)) else [temperature] * self.n_groups
        if len(values) != self.n_groups:
            raise ValueError(f"temperature has {len(values)} values, but the model has {self.n_groups} groups: "
                             "give one number, or one per group (top first)")
        for t in values:
            if not (is_number(t) and math.isfinite(t) and t >= 0):
                raise ValueError(f"temperature={t!r} is not allowed: expected a finite number >= 0 (1 samples the "
                                 "prior itself, smaller values sharper images, 0 each group's prior mean)")
        return [float(t) for t in values]

    def loss(self, x: Tensor, config: Optional[TrainConfig] = None, epochs_done: float = 0.0,
             generator: Optional[torch.Generator] = None, check_range: bool = True,
             batch_rows: Optional[tuple[int, int]] = None) -> HVAETerms:
        """-ELBO of images x with its parts, batch means in nats per image: HVAETerms(total, recon, kl).

        With a training config, the KL is weighted by config.beta times the KL warm-up factor, and each group's
        batch-mean KL counts at least free_bits nats; without one, total is the plain -ELBO.
        """
        c = self.config
        logits, groups = self._posterior_pass(x, generator, batch_rows)
        recon = reconstruction_loss(logits, x, c.likelihood, c.gaussian_std, check_range)  # (B,)
        kl_groups = self._group_kls(groups)  # (B, G)
        recon, kl = recon.mean(), kl_groups.sum(1).mean()
        if config is None:
            return HVAETerms(recon + kl, recon, kl)
        beta = config.beta * kl_warmup_factor(epochs_done, config.kl_warmup_epochs)
        penalised = kl_groups.mean(0).clamp(min=c.free_bits).sum() if c.free_bits else kl
        return HVAETerms(recon + beta * penalised, recon, kl)

    def _posterior_pass(self, x: Tensor, generator: Optional[torch.Generator] = None,
                        batch_rows: Optional[tuple[int, int]] = None) -> tuple[Tensor, list[Group]]:
        """(the likelihood's parameters, every group drawn from the posterior given x, top first)."""
        self.check_input(x)
        noise = self._noise(len(x), generator, batch_rows)
        return self._top_down(self.bottom_up(x), len(x), noise, [1.0] * self.n_groups, self.n_groups)

    def _group_kls(self, groups: list[Group]) -> Tensor:
        """KL(q(z_g|x, z_<g) || p(z_g|z_<g)) of each group drawn from the posterior, analytic: (B, G) nats."""
        return torch.stack([gaussian_kl(g.q_mu, g.q_logvar, g.p_mu, g.p_logvar).flatten(1).sum(1) for g in groups],
                           dim=1)

    def _log_ratio(self, groups: list[Group]) -> Tensor:
        """sum_g log p(z_g | z_<g) - log q(z_g | x, z_<g) at the groups' samples: (B,) nats."""
        return sum(gaussian_log_prob(g.z, g.p_mu, g.p_logvar) - gaussian_log_prob(g.z, g.q_mu, g.q_logvar)
                   for g in groups)

    @torch.no_grad()
    def kl_per_group(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """KL(q(z_g|x, z_<g) || p(z_g|z_<g)) of each group, top first: (B, n_groups) nats."""
        _, groups = self._posterior_pass(x, generator)
        return self._group_kls(groups)

    @torch.no_grad()
    def log_importance_weights(self, x: Tensor, k: int, generator: Optional[torch.Generator] = None, *,
                               check_range: bool = True, precision: str = "fp32", chunk_images: int = 1024
                               ) -> Tensor:
        """log w_i = log p(x|z_i) + sum_g [log p(z_g,i | z_<g,i) - log q(z_g,i | x, z_<g,i)] for k samples of all
        groups per image: (B, k) nats (Burda et al., 2016, over the whole hierarchy).

        The bottom-up path runs once; the top-down path on chunks of chunk_images samples, in bf16 autocast with
        precision="bf16" (the log-densities summed in fp32). The noise is drawn chunk by chunk: the same seed and
        chunk_images give the same weights, another chunk_images other draws of them.
        """
        self.check_input(x)
        c = self.config
        if check_range and c.likelihood != "gaussian":
            check_unit_range(x, c.likelihood)
        B = len(x)
        with autocast(x.device, precision):
            features = self.bottom_up(x)
        out = torch.empty(B, k, device=x.device)
        net = self._iwae_output()
        target = F.pixel_unshuffle(x, net.factor).float()  # the output layer's layout
        chunk = _chunk(B, k, chunk_images)
        for first in range(0, k, chunk):
            n = min(chunk, k - first)
            noise = [torch.randn((B, n, *shape), generator=generator, device=x.device).flatten(0, 1)
                     for shape in self.group_shapes]  # (B*n, ...): sample j of image b is row b*n + j
            repeated = [f.repeat_interleave(n, dim=0) for f in features]
            with autocast(x.device, precision):
                h, groups = self._walk(repeated, B * n, noise, [1.0] * self.n_groups, self.n_groups)
                logits = net.logits(h)
            log_ratio = self._log_ratio(groups)  # (B*n,)
            out[:, first:first + n] = (log_px_of_samples(logits, target, n, c.likelihood, c.gaussian_std)
                                       + log_ratio.view(B, n))
        return out

    def skip_noise(self, n: int, generator: Optional[torch.Generator] = None, samples: Optional[int] = None,
                   chunk_images: int = 1024) -> None:
        """Draw, and drop, the noise that `loss` (samples=None) or `log_importance_weights` (samples=k) would draw
        for n images: another process scores them."""
        device = self.top.device
        if samples is None:
            self._noise(n, generator)
            return
        chunk = _chunk(n, samples, chunk_images)
        for first in range(0, samples, chunk):
            for shape in self.group_shapes:
                torch.randn((n, min(chunk, samples - first), *shape), generator=generator, device=device)

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None,
               temperature: Union[float, Sequence[float]] = 1.0) -> Tensor:
        """n images (n, C, H, W) in [0, 1]: every group drawn from its prior with its temperature (one number, or
        one per group, top first); 0 takes each group's prior mean."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n={n!r}: expected a positive number of samples")
        temperatures = self._temperatures(temperature)
        if generator is not None and generator.device != self.top.device:
            raise ValueError(f"generator is on {generator.device} but the model is on {self.top.device}")
        logits, _ = self._top_down(None, n, self._prior_noise(n, generator, temperatures), temperatures, 0)
        return mean_image(logits, self.config.likelihood)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, groups: Optional[int] = None, temperature: float = 0.0,
                    generator: Optional[torch.Generator] = None) -> Tensor:
        """Mean images (B, C, H, W) decoded from the posterior means of the top `groups` groups (None: all) and the
        prior at `temperature` (0: its means) for the rest: what the top groups alone encode."""
        self.check_input(x)
        groups = self.n_groups if groups is None else groups
        if not (isinstance(groups, int) and not isinstance(groups, bool) and 0 <= groups <= self.n_groups):
            raise ValueError(f"groups={groups!r}: expected an integer from 0 to {self.n_groups} (the model's groups)")
        temperatures = self._temperatures(temperature)
        noise = self._prior_noise(len(x), generator, temperatures)
        logits, _ = self._top_down(self.bottom_up(x), len(x), noise, temperatures, groups, posterior_mean=True)
        return mean_image(logits, self.config.likelihood)


def _chunk(images: int, k: int, chunk_images: int) -> int:
    """Samples per top-down pass so that a pass holds about chunk_images images."""
    return max(1, min(k, chunk_images // max(images, 1)))
