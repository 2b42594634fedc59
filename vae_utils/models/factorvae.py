"""FactorVAE (Kim & Mnih, 2018): the VAE's objective plus gamma times the total correlation of the aggregate
posterior, estimated by a discriminator that tells codes z ~ q(z) from codes whose dimensions were shuffled
independently across the batch (samples of prod_d q(z_d))."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ..config import TrainConfig, check, check_int, check_positive, is_number
from ..losses import kl_divergence, kl_warmup_factor, reconstruction_loss
from ..registry import register_model
from .vae import VAE, VAEConfig


@dataclass(frozen=True)
class FactorVAEConfig(VAEConfig):
    """The VAE's architecture (every VAEConfig field), the total correlation's weight and the discriminator."""

    gamma: float = 35.0  # weight of the total correlation, estimated by the discriminator (Kim & Mnih's dSprites value)
    disc_hidden: int = 1000  # units in each hidden layer of the discriminator (the paper's 1000)
    disc_layers: int = 6  # its linear layers, leaky ReLU 0.2 between them (the paper's 6)
    disc_lr: float = 1e-4  # the discriminator's Adam step, betas (0.5, 0.9) as the paper's; the run's schedule scales it

    def __post_init__(self) -> None:
        super().__post_init__()
        check(is_number(self.gamma) and math.isfinite(self.gamma) and self.gamma >= 0, "gamma", self.gamma,
              "a finite number >= 0")
        check_int(self.disc_hidden, "disc_hidden", 1, 65536)
        check_int(self.disc_layers, "disc_layers", 2, 64)
        check_positive(self.disc_lr, "disc_lr")


class FactorTerms(NamedTuple):
    """What `FactorVAE.loss` returns: batch means, nats per image where they are nats."""

    total: Tensor  # recon + beta * kl + gamma * tc + disc_loss: what one step minimises (disjoint parameters)
    neg_elbo: Tensor  # recon + kl: the -ELBO (picks best.pt)
    recon: Tensor  # -log p(x|z)
    kl: Tensor  # KL(q(z|x) || N(0, I)), analytic
    tc: Tensor  # the discriminator's estimate of the total correlation: mean logit of D at z ~ q(z|x)
    disc_loss: Tensor  # the discriminator's cross-entropy on the batch's codes and their shuffled copy
    disc_accuracy: Tensor  # the share of those codes it labels right (0.5: it cannot tell them apart)


def shuffle_dimensions(z: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """z (B, D) with each dimension permuted independently across the batch (Kim & Mnih, Algorithm 2): samples
    of prod_d q(z_d) when z holds samples of q(z). As disentanglement_lib, the batch whose codes train the VAE is
    the one shuffled (the paper draws a second batch)."""
    order = torch.rand(z.shape, generator=generator, device=z.device).argsort(dim=0)  # (B, D): a permutation each
    return z.gather(0, order)


@register_model("factorvae")
class FactorVAE(VAE):
    """A VAE whose objective adds gamma * TC(z), the total correlation estimated as E_q(z)[log D(z) / (1 - D(z))]
    by a discriminator trained, in the same step with its own Adam settings, to tell codes from shuffled codes."""

    config_class = FactorVAEConfig
    total_name = "objective"
    best_metric = "neg_elbo"

    def __init__(self, config: Optional[FactorVAEConfig] = None, **overrides) -> None:
        super().__init__(config, **overrides)
        c = self.config
        widths = [c.latent_dim] + [c.disc_hidden] * (c.disc_layers - 1)
        layers: list[nn.Module] = []
        for n_in, n_out in zip(widths, widths[1:]):
            layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2)]
        self.discriminator = nn.Sequential(*layers, nn.Linear(widths[-1], 1))  # logit of "z ~ q(z)"

    def parameter_groups(self, lr: float) -> list[dict]:
        """The optimiser's groups: the VAE at the run's lr, the discriminator at disc_lr with the paper's betas."""
        discriminator = set(map(id, self.discriminator.parameters()))
        return [{"params": [p for p in self.parameters() if id(p) not in discriminator], "lr": lr},
                {"params": list(self.discriminator.parameters()), "lr": self.config.disc_lr, "betas": (0.5, 0.9)}]

    def loss(self, x: Tensor, config: Optional[TrainConfig] = None, epochs_done: float = 0.0,
             generator: Optional[torch.Generator] = None, check_range: bool = True,
             batch_rows: Optional[tuple[int, int]] = None) -> FactorTerms:
        """The VAE's terms + gamma * TC (the discriminator's weights held fixed) + the discriminator's loss (the
        codes held fixed): one backward pass gives each part the gradient of its own objective."""
        c = self.config
        beta = 1.0 if config is None else config.beta * kl_warmup_factor(epochs_done, config.kl_warmup_epochs)
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu.float(), logvar.float(), generator, batch_rows)  # (B, D)
        recon = reconstruction_loss(self.decoder(z), x, c.likelihood, c.gaussian_std, check_range).mean()
        kl = kl_divergence(mu, logvar).mean()
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        tc = functional_call(self.discriminator, frozen, (z,)).float().mean()
        codes, shuffled = z.detach(), shuffle_dimensions(z.detach(), generator)
        real, fake = self.discriminator(codes).float(), self.discriminator(shuffled).float()  # (B, 1) logits
        disc_loss = 0.5 * (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                           + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        accuracy = 0.5 * ((real > 0).float().mean() + (fake < 0).float().mean())
        return FactorTerms(recon + beta * kl + c.gamma * tc + disc_loss, (recon + kl).detach(), recon.detach(),
                           kl.detach(), tc.detach(), disc_loss.detach(), accuracy)

    def skip_noise(self, n: int, generator: Optional[torch.Generator] = None, samples: int = 1) -> None:
        """Draw, and drop, what `loss` (z, then the shuffle) or `log_importance_weights` draw for n images."""
        super().skip_noise(n, generator, samples)
        if samples == 1:
            torch.rand((n, self.latent_dim), generator=generator, device=next(self.parameters()).device)
