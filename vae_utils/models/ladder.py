"""A dense top-down ladder VAE: the hierarchical VAE with vector groups (Sønderby et al., 2016; the VampPrior
paper's two-level HVAE, Tomczak & Welling, 2018), built so that its IWAE evaluation runs at matrix-multiply speed.

The convolutional hierarchy (models/hvae.py) runs its top-down path, convolutions of 8-32 channels at 7x7 and
14x14, once per importance sample: on a 2-core CPU that is hours for k=5000 (docs/hierarchical.md). Here the
bottom-up path is the VAE's strided convolutions to one feature vector, the top-down path a stack of groups of
vector latents on a dense state (the same `GroupBlock` with linear layers: prior and posterior of each group
conditioned on the groups above, NVAE's residual normal), and p(x | z) the VAE's decoder from the last state, run
in sub-pixel form by the IWAE evaluation. Loss, IWAE NLL, KL per group, temperatures and top-group
reconstructions are the hierarchical VAE's own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..config import (CHANNEL_COUNTS, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, Config, check, check_int, check_positive,
                      is_number, preset)
from ..losses import LIKELIHOODS
from ..nets import dropout_layer, feature_sizes
from ..registry import register_model
from ..subpixel import UnshuffledDecoder, unshuffled_decoder
from .hvae import HVAE, Group, GroupBlock
from .vae import Decoder, VAEConfig


@dataclass(frozen=True)
class LadderConfig(Config):
    """Architecture of the dense ladder VAE; saved inside every checkpoint."""

    REQUIRED = ("in_channels", "image_size", "channels", "hidden_dim", "width", "latent_dims", "cells", "likelihood",
                "gaussian_std", "free_bits")  # not dropout: checkpoints written before it existed load with 0

    in_channels: int = 1  # 1 (grey) or 3 (RGB)
    image_size: int = 28  # square images
    channels: tuple[int, ...] = (16, 32)  # stride-2 conv widths of the bottom-up path (and, reversed, the decoder)
    hidden_dim: int = 512  # the bottom-up feature vector, and the decoder's hidden layer
    width: int = 256  # the top-down state: a vector, updated by every group
    latent_dims: tuple[int, ...] = (32, 32, 64)  # size of each group's latent vector, top first
    cells: int = 1  # dense residual cells after each group on the top-down path
    likelihood: str = "bernoulli"  # p(x|z), one of losses.LIKELIHOODS
    gaussian_std: float = 0.1  # std of the Gaussian likelihood, in pixel units; unused otherwise
    free_bits: float = 0.0  # nats per group below which its batch-mean KL is not penalised in training (0: the ELBO)
    dropout: float = 0.0  # dropout in training on the top-down path's cells and its last state (0: none)

    def __post_init__(self) -> None:
        for name in ("channels", "latent_dims"):
            check(isinstance(getattr(self, name), (list, tuple)) and len(getattr(self, name)) >= 1, name,
                  getattr(self, name), "a tuple with at least one entry")
            object.__setattr__(self, name, tuple(getattr(self, name)))  # JSON gives lists back
        check(self.in_channels in CHANNEL_COUNTS, "in_channels", self.in_channels, f"one of {CHANNEL_COUNTS}")
        check_int(self.image_size, "image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        for width in self.channels:
            check_int(width, "channels", 1, 4096)
        check(self.image_size >> (len(self.channels) - 1) >= 2, "channels", self.channels,
              f"at most {int(math.log2(self.image_size))} stride-2 convolutions for image_size={self.image_size}")
        check_int(self.hidden_dim, "hidden_dim", 1, 65536)
        check_int(self.width, "width", 1, 4096)  # the decoder's input: a VAE decoder's latent_dim, at most 4,096
        check(len(self.latent_dims) <= 64, "latent_dims", self.latent_dims, "at most 64 groups")
        for dim in self.latent_dims:
            check_int(dim, "latent_dims", 1, 4096)
        check_int(self.cells, "cells", 0, 16)
        check(self.likelihood in LIKELIHOODS, "likelihood", self.likelihood, f"one of {LIKELIHOODS}")
        check_positive(self.gaussian_std, "gaussian_std")
        check(is_number(self.dropout) and 0 <= self.dropout < 1, "dropout", self.dropout, "a probability in [0, 1)")
        check(is_number(self.free_bits) and math.isfinite(self.free_bits) and self.free_bits >= 0, "free_bits",
              self.free_bits, "a finite number >= 0")

    def decoder_config(self) -> VAEConfig:
        """The VAE decoder that maps the last top-down state to p(x | z)'s parameters."""
        return VAEConfig(in_channels=self.in_channels, image_size=self.image_size, latent_dim=self.width,
                         channels=self.channels, hidden_dim=self.hidden_dim, likelihood=self.likelihood,
                         gaussian_std=self.gaussian_std)

    @classmethod
    def for_images(cls, image_size: int, in_channels: int, **overrides) -> "LadderConfig":
        """The VAE's conv widths for the image size (down to 4x4, 7x7 for 28); colour with the discretized
        logistic likelihood and twice the widths of the state and the latents."""
        base = VAEConfig.for_images(image_size, in_channels)
        colour = in_channels == 3
        defaults = dict(in_channels=in_channels, image_size=image_size, channels=base.channels,
                        likelihood=base.likelihood, **(dict(width=512, latent_dims=(64, 64, 128)) if colour else {}))
        return cls(**{**defaults, **overrides})

    @classmethod
    def for_dataset(cls, name: str, **overrides) -> "LadderConfig":
        """The preset for a named data set's image shape (see config.PRESETS); overrides win."""
        shape = preset(name)["model"]
        return cls.for_images(shape.get("image_size", 28), shape.get("in_channels", 1), **overrides)


class BottomUp(nn.Module):
    """The deterministic encoder path: the VAE encoder's strided convolutions, then a dense layer to one feature
    vector that every group's posterior reads."""

    def __init__(self, config: LadderConfig) -> None:
        super().__init__()
        widths = (config.in_channels, *config.channels)
        side = feature_sizes(config.image_size, len(config.channels))[-1]
        self.net = nn.Sequential(*(layer for a, b in zip(widths, widths[1:]) for layer in (nn.Conv2d(a, b, 4, 2, 1),
                                                                                             nn.SiLU())),
                                 nn.Flatten(), nn.Linear(config.channels[-1] * side * side, config.hidden_dim))

    def forward(self, x: Tensor) -> list[Tensor]:
        return [self.net(x)]  # one "level", as HVAE's top-down walk and IWAE evaluation take it


@register_model("ladder")
class LadderVAE(HVAE):
    """Top-down hierarchical VAE with groups of latent vectors on a dense state (Sønderby et al., 2016): every
    prior and posterior conditioned on the groups above; the VAE's conv encoder and decoder at either end."""

    config_class = LadderConfig

    def __init__(self, config: Optional[LadderConfig] = None, **overrides) -> None:
        nn.Module.__init__(self)  # HVAE's own blocks are not built: the ladder brings its own
        self.config = c = self._resolve_config(config, overrides)
        out_scale = 1 / math.sqrt(len(c.latent_dims) * max(1, c.cells))
        self.bottom_up = BottomUp(c)
        self.top = nn.Parameter(torch.zeros(1, c.width))  # the learned start of the path
        self.blocks = nn.ModuleList(GroupBlock(c.width, d, c.cells, out_scale, dense=True, features_width=c.hidden_dim,
                                               dropout=c.dropout) for d in c.latent_dims)
        self.drop = dropout_layer(c.dropout)  # on the last state, before p(x | z): a regulariser of the decoder
        self.out = Decoder(c.decoder_config())
        self.group_shapes = [(d,) for d in c.latent_dims]

    def group_names(self) -> list[str]:
        """A label per group, top first: its place and size (e.g. "#1 (32)")."""
        return [f"#{i + 1} ({d})" for i, d in enumerate(self.config.latent_dims)]

    def _walk(self, features: Optional[list[Tensor]], n: int, noise: list[Tensor], temperature: Sequence[float],
              posterior_groups: int, posterior_mean: bool = False) -> tuple[Tensor, list[Group]]:
        """The top-down path to its last state (B, width): the first posterior_groups groups from the posterior
        (features given), the rest from the prior at their temperatures."""
        h, groups = self.top.expand(n, -1), []
        for g, block in enumerate(self.blocks):
            h, group = block(h, features[0] if features is not None and g < posterior_groups else None,
                             noise[g].to(h.dtype), temperature[g], posterior_mean)
            groups.append(group)
        return self.drop(h), groups

    def _iwae_output(self) -> UnshuffledDecoder:
        """The decoder with its last transposed convolutions in sub-pixel form (the same numbers, faster)."""
        return unshuffled_decoder(self.out) if self.config.likelihood != "discretized-mix-logistic" else \
            UnshuffledDecoder(self.out, 1)
