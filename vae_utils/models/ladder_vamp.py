"""The dense ladder VAE with a VampPrior on its top group (Tomczak & Welling, 2018, Sec. 3.2, their two-level
HVAE; the Exemplar VAE paper's hierarchical rows): p(z_1) = (1/K) sum_k q(z_1 | u_k) over K learned pseudo-inputs,
the groups below conditioned as in the ladder."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..config import check_int
from ..losses import mean_image
from ..registry import register_model
from .hvae import Group, gaussian_log_prob
from .ladder import LadderConfig, LadderVAE
from .vamp import VampConfig, mixture_log_probs


@dataclass(frozen=True)
class LadderVampConfig(LadderConfig):
    """The ladder's architecture (every LadderConfig field) and the number of pseudo-inputs of the top prior."""

    pseudo_inputs: int = 500  # K, learned images whose posteriors make the prior (the paper's 500 for MNIST)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.pseudo_inputs, "pseudo_inputs", 1, 100_000)

    for_training_set = VampConfig.for_training_set  # refused when K exceeds the training images


@register_model("ladder-vamp")
class LadderVampVAE(LadderVAE):
    """The ladder with the VampPrior as p(z_1) of its top group: that group's KL (and its term of the importance
    weights) is log q(z_1|x) - log p(z_1) at the sample, the mixture's density by logsumexp; the lower groups' KLs
    stay analytic. `sample` draws a pseudo-input, its top-group posterior, then the ladder's priors below."""

    config_class = LadderVampConfig

    def __init__(self, config: Optional[LadderVampConfig] = None, **overrides) -> None:
        super().__init__(config, **overrides)
        # u_k = sigmoid(pseudo_logits_k): images in (0, 1), as the encoder expects; started near grey 0.5
        self.pseudo_logits = nn.Parameter(0.1 * torch.randn(self.config.pseudo_inputs, *self.image_shape))

    def _pseudo_features(self) -> Tensor:
        """The bottom-up features of every pseudo-input: (K, hidden_dim)."""
        return self.bottom_up(torch.sigmoid(self.pseudo_logits).to(self.top.dtype))[0]

    def pseudo_posteriors(self) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of the top group's q(z_1 | u_k) for every pseudo-input: (K, D_1) each, in fp32."""
        features = self._pseudo_features()
        k, width = len(features), self.config.width
        _, group = self.blocks[0](self.top.expand(k, width), features,
                                  torch.zeros(k, self.config.latent_dims[0], device=features.device),
                                  posterior_mean=True)
        return group.q_mu.float(), group.q_logvar.float()

    def log_top_prior(self, z: Tensor, components: Optional[tuple[Tensor, Tensor]] = None) -> Tensor:
        """log p(z_1) = logsumexp_k log q(z_1 | u_k) - log K for z (..., D_1): (...,) nats."""
        mu, logvar = self.pseudo_posteriors() if components is None else components
        return torch.logsumexp(mixture_log_probs(z.float(), mu, logvar), dim=-1) - math.log(len(mu))

    def _group_kls(self, groups: list[Group]) -> Tensor:
        """The ladder's analytic KLs below the top; the top group's by one sample against the mixture."""
        top, z = groups[0], _fp32_sample(groups[0])
        kl_top = gaussian_log_prob(z, top.q_mu, top.q_logvar) - self.log_top_prior(z)
        return torch.cat([kl_top[:, None], super()._group_kls(groups[1:])], dim=1) if len(groups) > 1 else \
            kl_top[:, None]

    def _log_ratio(self, groups: list[Group]) -> Tensor:
        """The ladder's log p - log q below the top; the top group's with the mixture as its prior."""
        top, z = groups[0], _fp32_sample(groups[0])
        ratio = self.log_top_prior(z) - gaussian_log_prob(z, top.q_mu, top.q_logvar)
        return ratio + super()._log_ratio(groups[1:]) if len(groups) > 1 else ratio

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None,
               temperature: Union[float, Sequence[float]] = 1.0) -> Tensor:
        """n images (n, C, H, W) in [0, 1]: a pseudo-input drawn uniformly, the top group from its posterior, the
        groups below from their priors at their temperatures (the top group's is not scaled)."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n={n!r}: expected a positive number of samples")
        temperatures = self._temperatures(temperature)
        if generator is not None and generator.device != self.top.device:
            raise ValueError(f"generator is on {generator.device} but the model is on {self.top.device}")
        which = torch.randint(self.config.pseudo_inputs, (n,), generator=generator, device=self.top.device)
        noise = self._noise(n, generator)
        logits, _ = self._top_down([self._pseudo_features()[which]], n, noise, temperatures, 1)
        return mean_image(logits, self.config.likelihood)


def _fp32_sample(group: Group) -> Tensor:
    """The group's sample formed again in fp32 from its noise: under bf16 autocast the block's own z is rounded, and
    a Monte Carlo log-density at a rounded z is biased where the posterior is narrow (about -1.3 nats/image at sd
    0.01; the VampPrior's and the β-TCVAE's losses form theirs in fp32 for the same reason)."""
    return group.q_mu.float() + torch.exp(0.5 * group.q_logvar.float()) * group.eps.float()
