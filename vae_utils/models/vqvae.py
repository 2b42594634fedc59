"""The VQ-VAE (van den Oord et al., 2017): a grid of discrete codes, an EMA codebook that restarts dead codes."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..config import (CHANNEL_COUNTS, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, Config, TrainConfig, check, check_int,
                      check_positive, is_number)
from ..distributed import all_reduce_sum, broadcast_tensor, gather_objects, world_size
from ..losses import LIKELIHOODS, decoder_channels, mean_image, reconstruction_loss
from ..nets import ResBlock, check_images
from ..hub import HubMixin
from ..registry import register_model


@dataclass(frozen=True)
class VQVAEConfig(Config):
    """Architecture of the VQ-VAE (van den Oord et al., 2017): conv encoder to a grid of codes, EMA codebook."""

    in_channels: int = 1  # 1 (grey) or 3 (RGB)
    image_size: int = 28  # square images; each stride-2 conv halves it: 28 -> 14 -> 7, a 7x7 grid of codes
    channels: tuple[int, ...] = (32, 64)  # stride-2 conv widths, encoder order
    res_blocks: int = 1  # residual blocks at the grid's resolution, in the encoder and the decoder
    codebook_size: int = 128  # K, entries of the codebook
    code_dim: int = 16  # D, size of each entry (and of the encoder's output per grid cell)
    commitment: float = 0.25  # beta of the commitment loss ||z_e - sg(e)||^2 (the paper's 0.25)
    ema_decay: float = 0.99  # gamma of the exponential moving averages that update the codebook
    ema_epsilon: float = 1e-5  # Laplace smoothing of the EMA counts (no division by zero for unused codes)
    dead_code_steps: int = 100  # a code no image used for this many training steps is restarted; 0 = never
    likelihood: str = "bernoulli"  # p(x|codes), one of losses.LIKELIHOODS (as the VAE's)
    gaussian_std: float = 0.1  # std of the Gaussian likelihood, in pixel units; unused otherwise

    def __post_init__(self) -> None:
        check(isinstance(self.channels, (list, tuple)), "channels", self.channels, "a tuple of conv widths")
        object.__setattr__(self, "channels", tuple(self.channels))
        check(self.in_channels in CHANNEL_COUNTS, "in_channels", self.in_channels, f"one of {CHANNEL_COUNTS}")
        check_int(self.image_size, "image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        check(len(self.channels) >= 1, "channels", self.channels, "at least one conv width")
        for width in self.channels:
            check_int(width, "channels", 1, 4096)
        check(self.image_size >> len(self.channels) >= 1, "channels", self.channels,
               f"at most {int(math.log2(self.image_size))} stride-2 convolutions for image_size={self.image_size}")
        check_int(self.res_blocks, "res_blocks", 0, 16)
        check_int(self.codebook_size, "codebook_size", 2, 65536)
        check_int(self.code_dim, "code_dim", 1, 4096)
        check(is_number(self.commitment) and self.commitment >= 0 and math.isfinite(self.commitment),
               "commitment", self.commitment, "a finite number >= 0")
        check(is_number(self.ema_decay) and 0 <= self.ema_decay < 1, "ema_decay", self.ema_decay,
               "a number in [0, 1)")
        check_positive(self.ema_epsilon, "ema_epsilon")
        check_int(self.dead_code_steps, "dead_code_steps", 0, 1 << 40)
        check(self.likelihood in LIKELIHOODS, "likelihood", self.likelihood, f"one of {LIKELIHOODS}")
        check_positive(self.gaussian_std, "gaussian_std")

    @property
    def grid_size(self) -> int:
        """Side of the grid of codes (image_size halved once per stride-2 conv, rounding down)."""
        return self.image_size >> len(self.channels)

    @classmethod
    def for_images(cls, image_size: int, in_channels: int, **overrides) -> "VQVAEConfig":
        """Stride-2 stages down to a grid of at most 8x8 codes (7x7 for 28), the likelihood of the VAE's preset."""
        check_int(image_size, "image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        stages = max(1, math.ceil(math.log2(image_size / 8)))  # 28 -> 2 (7x7), 32 -> 2 (8x8), 64 -> 3 (8x8)
        colour = in_channels == 3
        defaults = dict(in_channels=in_channels, image_size=image_size, channels=tuple(min(32 << i, 256) for i in
                        range(stages)), codebook_size=512 if colour else 128, code_dim=32 if colour else 16,
                        likelihood="discretized-logistic" if colour else "bernoulli")
        return cls(**{**defaults, **overrides})


class VQTerms(NamedTuple):
    """What `VQVAE.loss` returns: batch means, nats per image except `commitment` (squared distance per image)."""

    total: Tensor  # what training minimises: recon + commitment * commitment term
    recon: Tensor  # -log p(x | codes), the decoder's likelihood of the images given their codes
    commitment: Tensor  # ||z_e - sg(e)||^2 summed over the grid
    bound: Tensor  # recon + grid cells * log K: -log p(x) under a uniform prior over codes (no gradient)


class Codebook(nn.Module):
    """K vectors of size D, updated by exponential moving averages of the encoder outputs assigned to them.

    Buffers, not parameters (Adam never touches them): `embedding` (K, D), the EMA statistics `ema_count` (K,) and
    `ema_sum` (K, D), `idle_steps` (K,), training steps since each code was last used, and `initialized`: the
    first training step puts the entries on random encoder outputs of its batch, so that no code starts out of
    the encoder's range (the usual cause of a collapsed codebook).
    """

    def __init__(self, size: int, dim: int, decay: float = 0.99, epsilon: float = 1e-5, dead_code_steps: int = 100
                 ) -> None:
        super().__init__()
        self.size, self.dim, self.decay, self.epsilon, self.dead_code_steps = size, dim, decay, epsilon, dead_code_steps
        embedding = torch.randn(size, dim) / math.sqrt(dim)
        self.register_buffer("embedding", embedding)
        self.register_buffer("ema_count", torch.ones(size))
        self.register_buffer("ema_sum", embedding.clone())
        self.register_buffer("idle_steps", torch.zeros(size, dtype=torch.long))
        self.register_buffer("initialized", torch.tensor(False))

    def nearest(self, z: Tensor) -> Tensor:
        """Index of the nearest entry (Euclidean) for each row of z (N, D): (N,) long."""
        e = self.embedding
        distances = z.pow(2).sum(1, keepdim=True) - 2 * z @ e.t() + e.pow(2).sum(1)  # (N, K)
        return distances.argmin(1)

    def lookup(self, codes: Tensor) -> Tensor:
        """The entries of codes (any shape): (*codes.shape, D)."""
        return F.embedding(codes, self.embedding)

    @torch.no_grad()
    def update(self, z: Tensor, codes: Tensor) -> None:
        """One EMA step from encoder outputs z (N, D) assigned to codes (N,); restarts codes idle too long.

        N_k <- g N_k + (1 - g) n_k,  m_k <- g m_k + (1 - g) sum of z assigned to k,  e_k = m_k / N~_k, with N~_k
        the Laplace-smoothed count (van den Oord et al., 2017, App. A.1). Under torchrun n_k and the sums are
        all-reduced first, so every process holds the same codebook.
        """
        z = z.float()
        if not self.initialized:
            self.restart(torch.arange(self.size, device=z.device), z)
            self.initialized.fill_(True)
            codes = self.nearest(z)
        counts = torch.zeros(self.size, device=z.device).index_add_(0, codes, torch.ones_like(codes, dtype=z.dtype))
        sums = torch.zeros(self.size, self.dim, device=z.device).index_add_(0, codes, z)
        if world_size() > 1:
            packed = all_reduce_sum(torch.cat([counts[:, None], sums], 1))
            counts, sums = packed[:, 0], packed[:, 1:]
        g = self.decay
        self.ema_count.mul_(g).add_(counts, alpha=1 - g)
        self.ema_sum.mul_(g).add_(sums, alpha=1 - g)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.epsilon) / (n + self.size * self.epsilon) * n
        self.embedding.copy_(self.ema_sum / smoothed[:, None])
        self.idle_steps.add_(1).masked_fill_(counts > 0, 0)
        if self.dead_code_steps:
            self.restart_dead(z)

    @torch.no_grad()
    def restart_dead(self, z: Tensor) -> int:
        """Restart every code idle for dead_code_steps training steps on a recent encoder output; return how many."""
        dead = (self.idle_steps >= self.dead_code_steps).nonzero().flatten()
        if len(dead):  # the same on every rank: idle_steps follow the all-reduced counts
            self.restart(dead, z)
        return len(dead)

    @torch.no_grad()
    def restart(self, codes: Tensor, z: Tensor) -> None:
        """Move the entries of codes onto random rows of z (N, D), with an EMA count of 1 so that the next updates
        pull them towards the images they win. Under torchrun the rows come from the whole global batch (every
        rank's z, gathered in rank order: the batch one process would see), drawn on rank 0 and broadcast."""
        if world_size() > 1:
            z = torch.cat([part.to(z.device) for part in gather_objects(z.detach().cpu())])
        rows = torch.randint(len(z), (len(codes),), device=z.device)
        fresh = broadcast_tensor(z[rows].float().contiguous())
        self.embedding[codes] = fresh
        self.ema_sum[codes] = fresh
        self.ema_count[codes] = 1.0
        self.idle_steps[codes] = 0


class VQEncoder(nn.Module):
    """Stride-2 convolutions, residual blocks, then a 1x1 conv to code_dim channels: (B, D, g, g)."""

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        widths = (config.in_channels, *config.channels)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.SiLU()]
        layers += [ResBlock(widths[-1]) for _ in range(config.res_blocks)]
        layers += [nn.SiLU(), nn.Conv2d(widths[-1], config.code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class VQDecoder(nn.Module):
    """A 1x1 conv from code_dim channels, residual blocks, then transposed convolutions to image logits."""

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        sizes = [config.image_size >> i for i in range(len(config.channels) + 1)]  # e.g. [28, 14, 7]
        widths = (*reversed(config.channels), decoder_channels(config.likelihood, config.in_channels))
        layers: list[nn.Module] = [nn.Conv2d(config.code_dim, widths[0], 3, 1, 1)]
        layers += [ResBlock(widths[0]) for _ in range(config.res_blocks)]
        for i, (c_in, c_out) in enumerate(zip(widths, widths[1:])):
            n_in, n_out = sizes[-1 - i], sizes[-2 - i]
            layers += [nn.SiLU(), nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, output_padding=n_out - 2 * n_in)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


@register_model("vqvae")
class VQVAE(HubMixin, nn.Module):
    """Vector-quantised VAE: encoder -> nearest codebook entries (straight-through) -> decoder.

    Alone it is an autoencoder with a uniform prior over codes; `CodePrior` learns p(codes) and samples.
    """

    config_class = VQVAEConfig
    total_name = "objective"  # how `evaluate` names the `total` term
    best_metric = "bound"  # the validation metric that picks best.pt
    beta_refused = "a VQ-VAE has no KL term (its commitment loss is weighed by --commitment)"

    def __init__(self, config: Optional[VQVAEConfig] = None, **overrides) -> None:
        super().__init__()
        config = VQVAEConfig(**{**(config.to_dict() if config is not None else {}), **overrides})
        self.config = config
        self.encoder = VQEncoder(config)
        self.codebook = Codebook(config.codebook_size, config.code_dim, config.ema_decay, config.ema_epsilon,
                                 config.dead_code_steps)
        self.decoder = VQDecoder(config)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images this model takes and makes."""
        c = self.config
        return (c.in_channels, c.image_size, c.image_size)

    @property
    def likelihood(self) -> str:
        """p(x|codes), one of losses.LIKELIHOODS."""
        return self.config.likelihood

    @property
    def codebook_size(self) -> int:
        """K, the entries of the codebook."""
        return self.config.codebook_size

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(g, g): the grid of codes of one image."""
        return (self.config.grid_size, self.config.grid_size)

    def encode(self, x: Tensor) -> Tensor:
        """Encoder outputs z_e (B, D, g, g) of images x (B, C, H, W) in [0, 1], before quantisation."""
        check_images(self, x)
        return self.encoder(x)

    def quantize(self, z_e: Tensor) -> Tensor:
        """The codes (B, g, g) of encoder outputs z_e (B, D, g, g): nearest entries, distances in fp32."""
        B, D, h, w = z_e.shape
        flat = z_e.float().permute(0, 2, 3, 1).reshape(-1, D)
        return self.codebook.nearest(flat).view(B, h, w)

    @torch.no_grad()
    def codes(self, x: Tensor) -> Tensor:
        """The codes (B, g, g) of images x."""
        return self.quantize(self.encode(x))

    def decode_logits(self, codes: Tensor) -> Tensor:
        """Decoder output for codes (B, g, g): logits (B, C, H, W), or (B, 2C, H, W) for the logistic."""
        if codes.dim() != 3 or tuple(codes.shape[1:]) != self.grid_shape:
            raise ValueError(f"expected codes of shape (B, {self.config.grid_size}, {self.config.grid_size}), got "
                             f"{tuple(codes.shape)}")
        return self.decoder(self.codebook.lookup(codes).permute(0, 3, 1, 2))

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """Mean image (B, C, H, W) in [0, 1] of p(x | codes)."""
        return mean_image(self.decode_logits(codes), self.config.likelihood)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Encode, quantise and decode x: (B, C, H, W) in [0, 1]."""
        return self.decode(self.codes(x))

    def uniform_prior_nats(self) -> float:
        """-log p(codes) of one image under a uniform prior: grid cells * log K."""
        return self.config.grid_size ** 2 * math.log(self.config.codebook_size)

    def loss(self, x: Tensor, config: Optional[TrainConfig] = None, epochs_done: float = 0.0,
             generator: Optional[torch.Generator] = None, check_range: bool = True,
             batch_rows: Optional[tuple[int, int]] = None) -> VQTerms:
        """Reconstruction + commitment loss of images x; in training mode with gradients, one EMA codebook step.

        The decoder sees z_e + sg(e - z_e): its value is the codebook entry e, its gradient reaches the encoder
        unchanged (the straight-through estimator). config, epochs_done, generator and batch_rows are accepted
        for the trainer's sake; nothing here is random or scheduled.
        """
        z_e = self.encode(x)  # (B, D, g, g)
        codes = self.quantize(z_e)
        e = self.codebook.lookup(codes).permute(0, 3, 1, 2).to(z_e.dtype)
        z_q = z_e + (e - z_e).detach()
        logits = self.decoder(z_q)
        c = self.config
        recon = reconstruction_loss(logits, x, c.likelihood, c.gaussian_std, check_range).mean()
        commitment = (z_e.float() - e.float()).pow(2).sum((1, 2, 3)).mean()
        if self.training and torch.is_grad_enabled():
            self.codebook.update(z_e.detach().permute(0, 2, 3, 1).reshape(-1, c.code_dim), codes.flatten())
        bound = recon.detach() + self.uniform_prior_nats()
        return VQTerms(recon + c.commitment * commitment, recon, commitment, bound)
