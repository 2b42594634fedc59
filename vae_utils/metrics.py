"""Evaluation in nats per image: the -ELBO, the importance-weighted NLL, latent statistics, and the full report."""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .config import VAEConfig
from .data import ImageDataset, iterate_batches
from .distributed import all_reduce_sum, broadcast_object, is_main, rank, world_size
from .features import FeatureClassifier, class_histogram, classifier_features, frechet_distance, precision_recall
from .losses import bits_per_dim_defined, check_unit_range, kl_per_dim, reconstruction_loss
from .model import VAE
from .repro import autocast, resolve_precision
from .subpixel import UnshuffledDecoder, unshuffled_decoder

LOG_2PI = math.log(2 * math.pi)
MAX_IWAE_K = 100_000  # papers use 5,000; more only costs time
MAX_SAMPLES = 100_000  # samples held in memory for the Fréchet distance
PR_K = 3  # neighbours of improved precision/recall (Kynkäänniemi et al., 2019)
NOISY_BELOW = 1_000  # fewer images than this make Fréchet distance and precision/recall noisy


def model_batches(model: nn.Module, dataset: Dataset, batch_size: int) -> Iterator[Tensor]:
    """Float batches of dataset on the model's device, the model in eval mode meanwhile (restored afterwards)."""
    if len(dataset) == 0:
        raise ValueError("cannot evaluate on an empty data set")
    was_training = model.training
    model.eval()
    try:
        yield from iterate_batches(dataset, batch_size, _device(model))
    finally:
        model.train(was_training)


def shared_batches(model: nn.Module, dataset: Dataset, batch_size: int, skip: Callable[[int], None]
                   ) -> Iterator[Tensor]:
    """model_batches, each process of a torchrun taking every world_size-th batch; skip(n) is called for the
    batches of the others, to keep a random stream shared with them (and with a single process) in step."""
    world, me = world_size(), rank()
    for b, x in enumerate(model_batches(model, dataset, batch_size)):
        if b % world == me:
            yield x
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
    for x in shared_batches(model, dataset, batch_size, lambda m: skip(m, generator)):
        terms = model.loss(x, generator=generator, check_range=check_range)
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


def log_importance_weights(model: VAE, x: Tensor, k: int, generator: Optional[torch.Generator] = None,
                           chunk_images: int = 2048, check_range: bool = True, precision: str = "fp32",
                           subpixel: bool = True) -> Tensor:
    """log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x) for k samples z_i ~ q(z|x): (B, k) in nats.

    One encoder pass; the decoder runs on chunks of chunk_images samples, in bf16 autocast with precision="bf16"
    (the log-densities themselves are summed in fp32), its last stages in sub-pixel form unless subpixel=False
    (`unshuffled_decoder`: the same numbers, the images unshuffled to match).
    """
    cfg = model.config
    mu, logvar = model.encode(x)  # (B, D); checks the images' shape and dtype
    if check_range and cfg.likelihood != "gaussian":
        check_unit_range(x, cfg.likelihood)
    mu, logvar = mu.float(), logvar.float()
    B, D = mu.shape
    chunk = max(1, min(k, chunk_images // max(B, 1)))  # samples per decoder pass, to bound memory
    out = torch.empty(B, k, device=mu.device)
    decoder = unshuffled_decoder(model.decoder) if subpixel else UnshuffledDecoder(model.decoder, 1)
    target = F.pixel_unshuffle(x, decoder.factor).float()  # (B, C', H', W'), the decoder's layout
    noise = torch.randn((B, k, D), generator=generator, device=mu.device)  # drawn at once: chunking changes nothing
    for first in range(0, k, chunk):
        c = min(chunk, k - first)
        eps = noise[:, first:first + c]  # (B, c, D)
        z = mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps
        log_q = -0.5 * (eps.pow(2) + logvar.unsqueeze(1) + LOG_2PI).sum(-1)  # (B, c)
        log_prior = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)  # (B, c)
        with autocast(mu.device, precision):
            logits = decoder.logits(z.reshape(B * c, D))  # (B*c, C', H', W')
        out[:, first:first + c] = _log_px(logits, target, c, cfg) + log_prior - log_q
    return out


def _log_px(logits: Tensor, target: Tensor, c: int, cfg: VAEConfig) -> Tensor:
    """log p(x|z) of c decoder outputs per image, summed over pixels: (B, c) in nats; target (B, ...) is shared."""
    B = target.shape[0]
    logits = logits.float().contiguous()  # the targets' layout: mixed layouts take a slow elementwise path
    if cfg.likelihood == "bernoulli":  # x l - softplus(l) with exp and log, vectorised where log1p is not (2x)
        l, x = logits.view(B, c, -1), target.view(B, 1, -1)
        softplus = torch.exp(-l.abs()).add_(1).log_().add_(l.clamp(min=0))
        return (l * x).sum(-1) - softplus.sum(-1)
    shape = (B, c, *target.shape[1:])
    x = target.unsqueeze(1).expand(shape).reshape(B * c, *target.shape[1:])
    return -reconstruction_loss(logits, x, cfg.likelihood, cfg.gaussian_std, check_range=False).view(B, c)


@torch.no_grad()
def iwae_nll(model: VAE, dataset: Dataset, k: int = 100, batch_size: int = 20, seed: int = 0,
             precision: str = "fp32", progress: bool = False) -> dict[str, float]:
    """-log p(x) estimated with k importance samples, averaged over the data set: nats per image and bits/dim.

    log p(x) >= E[log (1/k) sum_i w_i] (Burda et al., 2015, Eq. 8), computed with logsumexp; k=1 is the ELBO,
    and the bound tightens as k grows. precision="bf16" (or "auto": bf16 where the hardware has it) runs the
    decoder in bf16 autocast, several times faster on CPUs with AMX/AVX-512-BF16 (README "Evaluation" gives the
    difference it makes).
    """
    _check_count(k, "k", 1, MAX_IWAE_K, "importance samples")
    precision = resolve_precision(precision, _device(model))
    with _channels_last(model):  # faster transposed convolutions in oneDNN and cuDNN
        total, n = _iwae_sum(model, dataset, k, batch_size, seed, precision, progress)
    nll = -total.item() / n
    result = {"iwae_nll": nll, "iwae_k": k, "iwae_precision": precision,
              "bits_per_dim": nll / (math.prod(model.image_shape) * math.log(2))}
    undefined = bits_per_dim_defined(model.config.likelihood, is_binary(dataset))
    if undefined:
        result.update(bits_per_dim=None, bits_per_dim_note=f"no bits/dim: {undefined}")
    return result


def _iwae_sum(model: VAE, dataset: Dataset, k: int, batch_size: int, seed: int, precision: str,
              progress: bool) -> tuple[Tensor, int]:
    """(sum over images of log (1/k) sum_i w_i, number of images), reduced over the processes of a torchrun."""
    generator = torch.Generator(device=_device(model)).manual_seed(seed)
    total, n = torch.zeros((), dtype=torch.float64, device=_device(model)), 0
    skip = lambda m: torch.randn((m, k, model.latent_dim), generator=generator, device=_device(model))  # noqa: E731
    batches = shared_batches(model, dataset, batch_size, skip)
    for x in tqdm(batches, total=-(-len(dataset) // (batch_size * world_size())), desc=f"IWAE k={k}",
                  disable=not progress or not is_main(), leave=False):
        log_w = log_importance_weights(model, x, k, generator, check_range=not isinstance(dataset, ImageDataset),
                                       precision=precision)
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


def is_binary(dataset: Dataset) -> bool:
    """True for an ImageDataset whose pixels are all 0 or 255 (binarized); other data sets count as not binary."""
    return isinstance(dataset, ImageDataset) and bool(((dataset.images == 0) | (dataset.images == 255)).all())


class LatentStats(NamedTuple):
    """Posterior means over a data set and what they say about each latent dimension."""

    mu: Tensor  # (N, D) posterior means
    kl_per_dim: Tensor  # (D,) KL(q(z_d|x) || N(0, 1)) averaged over the data, nats
    activity: Tensor  # (D,) variance over the data of the posterior mean, Cov_x(E_q[z_d])
    active: Tensor  # (D,) bool: activity > threshold


@torch.no_grad()
def latent_stats(model: VAE, dataset: Dataset, threshold: float = 0.01, batch_size: int = 1000) -> LatentStats:
    """Per-dimension KL and activity; a unit is active when its activity exceeds threshold (0.01 in Burda et al.)."""
    mus, kl_sum = [], 0
    for x in model_batches(model, dataset, batch_size):
        mu, logvar = model.encode(x)
        kl_sum = kl_sum + kl_per_dim(mu, logvar).double().sum(0)  # (D,)
        mus.append(mu.float().cpu())
    mu = torch.cat(mus)
    n = len(mu)
    activity = mu.double().var(dim=0, unbiased=False) if n > 1 else torch.zeros(mu.shape[1], dtype=torch.float64)
    return LatentStats(mu, (kl_sum / n).cpu(), activity, activity > threshold)


def active_units(model: VAE, dataset: Dataset, threshold: float = 0.01) -> int:
    """Number of latent dimensions whose posterior mean varies over the data by more than threshold."""
    return int(latent_stats(model, dataset, threshold).active.sum())


@torch.no_grad()
def evaluation_report(model: VAE, test_data: ImageDataset, train_data: Optional[ImageDataset] = None,
                      classifier: Optional[FeatureClassifier] = None, iwae_k: int = 100, n_samples: int = 10_000,
                      seed: int = 0, real_test: Optional[ImageDataset] = None, iwae_precision: str = "fp32",
                      progress: bool = False) -> dict:
    """-ELBO, IWAE NLL (nats, bits/dim), KL, active units; with a classifier also Fréchet distances,
    precision/recall and the class histogram of samples. All on test_data; train_data gives the floor.

    real_test (default test_data) is what samples are compared with: the grey-level test images when
    test_data is a binarized copy, since the decoder's means are grey levels too. Sizes are checked before any
    work; `notes` says which figures are too noisy to mean much.
    """
    real_test = test_data if real_test is None else real_test
    _check_count(iwae_k, "iwae_k", 1, MAX_IWAE_K, "importance samples")
    notes = []
    if classifier is not None:
        _check_count(n_samples, "n_samples", PR_K + 1, MAX_SAMPLES, "samples")
        _check_count(len(real_test), "test images", PR_K + 1, math.inf, "images for precision/recall")
        if min(len(real_test), n_samples) < NOISY_BELOW:
            notes.append(f"Fréchet distance and precision/recall from {min(len(real_test), n_samples)} images are "
                         f"noisy and biased (use at least {NOISY_BELOW:,}): compare them only between runs of the "
                         "same size")
    report = dict(evaluate(model, test_data, seed=seed))
    report.update(iwae_nll(model, test_data, k=iwae_k, seed=seed, precision=iwae_precision, progress=progress))
    if "bits_per_dim_note" in report:
        notes.append(report.pop("bits_per_dim_note"))
    stats = latent_stats(model, test_data)
    report.update(active_units=int(stats.active.sum()), latent_dim=model.latent_dim,
                  kl_per_dim=[round(v, 4) for v in stats.kl_per_dim.tolist()], n_test=len(test_data))
    if classifier is not None:  # computed once, on rank 0, under torchrun
        quality = sample_quality(model, classifier, real_test, train_data, n_samples, seed) if is_main() else None
        report.update(broadcast_object(quality))
    report["notes"] = notes
    return report


def sample_quality(model: VAE, classifier: FeatureClassifier, real_test: ImageDataset,
                    train_data: Optional[ImageDataset], n_samples: int, seed: int) -> dict:
    """Fréchet distances, precision/recall and the class histogram of n_samples samples against real_test."""
    generator = torch.Generator(device=_device(model)).manual_seed(seed)
    samples = torch.cat([model.sample(min(1000, n_samples - i), generator=generator).cpu()
                         for i in range(0, n_samples, 1000)])
    reconstructions = torch.cat([model.reconstruct(x).cpu() for x in model_batches(model, real_test, 1000)])
    real = classifier_features(classifier, real_test)
    fake = classifier_features(classifier, samples)
    result = {
        "frechet_distance": frechet_distance(fake, real),
        "frechet_distance_reconstructions": frechet_distance(classifier_features(classifier, reconstructions), real),
        "n_samples": n_samples,
        "sample_class_histogram": [round(v, 4) for v in class_histogram(classifier, samples).tolist()],
    }
    if train_data is not None:
        floor = classifier_features(classifier, train_data.subset(min(len(train_data), len(real_test))))
        result["frechet_distance_floor"] = frechet_distance(floor, real)
    m = min(5000, len(real), len(fake))
    result["precision"], result["recall"] = precision_recall(real[:m], fake[:m], k=PR_K)
    return result


def format_report(report: dict) -> str:
    """The report as the few lines a reader looks at: bounds in nats and bits/dim, collapse, sample quality."""
    lines = [f"on {report['n_test']:,} test images:",
             f"  -ELBO (k=1)          {report['neg_elbo']:8.2f} nats   (recon {report['recon']:.2f} + KL "
             f"{report['kl']:.2f})",
             f"  IWAE NLL (k={report['iwae_k']}){' ' * max(1, 8 - len(str(report['iwae_k'])))}"
             f"{report['iwae_nll']:8.2f} nats" + ("" if report.get("bits_per_dim") is None else
                                                  f" = {report['bits_per_dim']:.4f} bits/dim"),
             f"  active units         {report['active_units']:8d} of {report['latent_dim']}"]
    if "frechet_distance" in report:
        floor = report.get("frechet_distance_floor")
        lines.append(f"  Fréchet distance     {report['frechet_distance']:8.2f} samples, "
                     f"{report['frechet_distance_reconstructions']:.2f} reconstructions"
                     + ("" if floor is None else f", {floor:.2f} real train vs test (floor)"))
        lines.append(f"  precision / recall   {report['precision']:8.3f} / {report['recall']:.3f}   "
                     f"({report['n_samples']:,} samples)")
    lines += [f"  note: {note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def _check_count(value, name: str, low: int, high: float, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        bound = f"from {low:,} to {high:,}" if math.isfinite(high) else f"at least {low:,}"
        raise ValueError(f"{name}={value!r}: expected {bound} {what}")


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
