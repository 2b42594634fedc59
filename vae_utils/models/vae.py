"""The convolutional VAE (Kingma & Welling, 2013): its config, encoder q(z|x), decoder p(x|z), reparameterization."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from ..config import (CHANNEL_COUNTS, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, Config, TrainConfig, check, check_int,
                      check_positive, preset)
from ..importance import gaussian_log_weights
from ..losses import LIKELIHOODS, LossTerms, decoder_channels, kl_warmup_factor, mean_image, vae_loss
from ..nets import GatedDense, ResBlock, check_images, feature_sizes
from ..hub import HubMixin
from ..registry import register_model


@dataclass(frozen=True)
class VAEConfig(Config):
    """Architecture of the convolutional VAE; saved inside every checkpoint."""

    in_channels: int = 1  # 1 (grey) or 3 (RGB)
    image_size: int = 28  # square images; every conv halves it, the flattened size is derived
    latent_dim: int = 32  # size of z (docs/speed.md: the recipe search that chose these defaults)
    channels: tuple[int, ...] = (16, 32)  # stride-2 conv widths, encoder order; wider is better per epoch, slower per second
    hidden_dim: int = 256  # fully connected layer between the feature map and (mu, logvar); 0 = none
    likelihood: str = "bernoulli"  # p(x|z), one of losses.LIKELIHOODS; "discretized-logistic" for 8-bit colour (bits/dim)
    gaussian_std: float = 0.1  # std of the Gaussian likelihood, in pixel units; unused otherwise
    res_blocks: int = 0  # residual blocks after each stride-2 stage (encoder) and before it (decoder)
    architecture: str = "conv"  # "conv", or "gated-mlp": two gated dense layers of hidden_dim units each way (the
    # VampPrior and Exemplar VAE papers' networks; channels and res_blocks unused)

    REQUIRED = ("in_channels", "image_size", "latent_dim", "channels", "hidden_dim", "likelihood", "gaussian_std")
    # ^ fields every checkpoint holds (format 1 on); later fields take their defaults when a file lacks them

    def __post_init__(self) -> None:
        check(isinstance(self.channels, (list, tuple)), "channels", self.channels, "a tuple of conv widths")
        object.__setattr__(self, "channels", tuple(self.channels))  # JSON gives lists back
        check(self.in_channels in CHANNEL_COUNTS, "in_channels", self.in_channels, f"one of {CHANNEL_COUNTS}")
        check_int(self.image_size, "image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        check_int(self.latent_dim, "latent_dim", 1, 4096)
        check(len(self.channels) >= 1, "channels", self.channels, "at least one conv width")
        for width in self.channels:
            check_int(width, "channels", 1, 4096)
        check(
            self.image_size >> (len(self.channels) - 1) >= 2,
            "channels",
            self.channels,
            f"at most {int(math.log2(self.image_size))} stride-2 convolutions for image_size={self.image_size}",
        )
        check_int(self.hidden_dim, "hidden_dim", 0, 65536)
        check(self.likelihood in LIKELIHOODS, "likelihood", self.likelihood, f"one of {LIKELIHOODS}")
        check_positive(self.gaussian_std, "gaussian_std")
        check_int(self.res_blocks, "res_blocks", 0, 16)
        check(self.architecture in ARCHITECTURES, "architecture", self.architecture, f"one of {ARCHITECTURES}")
        if self.architecture == "gated-mlp":
            check_int(self.hidden_dim, "hidden_dim", 1, 65536)

    @classmethod
    def for_images(cls, image_size: int, in_channels: int, **overrides) -> "VAEConfig":
        """A model that scales with the image: stride-2 stages down to 4x4 (7x7 for 28), widths doubling from 32."""
        check_int(image_size, "image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        stages = max(1, int(math.log2(image_size / 4)))  # 28 -> 2 (7x7), 32 -> 3 (4x4), 64 -> 4 (4x4)
        colour = in_channels == 3
        defaults = dict(in_channels=in_channels, image_size=image_size, channels=tuple(min(32 << i, 256) for i in
                        range(stages)), latent_dim=128 if colour else 32, hidden_dim=512 if colour else 256,
                        likelihood="discretized-logistic" if colour else "bernoulli", res_blocks=1 if colour else 0)
        return cls(**{**defaults, **overrides})

    @classmethod
    def for_dataset(cls, name: str, **overrides) -> "VAEConfig":
        """The preset of a named data set (see config.PRESETS); overrides win."""
        shape = preset(name)["model"]  # empty: the defaults above, made for 28x28 grey images; else for_images'
        base = cls.for_images(**shape).to_dict() if shape else {}
        return cls(**{**base, **overrides})


ARCHITECTURES = ("conv", "gated-mlp")


class VAEOutput(NamedTuple):
    """What `VAE.forward` returns and `vae_loss` takes."""

    x_logits: Tensor  # decoder output: (B, C, H, W) logits, (B, 2C, H, W) for the logistic; see losses.mean_image
    mu: Tensor  # (B, latent_dim) posterior mean
    logvar: Tensor  # (B, latent_dim) posterior log-variance
    z: Tensor  # (B, latent_dim) one reparameterized sample


class Encoder(nn.Module):
    """Strided convolutions, then fully connected layers to (mu, logvar) of q(z|x)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        widths = (config.in_channels, *config.channels)
        self.convs = nn.Sequential(*(
            layer for c_in, c_out in zip(widths, widths[1:])
            for layer in (nn.Conv2d(c_in, c_out, 4, 2, 1), nn.SiLU(), *(ResBlock(c_out) for _ in range(config.res_blocks)))
        ))
        side = feature_sizes(config.image_size, len(config.channels))[-1]
        flat = config.channels[-1] * side * side
        hidden = [nn.Linear(flat, config.hidden_dim), nn.SiLU()] if config.hidden_dim else []
        self.head = nn.Sequential(nn.Flatten(), *hidden, nn.Linear(config.hidden_dim or flat, 2 * config.latent_dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.head(self.convs(x)).chunk(2, dim=1)  # (B, latent_dim) each
        return mu, logvar


class Decoder(nn.Module):
    """Fully connected layers to a feature map, then transposed convolutions to image logits."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        sizes = feature_sizes(config.image_size, len(config.channels))  # e.g. [28, 14, 7]
        self.side = sizes[-1]
        flat = config.channels[-1] * self.side * self.side
        hidden = [nn.Linear(config.latent_dim, config.hidden_dim), nn.SiLU()] if config.hidden_dim else []
        self.head = nn.Sequential(*hidden, nn.Linear(config.hidden_dim or config.latent_dim, flat), nn.SiLU())
        widths = (*reversed(config.channels), decoder_channels(config.likelihood, config.in_channels))
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(widths, widths[1:])):
            n_in, n_out = sizes[-1 - i], sizes[-2 - i]
            layers.extend(ResBlock(c_in) for _ in range(config.res_blocks))
            # ConvTranspose2d(k=4, s=2, p=1) gives 2n; output_padding restores an odd size (7 -> 14 -> 28, 3 -> 7).
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, output_padding=n_out - 2 * n_in))
            layers.append(nn.SiLU())
        self.deconvs = nn.Sequential(*layers[:-1])  # no activation on the logits
        self.channels = config.channels[-1]

    def forward(self, z: Tensor) -> Tensor:
        h = self.head(z).view(-1, self.channels, self.side, self.side)  # (B, C_last, s, s)
        return self.deconvs(h)  # (B, C, H, W) logits


class MLPEncoder(nn.Module):
    """The flattened image through two gated dense layers of hidden_dim units, then a linear layer to (mu, logvar)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        pixels, width = config.in_channels * config.image_size ** 2, config.hidden_dim
        self.head = nn.Sequential(nn.Flatten(), GatedDense(pixels, width), GatedDense(width, width),
                                  nn.Linear(width, 2 * config.latent_dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.head(x).chunk(2, dim=1)
        return mu, logvar


class MLPDecoder(nn.Module):
    """z through two gated dense layers of hidden_dim units, then a linear layer to the image's logits."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.shape = (decoder_channels(config.likelihood, config.in_channels), config.image_size, config.image_size)
        width = config.hidden_dim
        self.head = nn.Sequential(GatedDense(config.latent_dim, width), GatedDense(width, width),
                                  nn.Linear(width, math.prod(self.shape)))

    def forward(self, z: Tensor) -> Tensor:
        return self.head(z).view(-1, *self.shape)  # (B, C', H, W) logits


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__


@register_model("vae")
class VAE(HubMixin, nn.Module):
    """Convolutional Variational Autoencoder (Kingma & Welling, 2013) with a N(0, I) prior."""

    config_class = VAEConfig
    encoder_class, decoder_class = Encoder, Decoder  # a family with other networks (the cVAE's) names its own
    total_name = "neg_elbo"  # how `evaluate` names the `total` term
    best_metric = "neg_elbo"  # the test metric that picks best.pt

    def __init__(self, config: Optional[VAEConfig] = None, **overrides) -> None:
        super().__init__()
        if config is None:  # a subclass (IWAE, VampPrior) builds its own config class
            config = self.config_class(**overrides)
        elif overrides:
            config = self.config_class(**{**config.to_dict(), **overrides})
        self.config = config
        try:
            self.encoder, self.decoder = self.networks(config)
        except RuntimeError as err:  # the allocator's "not enough memory: you tried to allocate ..."
            with torch.device("meta"):
                n = sum(p.numel() for m in self.networks(config) for p in m.parameters())
            raise ValueError(f"{config} needs {n:,} parameters ({4 * n / 2**30:.1f} GiB in fp32), more than this "
                             f"machine can allocate ({_first_line(err)}): choose smaller channels, hidden_dim or "
                             "latent_dim") from None

    def networks(self, config: VAEConfig) -> tuple[nn.Module, nn.Module]:
        """(encoder, decoder) of the config's architecture: the family's conv classes, or the gated MLPs."""
        if config.architecture == "gated-mlp":
            return MLPEncoder(config), MLPDecoder(config)
        return self.encoder_class(config), self.decoder_class(config)

    @property
    def latent_dim(self) -> int:
        """Size of the latent code z."""
        return self.config.latent_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images this model takes and makes."""
        c = self.config
        return (c.in_channels, c.image_size, c.image_size)

    def check_input(self, x: Tensor) -> None:
        """Raise ValueError unless x is a float batch of shape (B, C, H, W) that matches the config."""
        check_images(self, x)

    @property
    def likelihood(self) -> str:
        """p(x|z), one of losses.LIKELIHOODS: whether -log p(x) converts to bits/dim."""
        return self.config.likelihood

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters (mu, logvar), each (B, latent_dim), for images x (B, C, H, W) in [0, 1]."""
        self.check_input(x)
        return self.encoder(x)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """q(z|x) as (mu, logvar), each (B, latent_dim): the GaussianLatent capability (see capabilities.py)."""
        return self.encode(x)

    def log_importance_weights(self, x: Tensor, k: int, generator: Optional[torch.Generator] = None, *,
                               check_range: bool = True, precision: str = "fp32", **options) -> Tensor:
        """log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x) for k samples per image: (B, k) nats.

        One encoder pass, then `importance.gaussian_log_weights` (options: chunk_images, subpixel).
        """
        mu, logvar = self.encode(x)  # (B, D); checks the images' shape and dtype
        c = self.config
        return gaussian_log_weights(mu, logvar, self.decoder, x, k, c.likelihood, c.gaussian_std, generator,
                                    check_range=check_range, precision=precision, **options)

    def reparameterize(self, mu: Tensor, logvar: Tensor, generator: Optional[torch.Generator] = None,
                       batch_rows: Optional[tuple[int, int]] = None) -> Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I) (Kingma & Welling, 2013, Sec. 2.4).

        batch_rows=(start, total): mu holds rows start... of a batch of `total` images split across processes;
        the noise of the whole batch is drawn and these rows kept, so each image gets the noise one process would.
        """
        if batch_rows is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        else:
            start, total = batch_rows
            eps = torch.randn((total, mu.shape[1]), generator=generator, device=mu.device, dtype=mu.dtype)
            eps = eps[start:start + mu.shape[0]]
        return mu + torch.exp(0.5 * logvar) * eps

    def decode_logits(self, z: Tensor) -> Tensor:
        """Decoder output for latents z (B, latent_dim): logits (B, C, H, W), or (B, 2C, H, W) for the logistic."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected latents of shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        return self.decoder(z)

    def decode(self, z: Tensor) -> Tensor:
        """Mean image (B, C, H, W) in [0, 1] of p(x|z)."""
        return mean_image(self.decode_logits(z), self.config.likelihood)

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None,
                batch_rows: Optional[tuple[int, int]] = None) -> VAEOutput:
        """Encode, sample one z per image, decode: everything `vae_loss` needs."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator, batch_rows)
        return VAEOutput(self.decoder(z), mu, logvar, z)

    def loss(self, x: Tensor, config: Optional[TrainConfig] = None, epochs_done: float = 0.0,
             generator: Optional[torch.Generator] = None, check_range: bool = True,
             batch_rows: Optional[tuple[int, int]] = None) -> LossTerms:
        """Negative ELBO of images x, batch means in nats per image: LossTerms(total, recon, kl).

        With a training config the KL is weighted by config.beta times the KL warm-up factor after
        `epochs_done` (fractional) epochs; without one it is the plain ELBO (beta = 1), as evaluation scores it.
        batch_rows: see `reparameterize` (set by `train` when several processes share a batch).
        """
        beta = 1.0 if config is None else config.beta * kl_warmup_factor(epochs_done, config.kl_warmup_epochs)
        c = self.config
        return vae_loss(self(x, generator, batch_rows), x, beta, c.likelihood, c.gaussian_std, check_range)

    def skip_noise(self, n: int, generator: Optional[torch.Generator] = None, samples: int = 1) -> None:
        """Draw, and drop, the noise that `loss` (samples=1) or `log_importance_weights` (samples=k) would draw
        for n images: another process scores them."""
        torch.randn((n, samples, self.latent_dim), generator=generator, device=next(self.parameters()).device)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the posterior mean of x: (B, C, H, W) in [0, 1]."""
        mu, _ = self.encode(x)
        return self.decode(mu)

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """n images (n, C, H, W) in [0, 1] decoded from z ~ N(0, I)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n={n!r}: expected a positive number of samples")
        device = next(self.parameters()).device
        if generator is not None and generator.device != device:
            raise ValueError(f"generator is on {generator.device} but the model is on {device}")
        z = torch.randn((n, self.latent_dim), generator=generator, device=device)
        return self.decode(z)
