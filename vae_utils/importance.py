"""Importance weights of a Gaussian-latent model, the core of the IWAE bound (Burda et al., 2015, Eq. 8)."""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .losses import check_unit_range, reconstruction_loss
from .repro import autocast
from .subpixel import UnshuffledDecoder, unshuffled_decoder

LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension: (...,) nats."""
    return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)


def gaussian_log_weights(mu: Tensor, logvar: Tensor, decoder: nn.Module, x: Tensor, k: int, likelihood: str,
                         gaussian_std: float = 0.1, generator: Optional[torch.Generator] = None,
                         chunk_images: int = 2048, check_range: bool = True, precision: str = "fp32",
                         subpixel: bool = True, log_prior: Callable[[Tensor], Tensor] = standard_normal_log_prob,
                         flow: Optional[Callable[[Tensor], tuple[Tensor, Tensor]]] = None) -> Tensor:
    """log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x) for k samples z_i ~ N(mu, exp(logvar)): (B, k) nats.

    mu, logvar (B, D) are the posterior of images x (B, C, H, W); decoder maps z (N, D) to the likelihood's
    parameters. The decoder runs on chunks of chunk_images samples, in bf16 autocast with precision="bf16" (the
    log-densities themselves are summed in fp32), its last stages in sub-pixel form unless subpixel=False
    (`unshuffled_decoder`: the same numbers, the images unshuffled to match). log_prior is log p(z) (B, c, D) ->
    (B, c); the standard normal by default. flow (B, c, D) -> (z_K, log|det dz_K/dz|) (B, c, D), (B, c) moves
    each sample through a normalizing flow (the IAF posterior): z_K is decoded and log q is lowered by the
    log-determinant (change of variables).
    """
    if check_range and likelihood != "gaussian":
        check_unit_range(x, likelihood)
    mu, logvar = mu.float(), logvar.float()
    B, D = mu.shape
    chunk = max(1, min(k, chunk_images // max(B, 1)))  # samples per decoder pass, to bound memory
    out = torch.empty(B, k, device=mu.device)
    subpixel = subpixel and likelihood != "discretized-mix-logistic"  # its parameters do not unshuffle per channel
    net = unshuffled_decoder(decoder) if subpixel else UnshuffledDecoder(decoder, 1)
    target = F.pixel_unshuffle(x, net.factor).float()  # (B, C', H', W'), the decoder's layout
    noise = torch.randn((B, k, D), generator=generator, device=mu.device)  # drawn at once: chunking changes nothing
    for first in range(0, k, chunk):
        c = min(chunk, k - first)
        eps = noise[:, first:first + c]  # (B, c, D)
        z = mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps
        log_q = -0.5 * (eps.pow(2) + logvar.unsqueeze(1) + LOG_2PI).sum(-1)  # (B, c)
        if flow is not None:
            z, log_det = flow(z)
            log_q = log_q - log_det
        with autocast(mu.device, precision):
            logits = net.logits(z.reshape(B * c, D))  # (B*c, C', H', W')
        out[:, first:first + c] = log_px_of_samples(logits, target, c, likelihood, gaussian_std) + log_prior(z) - log_q
    return out


def log_px_of_samples(logits: Tensor, target: Tensor, c: int, likelihood: str, gaussian_std: float) -> Tensor:
    """log p(x|z) of c decoder outputs per image, summed over pixels: (B, c) in nats; target (B, ...) is shared."""
    B = target.shape[0]
    logits = logits.float().contiguous()  # the targets' layout: mixed layouts take a slow elementwise path
    if likelihood == "bernoulli":  # x l - softplus(l) with exp and log, vectorised where log1p is not (2x)
        l, x = logits.view(B, c, -1), target.view(B, 1, -1)
        softplus = torch.exp(-l.abs()).add_(1).log_().add_(l.clamp(min=0))
        return (l * x).sum(-1) - softplus.sum(-1)
    shape = (B, c, *target.shape[1:])
    x = target.unsqueeze(1).expand(shape).reshape(B * c, *target.shape[1:])
    return -reconstruction_loss(logits, x, likelihood, gaussian_std, check_range=False).view(B, c)
