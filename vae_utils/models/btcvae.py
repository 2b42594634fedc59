"""β-TCVAE (Chen et al., 2018): the KL term split into index-code mutual information, total correlation and
dimension-wise KL, the total correlation weighted by beta_tc, on the VAE's networks."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Collection, NamedTuple, Optional

import torch
from torch import Tensor

from ..config import TrainConfig, check, check_int, is_number
from ..importance import LOG_2PI, standard_normal_log_prob
from ..losses import kl_warmup_factor, reconstruction_loss
from ..registry import register_model
from .vae import VAE, VAEConfig


@dataclass(frozen=True)
class BetaTCVAEConfig(VAEConfig):
    """The VAE's architecture (every VAEConfig field) and the weights of the three parts of the KL term."""

    beta_tc: float = 6.0  # weight of the total correlation (Chen et al.'s beta; 6 in their dSprites runs); 1 = VAE
    alpha: float = 1.0  # weight of the index-code mutual information
    gamma: float = 1.0  # weight of the dimension-wise KL
    dataset_size: int = 60_000  # N of the minibatch-weighted estimator: the training set's size (the CLI sets it)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("beta_tc", "alpha", "gamma"):
            value = getattr(self, name)
            check(is_number(value) and math.isfinite(value) and value >= 0, name, value, "a finite number >= 0")
        check_int(self.dataset_size, "dataset_size", 1, 1 << 40)

    def for_training_set(self, n_images: int, given: Collection[str] = (), n_classes: int = 0) -> "BetaTCVAEConfig":
        """dataset_size = the training set's size, unless the user set it."""
        return self if "dataset_size" in given else replace(self, dataset_size=n_images)


class TCTerms(NamedTuple):
    """What `BetaTCVAE.loss` returns: batch means in nats per image."""

    total: Tensor  # recon + alpha * mi + beta_tc * tc + gamma * dwkl: what training minimises
    neg_elbo: Tensor  # recon + kl: the -ELBO of the same networks (picks best.pt)
    recon: Tensor  # -log p(x|z)
    kl: Tensor  # log q(z|x) - log p(z) at the sampled z = mi + tc + dwkl
    mi: Tensor  # index-code mutual information: log q(z|x) - log q(z)
    tc: Tensor  # total correlation: log q(z) - sum_d log q(z_d)
    dwkl: Tensor  # dimension-wise KL: sum_d log q(z_d) - log p(z)


ESTIMATORS = ("mws", "mss")  # Chen et al.'s minibatch-weighted and minibatch-stratified sampling (Sec. 4.1, App. C.2)


def stratified_log_weights(batch_size: int, dataset_size: int) -> Tensor:
    """(B, B) log importance weights of minibatch-stratified sampling (Chen et al., App. C.2), row i for z_i ~
    q(z|x_i): 1/N for x_i itself, (N - M)/(N M) for x_{i+1} (the stratum of the images outside the batch), 1/M for
    the other M - 1 (M = B - 1); each row sums to 1. (The reference's `log_importance_weight_matrix` strides by B
    where the diagonal needs B + 1, so its 1/N lands in the first column: these are the appendix's weights.)"""
    n, m = max(dataset_size, batch_size), batch_size - 1
    weights = torch.full((batch_size, batch_size), 1.0 / m, dtype=torch.float64)
    rows = torch.arange(batch_size)
    weights[rows, (rows + 1) % batch_size] = (n - m) / (n * m)
    weights[rows, rows] = 1.0 / n
    return weights.log().float()


def kl_decomposition(z: Tensor, mu: Tensor, logvar: Tensor, dataset_size: int, estimator: str = "mws"
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """(mi, tc, dwkl), each (B,), of samples z ~ q(z|x) (B, D), with the aggregate posterior q(z) estimated from the
    batch (Chen et al., 2018): "mws", minibatch-weighted sampling, q(z) ~ 1/(N B) sum_j q(z|x_j) (Sec. 4.1, the
    objective the reference trains); "mss", minibatch-stratified sampling (App. C.2), whose marginals stay sane at
    any batch size where MWS's sit log N too low in every dimension. They sum to log q(z|x) - log p(z) exactly."""
    check(estimator in ESTIMATORS, "estimator", estimator, f"one of {ESTIMATORS}")
    B = z.shape[0]
    z, mu, logvar = z.float(), mu.float(), logvar.float()
    log_qzd_x = -0.5 * ((z.unsqueeze(1) - mu.unsqueeze(0)).pow(2) * torch.exp(-logvar.unsqueeze(0))
                        + logvar.unsqueeze(0) + LOG_2PI)  # (B, B, D): log q(z_i,d | x_j)
    log_q_zx = log_qzd_x.diagonal(dim1=0, dim2=1).sum(0)  # (B,): log q(z_i | x_i)
    if estimator == "mws" or B == 1:
        log_w = torch.full((B, B), -math.log(dataset_size * B), device=z.device)
    else:
        log_w = stratified_log_weights(B, dataset_size).to(z.device)
    log_qz = torch.logsumexp(log_qzd_x.sum(2) + log_w, dim=1)  # (B,)
    log_prod_qzd = torch.logsumexp(log_qzd_x + log_w.unsqueeze(2), dim=1).sum(1)  # (B,)
    log_pz = standard_normal_log_prob(z)
    return log_q_zx - log_qz, log_qz - log_prod_qzd, log_prod_qzd - log_pz


@register_model("btcvae")
class BetaTCVAE(VAE):
    """A VAE whose objective weights the total correlation of the aggregate posterior by beta_tc (Chen et al.,
    2018): with beta_tc > 1 the latent dimensions are pushed towards independence (disentanglement) without
    weighting the mutual information between x and z, as a β-VAE's beta does. The three terms are reported."""

    config_class = BetaTCVAEConfig
    total_name = "objective"  # how `evaluate` names the total: not a bound unless every weight is 1
    best_metric = "neg_elbo"
    beta_refused = ("its loss weighs the KL's three parts by its own alpha, beta_tc and gamma (--alpha, --beta-tc, "
                    "--gamma; Chen et al.'s beta is beta_tc)")

    def loss(self, x: Tensor, config: Optional[TrainConfig] = None, epochs_done: float = 0.0,
             generator: Optional[torch.Generator] = None, check_range: bool = True,
             batch_rows: Optional[tuple[int, int]] = None) -> TCTerms:
        """recon + warm-up * (alpha MI + beta_tc TC + gamma dwKL), one sampled z per image (batch means). Training
        (gradients on) estimates the three terms as the reference trains, by minibatch-weighted sampling; evaluation
        (`evaluate`, under no_grad) by minibatch-stratified sampling, whose figures mean something at an evaluation
        batch of 1,000 (MWS's total correlation there runs to hundreds of nats, its dimension-wise KL as far below 0)."""
        c = self.config
        warmup = 1.0 if config is None else kl_warmup_factor(epochs_done, config.kl_warmup_epochs)
        mu, logvar = self.encode(x)  # (B, D)
        mu, logvar = mu.float(), logvar.float()  # z formed and log q(z|x) evaluated in fp32: under bf16 autocast a
        # rounded z biases the Monte Carlo KL (by about -1.3 nats/image at posterior sd 0.01)
        z = self.reparameterize(mu, logvar, generator, batch_rows)
        recon = reconstruction_loss(self.decoder(z), x, c.likelihood, c.gaussian_std, check_range).mean()
        estimator = "mws" if torch.is_grad_enabled() else "mss"
        mi, tc, dwkl = (t.mean() for t in kl_decomposition(z, mu, logvar, c.dataset_size, estimator))
        kl = mi + tc + dwkl
        total = recon + warmup * (c.alpha * mi + c.beta_tc * tc + c.gamma * dwkl)
        return TCTerms(total, (recon + kl).detach(), recon.detach(), kl.detach(), mi.detach(), tc.detach(),
                       dwkl.detach())
