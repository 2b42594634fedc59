"""The negative ELBO and its two terms, in nats per image."""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import ContinuousBernoulli

LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "gaussian", "discretized-logistic", "discretized-mix-logistic")
# ^ p(x|z), see reconstruction_loss
DISCRETE_LIKELIHOODS = ("discretized-logistic", "discretized-mix-logistic")  # probabilities of 8-bit values
LOG_SCALE_MIN = -7.0  # discretized logistic: scales below e^-7 (a thousandth of a grey level) are clamped
MIX_COMPONENTS = 10  # logistics in the discretized mixture (PixelCNN++, VDVAE and NVAE use 10)


class LossTerms(NamedTuple):
    """Batch means of the per-image terms, in nats per image: total = recon + beta * kl."""

    total: Tensor
    recon: Tensor
    kl: Tensor


def kl_per_dim(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) of each latent dimension: (B, latent_dim) in nats."""
    # Kingma & Welling (2013), Appendix B: -KL = 1/2 * sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)
    mu, logvar = mu.float(), logvar.float()  # accumulate in fp32 under autocast
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image, summed over latent dims: (B,) in nats."""
    return kl_per_dim(mu, logvar).sum(dim=1)


def check_unit_range(x: Tensor, likelihood: str = "bernoulli") -> None:
    """Raise ValueError unless every value of x lies in [0, 1] (what every likelihood but the Gaussian assumes)."""
    lo, hi = torch.aminmax(x.detach())
    if lo < 0 or hi > 1 or not (torch.isfinite(lo) and torch.isfinite(hi)):
        raise ValueError(f"images must lie in [0, 1] for the {likelihood} likelihood, got values in "
                         f"[{lo.item():.4g}, {hi.item():.4g}]; rescale them (e.g. x / 255) or normalise differently")


def decoder_channels(likelihood: str, in_channels: int) -> int:
    """Channels of the decoder's output: one parameter per sub-pixel, two (mean, log-scale) for the logistic; for
    the mixture, per component a weight, C means, C log-scales and C(C-1)/2 channel coefficients (PixelCNN++)."""
    if likelihood == "discretized-mix-logistic":
        return MIX_COMPONENTS * (1 + 2 * in_channels + in_channels * (in_channels - 1) // 2)
    return 2 * in_channels if likelihood == "discretized-logistic" else in_channels


def reconstruction_loss(
    x_logits: Tensor, x: Tensor, likelihood: str = "bernoulli", gaussian_std: float = 0.1, check_range: bool = True
) -> Tensor:
    """-log p(x|z) per image, summed over pixels: (B,) in nats.

    - "bernoulli": BCE from logits (PyTorch's example's convention). A likelihood of binary images; on grey levels
      it is not normalised, so its values are not log-likelihoods and have no bits/dim.
    - "continuous-bernoulli": the normalised density on [0, 1] of Loaiza-Ganem & Cunningham (2019)
      (`torch.distributions.ContinuousBernoulli`); nats of a density, which can be negative.
    - "gaussian": N(x; sigmoid(logits), gaussian_std^2) per sub-pixel, a density.
    - "discretized-logistic": the probability of each 8-bit sub-pixel value under a logistic with the decoder's
      mean and learned scale, integrated over its bin (Salimans et al., 2017; Kingma et al., 2016); x_logits holds
      (means, log-scales) on 2C channels. A discrete likelihood: bits/dim on the 256-level scale.
    - "discretized-mix-logistic": a mixture of MIX_COMPONENTS such logistics per pixel, the colour channels of
      each coupled linearly (PixelCNN++, Salimans et al., 2017, Sec. 2.2; the likelihood of VDVAE and NVAE).
    """
    if not isinstance(x_logits, Tensor) or not isinstance(x, Tensor):
        raise ValueError(f"expected two tensors (logits, images), got {type(x_logits).__name__} and "
                         f"{type(x).__name__}")
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood={likelihood!r} is not allowed: expected one of {LIKELIHOODS}")
    want = (x.shape[0], decoder_channels(likelihood, x.shape[1]), *x.shape[2:]) if x.dim() == 4 else x.shape
    if tuple(x_logits.shape) != tuple(want):
        raise ValueError(f"x_logits has shape {tuple(x_logits.shape)} but x has {tuple(x.shape)}"
                         + (f"; {likelihood} needs {tuple(want)}" if tuple(want) != tuple(x.shape) else ""))
    x_logits, x = x_logits.float(), x.float()
    if check_range and likelihood != "gaussian":
        check_unit_range(x, likelihood)
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(x_logits, x, reduction="none")  # softplus(l) - x * l, stable
    elif likelihood == "continuous-bernoulli":
        nll = -ContinuousBernoulli(logits=x_logits, validate_args=False).log_prob(x)
    elif likelihood == "gaussian":
        # N(x; sigmoid(logits), std^2): a scaled squared error plus the normalising constant.
        nll = 0.5 * ((x - torch.sigmoid(x_logits)) / gaussian_std).pow(2) + math.log(gaussian_std * math.sqrt(2 * math.pi))
    elif likelihood == "discretized-logistic":
        nll = -discretized_logistic_log_prob(x, *x_logits.chunk(2, dim=1))
    else:
        nll = -discretized_mix_logistic_log_prob(x, x_logits)
    return nll.flatten(1).sum(dim=1)


def discretized_logistic_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor, bins: int = 256) -> Tensor:
    """log P(x) per sub-pixel for x in {0, 1/255, ..., 1} under a logistic(mean, exp(log_scale)) on [-1, 1] binned
    into `bins` levels; the end bins take the tails (PixelCNN++, Salimans et al., 2017, Eq. 2). Nats, x's shape."""
    y = 2 * x - 1  # [0, 1] -> [-1, 1]; bin half-width 1 / (bins - 1)
    log_scale = log_scale.clamp(min=LOG_SCALE_MIN)
    inv_scale = torch.exp(-log_scale)
    half = 1.0 / (bins - 1)
    plus, minus = inv_scale * (y - mean + half), inv_scale * (y - mean - half)
    log_cdf_plus = plus - F.softplus(plus)  # log sigmoid(plus): the lowest bin takes (-inf, edge]
    log_sf_minus = -F.softplus(minus)  # log (1 - sigmoid(minus)): the highest bin takes [edge, inf)
    # log (sigmoid(plus) - sigmoid(minus)) = log sigmoid(plus) + log sigmoid(-minus) + log(1 - e^(minus - plus)),
    # stable for any scale (plus > minus always)
    log_delta = log_cdf_plus + log_sf_minus + torch.log(-torch.expm1(minus - plus))
    return torch.where(y < -1 + half / 2, log_cdf_plus, torch.where(y > 1 - half / 2, log_sf_minus, log_delta))


def mix_parameters(params: Tensor, channels: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The mixture's (log weights (B, K, H, W), means, log-scales, coefficients (B, K, C or C(C-1)/2, H, W)) from
    the decoder's output (B, K(1 + 2C + C(C-1)/2), H, W); the coefficients lie in (-1, 1)."""
    B, _, H, W = params.shape
    K, n_coeffs = MIX_COMPONENTS, channels * (channels - 1) // 2
    logits, means, log_scales, coeffs = params.split((K, K * channels, K * channels, K * n_coeffs), dim=1)
    return (F.log_softmax(logits, dim=1), means.view(B, K, channels, H, W),
            log_scales.view(B, K, channels, H, W).clamp(min=LOG_SCALE_MIN),
            torch.tanh(coeffs).view(B, K, n_coeffs, H, W))


def _coupled_means(means: Tensor, coeffs: Tensor, y: Tensor) -> Tensor:
    """Each channel's mean shifted by the coefficients times the channels before it (y: (B, 1, C, H, W) in
    [-1, 1], the data's values or the means'): red as it is, green + a*red, blue + b*red + c*green."""
    if means.shape[2] == 1:
        return means
    r, g, b = means.unbind(2)
    return torch.stack([r, g + coeffs[:, :, 0] * y[:, :, 0],
                        b + coeffs[:, :, 1] * y[:, :, 0] + coeffs[:, :, 2] * y[:, :, 1]], dim=2)


def discretized_mix_logistic_log_prob(x: Tensor, params: Tensor) -> Tensor:
    """log P(x) per pixel (B, H, W) of 8-bit images x (B, C, H, W) in [0, 1] under the discretized mixture of
    logistics that params (see mix_parameters) describe (PixelCNN++, Salimans et al., 2017, Eq. 2 and Sec. 2.2)."""
    log_weights, means, log_scales, coeffs = mix_parameters(params, x.shape[1])
    y = (2 * x - 1).unsqueeze(1)  # (B, 1, C, H, W) in [-1, 1]
    means = _coupled_means(means, coeffs, y)  # (B, K, C, H, W)
    per_channel = discretized_logistic_log_prob(x.unsqueeze(1), means, log_scales)  # (B, K, C, H, W)
    return torch.logsumexp(log_weights + per_channel.sum(2), dim=1)  # the channels of a component multiply


def mean_image(x_logits: Tensor, likelihood: str = "bernoulli") -> Tensor:
    """The mean of p(x|z) given the decoder's output: images (B, C, H, W) in [0, 1]."""
    if likelihood == "discretized-mix-logistic":
        channels = {decoder_channels(likelihood, c): c for c in (1, 3)}[x_logits.shape[1]]
        log_weights, means, _, coeffs = mix_parameters(x_logits.float(), channels)
        component = means.clone()  # each component's channel means, the coupling applied to the means before
        for c in range(1, channels):
            component = _coupled_means(means, coeffs, component.clamp(-1, 1))
        mean = (log_weights.exp().unsqueeze(2) * component.clamp(-1, 1)).sum(1)  # (B, C, H, W)
        return (mean + 1) / 2
    if likelihood == "continuous-bernoulli":
        return ContinuousBernoulli(logits=x_logits.float(), validate_args=False).mean
    if likelihood == "discretized-logistic":
        mean, _ = x_logits.chunk(2, dim=1)
        return (mean.clamp(-1, 1) + 1) / 2  # the logistic's mean, up to the clipping of the tails
    return torch.sigmoid(x_logits)


def bits_per_dim_defined(likelihood: str, binary_data: bool) -> Optional[str]:
    """None when -log p(x) of this likelihood converts to bits/dim, else the reason it does not."""
    if likelihood in DISCRETE_LIKELIHOODS or (likelihood == "bernoulli" and binary_data):
        return None
    if likelihood == "bernoulli":
        return "the Bernoulli of grey levels is not a normalised likelihood (binarize the data, or use the " \
               "discretized-logistic likelihood)"
    return f"the {likelihood} likelihood is a density on [0, 1], not a probability of 8-bit values"


def vae_loss(out, x: Tensor, beta: Union[float, Tensor] = 1.0, likelihood: str = "bernoulli",
             gaussian_std: float = 0.1, check_range: bool = True) -> LossTerms:
    """Negative ELBO (beta-weighted KL) of a VAEOutput for images x, as batch means of per-image nats. beta may be
    the 0-dim tensor that kl_warmup_factor gives a compiled training step (not checked: no host sync)."""
    if not all(hasattr(out, name) for name in ("x_logits", "mu", "logvar")):
        raise ValueError(f"vae_loss expects the VAEOutput of model(x), got {type(out).__name__}; "
                         "or call model.loss(x)")
    if not isinstance(beta, Tensor) and not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta={beta!r} is not allowed: expected a finite number >= 0")
    recon = reconstruction_loss(out.x_logits, x, likelihood, gaussian_std, check_range).mean()
    kl = kl_divergence(out.mu, out.logvar).mean()
    return LossTerms(recon + beta * kl, recon, kl)


def kl_warmup_factor(epochs_done: Union[float, Tensor], warmup_epochs: int) -> Union[float, Tensor]:
    """Linear KL warm-up (Bowman et al., 2016; Sønderby et al., 2016): 0 at the start, 1 after warmup_epochs.
    epochs_done may be a 0-dim tensor (a compiled training step's, so that its value does not recompile)."""
    if warmup_epochs == 0:
        return 1.0
    if isinstance(epochs_done, Tensor):
        return (epochs_done / warmup_epochs).clamp(max=1.0)
    return min(1.0, epochs_done / warmup_epochs)


IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # Tolstikhin et al.'s code sums the kernel over these multiples of C


def imq_mmd(z: Tensor, w: Tensor, prior_var: float = 1.0, scales: tuple[float, ...] = IMQ_SCALES) -> Tensor:
    """The unbiased estimate of MMD^2 between the samples z (n, D) and w (m, D) with the inverse multiquadratic
    kernel k(a, b) = C / (C + |a - b|^2), C = 2 D prior_var, summed over C's multiples `scales` (Tolstikhin et al.,
    2018, Sec. 4 and their code): 0-dim tensor, about 0 when z and w come from one distribution."""
    n, m = z.shape[0], w.shape[0]
    if n < 2 or m < 2 or z.shape[1:] != w.shape[1:]:
        raise ValueError(f"samples {tuple(z.shape)} and {tuple(w.shape)}: expected two sets of at least 2 vectors "
                         "of one size")
    z, w = z.float(), w.float()
    base = 2.0 * z.shape[1] * prior_var

    def kernel(a: Tensor, b: Tensor) -> Tensor:  # (len(a), len(b)), summed over the scales
        d2 = (a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(-1)
        return sum(base * s / (base * s + d2) for s in scales)

    k_zz, k_ww = kernel(z, z), kernel(w, w)
    within = (k_zz.sum() - k_zz.diagonal().sum()) / (n * (n - 1)) + (k_ww.sum() - k_ww.diagonal().sum()) / (m * (m - 1))
    return within - 2 * kernel(z, w).mean()
