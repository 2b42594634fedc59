"""Importance-weighted log-likelihood (Burda et al., 2015), in nats per image and bits per dimension."""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .data import ImageDataset, iterate_batches
from .losses import reconstruction_loss
from .model import VAE

LOG_2PI = math.log(2 * math.pi)


def log_importance_weights(model: VAE, x: Tensor, k: int, generator: torch.Generator | None = None,
                           chunk_images: int = 2048, check_range: bool = True) -> Tensor:
    """log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x) for k samples z_i ~ q(z|x): (B, k) in nats."""
    mu, logvar = model.encode(x)  # (B, D)
    mu, logvar = mu.float(), logvar.float()
    B, D = mu.shape
    chunk = max(1, min(k, chunk_images // max(B, 1)))  # samples per decoder pass, to bound memory
    out = torch.empty(B, k, device=mu.device)
    for first in range(0, k, chunk):
        c = min(chunk, k - first)
        eps = torch.randn((B, c, D), generator=generator, device=mu.device)  # (B, c, D)
        z = mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps
        log_q = -0.5 * (eps.pow(2) + logvar.unsqueeze(1) + LOG_2PI).sum(-1)  # (B, c)
        log_prior = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)  # (B, c)
        logits = model.decode_logits(z.reshape(B * c, D))  # (B*c, C, H, W)
        target = x.unsqueeze(1).expand(B, c, *x.shape[1:]).reshape(B * c, *x.shape[1:])
        cfg = model.config
        log_px = -reconstruction_loss(logits, target, cfg.likelihood, cfg.gaussian_std, check_range).view(B, c)
        out[:, first:first + c] = log_px + log_prior - log_q
    return out


@torch.no_grad()
def iwae_nll(model: VAE, dataset: Dataset, k: int = 100, batch_size: int = 20, seed: int = 0) -> dict[str, float]:
    """-log p(x) estimated with k importance samples, averaged over the data set: nats per image and bits/dim.

    log p(x) >= E[log (1/k) sum_i w_i] (Burda et al., 2015, Eq. 8), computed with logsumexp; k=1 is the ELBO,
    and the bound tightens as k grows.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r}: expected a positive number of importance samples")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    total, n = torch.zeros((), dtype=torch.float64, device=device), 0
    for x in iterate_batches(dataset, batch_size, device):
        log_w = log_importance_weights(model, x, k, generator, check_range=not isinstance(dataset, ImageDataset))
        total += (torch.logsumexp(log_w.double(), dim=1) - math.log(k)).sum()
        n += x.shape[0]
    model.train(was_training)
    if n == 0:
        raise ValueError("cannot evaluate on an empty data set")
    nll = -total.item() / n
    dims = math.prod(model.image_shape)
    return {"iwae_nll": nll, "iwae_k": k, "bits_per_dim": nll / (dims * math.log(2))}
