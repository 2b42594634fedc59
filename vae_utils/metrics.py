"""Evaluation: the single-sample negative ELBO and its terms over a whole data set."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from .data import ImageDataset, iterate_batches
from .losses import kl_divergence, reconstruction_loss
from .model import VAE


@torch.no_grad()
def evaluate(model: VAE, dataset: Dataset, batch_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """neg_elbo, recon and kl in nats per image, averaged over the data set (one z per image, fixed seed)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)  # same noise every call: comparable numbers
    recon_sum = kl_sum = torch.zeros((), dtype=torch.float64, device=device)
    n = 0
    for x in iterate_batches(dataset, batch_size, device):
        out = model(x, generator=generator)
        recon = reconstruction_loss(out.x_logits, x, out.likelihood, out.gaussian_std,
                                    check_range=not isinstance(dataset, ImageDataset))
        recon_sum = recon_sum + recon.double().sum()
        kl_sum = kl_sum + kl_divergence(out.mu, out.logvar).double().sum()
        n += x.shape[0]
    model.train(was_training)
    if n == 0:
        raise ValueError("cannot evaluate on an empty data set")
    recon, kl = recon_sum.item() / n, kl_sum.item() / n
    return {"neg_elbo": recon + kl, "recon": recon, "kl": kl}
