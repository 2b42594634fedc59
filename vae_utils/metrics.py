"""Evaluation in nats per image, for any model that offers what each estimate needs (capabilities.py): the
loss terms, the importance-weighted NLL, latent statistics and codebook usage."""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator, NamedTuple, Optional

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .capabilities import DiscreteCodes, GaussianLatent, Hierarchical, ImportanceWeighted
from .config import ACTIVE_GROUP_NATS, MAX_IWAE_K, MAX_SAMPLES, PR_K  # noqa: F401 (re-exported: the limits' old home)
from .data import ImageDataset, model_inputs
from .distributed import all_reduce_sum, broadcast_object, is_main, rank, world_size
from .losses import bits_per_dim_defined, kl_per_dim
from .repro import bars_disabled, resolve_precision

NOISY_BELOW = 1_000  # fewer images than this make Fréchet distance and precision/recall noisy


def shared_batches(model: nn.Module, dataset: Dataset, batch_size: int, skip: Callable[[int], None]
                   ) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
    """model_inputs, each process of a torchrun taking every world_size-th batch; skip(n) is called for the
    batches of the others, to keep a random stream shared with them (and with a single process) in step."""
    world, me = world_size(), rank()
    for b, (x, extra) in enumerate(model_inputs(model, dataset, batch_size)):
        if b % world == me:
            yield x, extra
        else:
            skip(len(x))


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """The model's loss terms averaged over the data set, one z per image with a fixed seed (nats per image).

    For a VAE: neg_elbo (beta = 1, whatever beta it was trained with), recon and kl; `total` takes the name the
    model gives it (`total_name`), e.g. prior_nll for a CodePrior.
    """
    generator = torch.Generator(device=_device(model)).manual_seed(seed)  # same noise every call
    check_range = not isinstance(dataset, ImageDataset)  # uint8 / 255 lies in [0, 1] by construction
    sums: dict[str, Tensor] = {}
    n = 0
    skip = getattr(model, "skip_noise", lambda n, generator: None)
    for x, extra in shared_batches(model, dataset, batch_size, lambda m: skip(m, generator)):
        terms = model.loss(x, generator=generator, check_range=check_range, **extra)
        for name, value in terms._asdict().items():
            sums[name] = sums.get(name, 0) + value.detach().double() * len(x)
        n += len(x)
    if world_size() > 1:  # sums of nats and images over the ranks: every rank reports the same numbers
        names = broadcast_object(list(sums))  # rank 0 always scores the first batch
        packed = all_reduce_sum(torch.stack([torch.as_tensor(sums.get(k, 0.0), dtype=torch.float64,
                                                             device=_device(model)) for k in names]
                                            + [torch.tensor(float(n), dtype=torch.float64, device=_device(model))]))
        sums, n = dict(zip(names, packed[:-1])), int(packed[-1])
    total_name = getattr(model, "total_name", "neg_elbo")
    return {(total_name if name == "total" else name): value.item() / n for name, value in sums.items()}


def log_importance_weights(model: nn.Module, x: Tensor, k: int, generator: Optional[torch.Generator] = None,
                           check_range: bool = True, precision: str = "fp32", **options) -> Tensor:
    """log w_i = log p(x, z_i) - log q(z_i|x) for k samples z_i ~ q(z|x): (B, k) in nats.

    The model's own `log_importance_weights` (the ImportanceWeighted capability); for the VAE, options are
    chunk_images (samples per decoder pass) and subpixel (the decoder's sub-pixel form, the same numbers).
    """
    _require(model, ImportanceWeighted, "importance weights (log_importance_weights)")
    return model.log_importance_weights(x, k, generator, check_range=check_range, precision=precision, **options)


@torch.no_grad()
def iwae_nll(model: nn.Module, dataset: Dataset, k: int = 100, batch_size: int = 20, seed: int = 0,
             precision: str = "fp32", progress: bool = False) -> dict[str, float]:
    """-log p(x) estimated with k importance samples, averaged over the data set: nats per image and bits/dim.

    log p(x) >= E[log (1/k) sum_i w_i] (Burda et al., 2015, Eq. 8), computed with logsumexp; k=1 is the ELBO,
    and the bound tightens as k grows. precision="bf16" (or "auto": bf16 where the hardware has it) runs the
    decoder in bf16 autocast, several times faster on CPUs with AMX/AVX-512-BF16 (docs/evaluation.md gives the
    difference it makes).
    """
    _require(model, ImportanceWeighted, "importance weights (log_importance_weights)")
    _check_count(k, "k", 1, MAX_IWAE_K, "importance samples")
    precision = resolve_precision(precision, _device(model))
    with _channels_last(model):  # faster transposed convolutions in oneDNN and cuDNN
        total, n = _iwae_sum(model, dataset, k, batch_size, seed, precision, progress)
    nll = -total.item() / n
    result = {"iwae_nll": nll, "iwae_k": k, "iwae_precision": precision,
              "bits_per_dim": nll / (math.prod(model.image_shape) * math.log(2))}
    undefined = bits_undefined(model, dataset)
    if undefined:
        result.update(bits_per_dim=None, bits_per_dim_note=f"no bits/dim: {undefined}")
    return result


def bits_undefined(model: nn.Module, dataset: Dataset) -> Optional[str]:
    """None when the model's -log p(x) on dataset converts to bits/dim, else why not (see losses.py)."""
    likelihood = getattr(model, "likelihood", None)
    if likelihood is None:
        return f"{type(model).__name__} names no likelihood (a `likelihood` attribute)"
    return bits_per_dim_defined(likelihood, is_binary(dataset))


def _iwae_sum(model: nn.Module, dataset: Dataset, k: int, batch_size: int, seed: int, precision: str,
              progress: bool) -> tuple[Tensor, int]:
    """(sum over images of log (1/k) sum_i w_i, number of images), reduced over the processes of a torchrun."""
    generator = torch.Generator(device=_device(model)).manual_seed(seed)
    total, n = torch.zeros((), dtype=torch.float64, device=_device(model)), 0
    skip_noise = getattr(model, "skip_noise", None)  # keeps one random stream for any number of processes
    skip = (lambda m: skip_noise(m, generator, samples=k)) if skip_noise else (lambda m: None)  # noqa: E731
    batches = shared_batches(model, dataset, batch_size, skip)
    for x, extra in tqdm(batches, total=-(-len(dataset) // (batch_size * world_size())), desc=f"IWAE k={k}",
                  disable=not progress or not is_main() or bars_disabled(), leave=False):
        log_w = model.log_importance_weights(x, k, generator, check_range=not isinstance(dataset, ImageDataset),
                                             precision=precision, **extra)
        total += (torch.logsumexp(log_w.double(), dim=1) - math.log(k)).sum()
        n += x.shape[0]
    return _summed(total, n)


@contextmanager
def _channels_last(model: nn.Module) -> Iterator[None]:
    """The model in channels_last memory format meanwhile, as it was afterwards (the numbers do not depend on it)."""
    convs = [p for p in model.parameters() if p.dim() == 4]
    was = bool(convs) and convs[0].is_contiguous(memory_format=torch.channels_last) and not convs[0].is_contiguous()
    model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        if not was:
            model.to(memory_format=torch.contiguous_format)


def _summed(total: Tensor, n: int) -> tuple[Tensor, int]:
    """(total, n) summed over the processes of a torchrun."""
    if world_size() == 1:
        return total, n
    packed = all_reduce_sum(torch.stack([total, torch.tensor(float(n), dtype=torch.float64, device=total.device)]))
    return packed[0], int(packed[1])


@torch.no_grad()
def group_kl(model: nn.Module, dataset: Dataset, batch_size: int = 500, seed: int = 0) -> Tensor:
    """KL of each group of a hierarchical model averaged over the data set, top group first: (n_groups,) nats per
    image, one fixed-seed posterior sample of the groups above each (summed over the processes of a torchrun)."""
    _require(model, Hierarchical, "groups of latents (kl_per_group)")
    generator = torch.Generator(device=_device(model)).manual_seed(seed)
    total, n = torch.zeros(model.n_groups, dtype=torch.float64, device=_device(model)), 0
    skip = getattr(model, "skip_noise", lambda n, generator: None)
    for x, _ in shared_batches(model, dataset, batch_size, lambda m: skip(m, generator)):
        total += model.kl_per_group(x, generator).double().sum(0)
        n += len(x)
    if world_size() > 1:
        packed = all_reduce_sum(torch.cat([total, torch.tensor([float(n)], dtype=torch.float64, device=total.device)]))
        total, n = packed[:-1], int(packed[-1])
    return (total / n).float().cpu()


def is_binary(dataset: Dataset) -> bool:
    """True for an ImageDataset whose pixels are all 0 or 255 (binarized); other data sets count as not binary."""
    if not isinstance(dataset, ImageDataset):
        return False
    images = dataset.images
    rows = max(1, (16 << 20) // max(1, images[0].numel())) if len(images) else 1
    return all(bool(((part == 0) | (part == 255)).all()) for part in images.split(rows))  # a mapped set: in chunks


class LatentStats(NamedTuple):
    """Posterior means over a data set and what they say about each latent dimension."""

    mu: Tensor  # (N, D) posterior means
    kl_per_dim: Tensor  # (D,) KL(q(z_d|x) || N(0, 1)) averaged over the data, nats
    activity: Tensor  # (D,) variance over the data of the posterior mean, Cov_x(E_q[z_d])
    active: Tensor  # (D,) bool: activity > threshold


@torch.no_grad()
def latent_stats(model: nn.Module, dataset: Dataset, threshold: float = 0.01, batch_size: int = 1000
                 ) -> LatentStats:
    """Per-dimension KL and activity; a unit is active when its activity exceeds threshold (0.01 in Burda et al.).

    For models with a Gaussian posterior (the GaussianLatent capability: `posterior(x)` -> (mu, logvar)).
    """
    _require(model, GaussianLatent, "Gaussian posterior (posterior(x) -> mu, logvar)")
    mus, kl_sum = [], 0
    for x, extra in model_inputs(model, dataset, batch_size):
        mu, logvar = model.posterior(x, **extra)
        kl_sum = kl_sum + kl_per_dim(mu, logvar).double().sum(0)  # (D,)
        mus.append(mu.float().cpu())
    mu = torch.cat(mus)
    n = len(mu)
    activity = mu.double().var(dim=0, unbiased=False) if n > 1 else torch.zeros(mu.shape[1], dtype=torch.float64)
    return LatentStats(mu, (kl_sum / n).cpu(), activity, activity > threshold)


def active_units(model: nn.Module, dataset: Dataset, threshold: float = 0.01) -> int:
    """Number of latent dimensions whose posterior mean varies over the data by more than threshold."""
    return int(latent_stats(model, dataset, threshold).active.sum())


def perplexity(counts: Tensor) -> float:
    """exp(entropy) of the code distribution given by counts (K,): K for uniform use, 1 for a single code."""
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def code_counts(model: nn.Module, dataset: Dataset, batch_size: int = 1000) -> Tensor:
    """How often each code occurs over the whole data set (all grid cells of all images): (K,) long.

    For models with discrete codes (the DiscreteCodes capability: `codes(x)`, `codebook_size`).
    """
    _require(model, DiscreteCodes, "discrete codes (codes(x), codebook_size)")
    counts = torch.zeros(model.codebook_size, dtype=torch.long)
    for x, _ in model_inputs(model, dataset, batch_size):
        counts += torch.bincount(model.codes(x).flatten().cpu(), minlength=model.codebook_size)
    return counts


def codebook_usage(model: nn.Module, dataset: Dataset, batch_size: int = 1000) -> dict[str, float]:
    """Codes used over the whole data set and their perplexity (not per batch, which depends on the batch size)."""
    counts = code_counts(model, dataset, batch_size)
    return {"codes_used": int((counts > 0).sum()), "codebook_size": model.codebook_size,
            "perplexity": perplexity(counts)}


def _check_count(value, name: str, low: int, high: float, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        bound = f"from {low:,} to {high:,}" if math.isfinite(high) else f"at least {low:,}"
        raise ValueError(f"{name}={value!r}: expected {bound} {what}")


def _require(model: nn.Module, capability: type, what: str) -> None:
    if not isinstance(model, capability):
        raise ValueError(f"{type(model).__name__} offers no {what}: this estimate needs the {capability.__name__} "
                         "capability (see vae_utils/capabilities.py)")


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
