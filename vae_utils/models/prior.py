"""A learned prior over a VQ-VAE's codes: a small causal transformer that makes the VQ-VAE a generative model."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..config import Config, TrainConfig, check, check_int, is_number
from ..losses import reconstruction_loss
from ..hub import HubMixin
from ..registry import register_model
from .vqvae import VQVAE, VQVAEConfig


@dataclass(frozen=True)
class PriorConfig(Config):
    """A causal transformer over a VQ-VAE's grid of codes, in raster order; it holds the VQ-VAE's config."""

    vqvae: VQVAEConfig = field(default_factory=VQVAEConfig)  # the (frozen) VQ-VAE whose codes it models
    width: int = 64  # model width of the transformer (128 wide, 4 deep: 2.5x the time per epoch here)
    layers: int = 3  # transformer blocks
    heads: int = 4  # attention heads; must divide width
    dropout: float = 0.1  # dropout in attention and MLP while training

    def __post_init__(self) -> None:
        if isinstance(self.vqvae, dict):
            object.__setattr__(self, "vqvae", VQVAEConfig.from_dict(self.vqvae, complete=True))
        check(isinstance(self.vqvae, VQVAEConfig), "vqvae", self.vqvae, "a VQVAEConfig")
        check_int(self.width, "width", 1, 8192)
        check_int(self.layers, "layers", 1, 64)
        check_int(self.heads, "heads", 1, 256)
        check(self.width % self.heads == 0, "heads", self.heads, f"a divisor of width={self.width}")
        check(is_number(self.dropout) and 0 <= self.dropout < 1, "dropout", self.dropout, "a number in [0, 1)")


class PriorTerms(NamedTuple):
    """What `CodePrior.loss` returns: batch means in nats per image."""

    total: Tensor  # -log p(codes) under the prior: what training minimises
    recon: Tensor  # -log p(x | codes) of the frozen VQ-VAE (no gradient)
    bound: Tensor  # total + recon >= -log p(x): the generative model's bound (no gradient)


class CausalTransformer(nn.Module):
    """Logits of each code given the codes before it in raster order: position i never sees i or later."""

    def __init__(self, vocab: int, length: int, width: int, layers: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.start = nn.Parameter(torch.zeros(width))  # the input at position 0, before any code
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.randn(length, width) * 0.02)
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(length), persistent=False)

    def forward(self, codes: Tensor) -> Tensor:
        """codes (B, L) long -> logits (B, L, K); position i depends on codes[:, :i] only."""
        B, L = codes.shape
        shifted = torch.cat([self.start.expand(B, 1, -1), self.embed(codes[:, :-1])], 1)  # input i = code i-1
        h = self.blocks(shifted + self.position[:L], mask=self.mask[:L, :L], is_causal=True)
        return self.head(self.norm(h))


@register_model("vqvae-prior")
class CodePrior(HubMixin, nn.Module):
    """p(codes) of a VQ-VAE as an autoregressive transformer; with the VQ-VAE inside, it samples images.

    The VQ-VAE is frozen (its weights travel in the same checkpoint, so the file alone rebuilds the generative
    model); training fits the transformer to the codes of the training images.
    """

    config_class = PriorConfig
    total_name = "prior_nll"  # how `evaluate` names the `total` term
    best_metric = "bound"  # the validation metric that picks best.pt
    beta_refused = "a code prior has no KL term"

    def __init__(self, config: Optional[PriorConfig] = None, **overrides) -> None:
        super().__init__()
        config = PriorConfig(**{**(config.to_dict() if config is not None else {}), **overrides})
        self.config = config
        self.vqvae = VQVAE(config.vqvae).requires_grad_(False)
        g = config.vqvae.grid_size
        self.net = CausalTransformer(config.vqvae.codebook_size, g * g, config.width, config.layers, config.heads,
                                     config.dropout)

    @classmethod
    def for_vqvae(cls, vqvae: VQVAE, **overrides) -> "CodePrior":
        """A fresh prior over the codes of this trained VQ-VAE (whose weights it copies)."""
        prior = cls(PriorConfig(vqvae=vqvae.config, **overrides))
        prior.vqvae.load_state_dict(vqvae.state_dict())
        return prior.to(next(vqvae.parameters()).device)

    def train(self, mode: bool = True) -> "CodePrior":
        """Training mode for the transformer; the frozen VQ-VAE stays in eval mode (its codebook never moves)."""
        super().train(mode)
        self.vqvae.eval()
        return self

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images this model takes and makes."""
        return self.vqvae.image_shape

    @property
    def likelihood(self) -> str:
        """The VQ-VAE's p(x|codes)."""
        return self.vqvae.likelihood

    @property
    def codebook_size(self) -> int:
        """K, the entries of the VQ-VAE's codebook."""
        return self.vqvae.codebook_size

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(g, g): the grid of codes of one image."""
        return self.vqvae.grid_shape

    @torch.no_grad()
    def codes(self, x: Tensor) -> Tensor:
        """The VQ-VAE's codes (B, g, g) of images x."""
        return self.vqvae.codes(x)

    def uniform_prior_nats(self) -> float:
        """-log p(codes) of one image under a uniform prior (what the learned prior improves on)."""
        return self.vqvae.uniform_prior_nats()

    def code_logits(self, codes: Tensor) -> Tensor:
        """Logits (B, g*g, K) of each code given the earlier ones (raster order), for codes (B, g, g)."""
        return self.net(codes.flatten(1))

    def log_prob(self, codes: Tensor) -> Tensor:
        """log p(codes) in nats, one value per grid of codes (B, g, g)."""
        flat = codes.flatten(1)
        logits = self.net(flat).float()
        return -F.cross_entropy(logits.transpose(1, 2), flat, reduction="none").sum(1)

    def loss(self, x: Tensor, config: Optional[TrainConfig] = None, epochs_done: float = 0.0,
             generator: Optional[torch.Generator] = None, check_range: bool = True,
             batch_rows: Optional[tuple[int, int]] = None) -> PriorTerms:
        """-log p(codes of x) under the prior, plus the VQ-VAE's -log p(x | codes) and their sum, the bound."""
        with torch.no_grad():
            codes = self.vqvae.codes(x)
            c = self.vqvae.config
            recon = reconstruction_loss(self.vqvae.decode_logits(codes), x, c.likelihood, c.gaussian_std,
                                        check_range).mean()
        nll = -self.log_prob(codes).mean()
        return PriorTerms(nll, recon, nll.detach() + recon)

    @torch.no_grad()
    def sample_codes(self, n: int, temperature: float = 1.0, generator: Optional[torch.Generator] = None) -> Tensor:
        """n grids of codes (n, g, g) drawn one position at a time from the prior, logits divided by temperature."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n={n!r}: expected a positive number of samples")
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature={temperature!r}: expected a number > 0 (1 samples the prior itself)")
        device = self.net.position.device
        if generator is not None and generator.device != device:
            raise ValueError(f"generator is on {generator.device} but the model is on {device}")
        g = self.vqvae.config.grid_size
        was_training = self.training
        self.eval()
        codes = torch.zeros(n, g * g, dtype=torch.long, device=device)
        try:
            for i in range(g * g):  # position i sees codes[:, :i] only: the prefix up to i is all it needs
                logits = self.net(codes[:, :i + 1])[:, i].float() / temperature
                codes[:, i] = torch.multinomial(F.softmax(logits, -1), 1, generator=generator).squeeze(1)
        finally:
            self.train(was_training)
        return codes.view(n, g, g)

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None, temperature: float = 1.0) -> Tensor:
        """n images (n, C, H, W) in [0, 1]: codes from the prior, decoded by the VQ-VAE."""
        return self.vqvae.decode(self.sample_codes(n, temperature, generator))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The VQ-VAE's reconstruction of x."""
        return self.vqvae.reconstruct(x)
