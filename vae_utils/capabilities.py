"""What a model offers, as small protocols: the report and the plots ask these, never a model's kind.

Every generative family has `config`, `image_shape` (C, H, W) and `loss(x, config=None, epochs_done=0.0,
**options)`, returning a named tuple whose `total` training minimises (batch means, nats per image). Anything
more is optional, and each capability below unlocks part of `evaluation_report`:

| capability         | methods                                       | what the report adds                     |
|--------------------|-----------------------------------------------|------------------------------------------|
| ImportanceWeighted | log_importance_weights(x, k, generator, ...)  | IWAE NLL (Burda et al., 2015), bits/dim  |
| GaussianLatent     | posterior(x) -> (mu, logvar), decode(z),      | KL per dimension, active units (and the  |
|                    | latent_dim                                    | latent walks of latent.py)               |
| Sampler            | sample(n, generator), reconstruct(x)          | Fréchet distance, precision/recall,      |
|                    |                                               | class histogram of samples               |
| DiscreteCodes      | codes(x), codebook_size, grid_shape,          | codebook usage and perplexity, the bound |
|                    | uniform_prior_nats()                          | under a uniform prior                    |
| LearnedPrior       | log_prob(codes)                               | the prior's NLL of the codes, the bound  |
| Hierarchical       | kl_per_group(x), n_groups                     | KL per group of latents, active groups   |

A `bound` term among the loss terms (an upper bound on -log p(x), nats) gives bits/dim where no importance
weights do; a `likelihood` attribute (see losses.LIKELIHOODS) says whether bits/dim are defined at all.
"""
from __future__ import annotations

from typing import Optional, Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class ImportanceWeighted(Protocol):
    """log w_i = log p(x, z_i) - log q(z_i | x) for k samples per image: (B, k) nats."""

    def log_importance_weights(self, x: Tensor, k: int, generator: Optional[torch.Generator] = None, *,
                               check_range: bool = True, precision: str = "fp32") -> Tensor: ...


@runtime_checkable
class GaussianLatent(Protocol):
    """A diagonal Gaussian posterior over a latent vector, and a decoder from it."""

    latent_dim: int

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]: ...  # (mu, logvar), each (B, latent_dim)

    def decode(self, z: Tensor) -> Tensor: ...  # mean images (B, C, H, W) in [0, 1]


@runtime_checkable
class Sampler(Protocol):
    """New images from the model, and its reconstructions of given ones."""

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor: ...

    def reconstruct(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class DiscreteCodes(Protocol):
    """A grid of discrete codes per image, from a codebook of codebook_size entries."""

    codebook_size: int
    grid_shape: tuple[int, int]

    def codes(self, x: Tensor) -> Tensor: ...  # (B, *grid_shape) long

    def uniform_prior_nats(self) -> float: ...  # -log p(codes) of one image under a uniform prior


@runtime_checkable
class LearnedPrior(Protocol):
    """A prior fitted to the codes: log p(codes) in nats, one value per image."""

    def log_prob(self, codes: Tensor) -> Tensor: ...


@runtime_checkable
class Hierarchical(Protocol):
    """Groups of latent variables, each conditioned on those above it: the KL term of each, top group first."""

    n_groups: int

    def kl_per_group(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor: ...  # (B, n_groups)


def offers(model: object) -> list[str]:
    """The names of the capabilities model has, in the order of the table above."""
    return [p.__name__ for p in (ImportanceWeighted, GaussianLatent, Sampler, DiscreteCodes, LearnedPrior,
                                 Hierarchical) if isinstance(model, p)]
