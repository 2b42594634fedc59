"""How close reconstructions are to their images, in the figures image papers print: PSNR and SSIM (torchmetrics)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from .data import model_inputs


@torch.no_grad()
def reconstruction_fidelity(model: nn.Module, data: Dataset, batch_size: int = 500) -> dict[str, float]:
    """PSNR (dB, peak 1) and SSIM (torchmetrics' defaults: an 11x11 Gaussian window of sd 1.5) of the model's
    reconstructions of data, images in [0, 1], each the mean over images of the per-image figure (in float64)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    psnr, ssim = [], []
    for x, extra in model_inputs(model, data, batch_size):
        r = model.reconstruct(x, **extra).double().clamp(0, 1)  # float64: float32's variances of flat images are noise
        x = x.double()
        psnr.append(peak_signal_noise_ratio(r, x, data_range=1.0, reduction="none", dim=(1, 2, 3)).cpu())
        ssim.append(structural_similarity_index_measure(r, x, data_range=1.0, reduction="none").cpu())
    return {"psnr": torch.cat(psnr).double().mean().item(), "ssim": torch.cat(ssim).double().mean().item()}
