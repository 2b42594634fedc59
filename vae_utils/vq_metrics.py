"""The VQ-VAE's report: reconstruction, the prior's NLL of the test codes, the bound on -log p(x), codebook use."""
from __future__ import annotations

import math
from typing import Optional, Union

import torch

from .data import ImageDataset
from .distributed import broadcast_object, is_main
from .features import FeatureClassifier
from .losses import bits_per_dim_defined
from .metrics import MAX_SAMPLES, NOISY_BELOW, PR_K, _check_count, evaluate, is_binary, sample_quality
from .prior import CodePrior
from .vqvae import VQVAE, codebook_usage


@torch.no_grad()
def vq_report(model: Union[VQVAE, CodePrior], test_data: ImageDataset, train_data: Optional[ImageDataset] = None,
              classifier: Optional[FeatureClassifier] = None, n_samples: int = 10_000, seed: int = 0,
              real_test: Optional[ImageDataset] = None, temperature: float = 1.0) -> dict:
    """Everything on test_data, nats per image: recon = -log p(x | codes), prior_nll = -log p(codes) (uniform
    for a VQ-VAE alone, learned for a CodePrior), bound = their sum >= -log p(x), bits/dim, codebook usage and
    perplexity over the whole split; with a classifier, Fréchet distances and precision/recall of samples
    (a CodePrior's; a VQ-VAE alone cannot sample, so only its reconstructions are scored)."""
    real_test = test_data if real_test is None else real_test
    vqvae = model.vqvae if isinstance(model, CodePrior) else model
    notes = []
    if classifier is not None:
        _check_count(n_samples, "n_samples", PR_K + 1, MAX_SAMPLES, "samples")
        if min(len(real_test), n_samples) < NOISY_BELOW:
            notes.append(f"Fréchet distance and precision/recall from {min(len(real_test), n_samples)} images are "
                         f"noisy and biased (use at least {NOISY_BELOW:,}): compare them only between runs of the "
                         "same size")
    terms = evaluate(model, test_data, seed=seed)
    uniform = vqvae.uniform_prior_nats()
    report = {"model_kind": model.kind, "recon": terms["recon"], "prior_nll_uniform": uniform,
              "bound_uniform": terms["recon"] + uniform}
    if isinstance(model, CodePrior):
        report.update(prior="learned", prior_nll=terms["prior_nll"], bound=terms["bound"])
    else:
        report.update(prior="uniform", prior_nll=uniform, bound=terms["bound"], commitment=terms["commitment"])
        notes.append("a VQ-VAE alone has a uniform prior over codes: train a prior (`train-prior`) for a tighter "
                     "bound and for samples")
    dims = math.prod(vqvae.image_shape) * math.log(2)
    undefined = bits_per_dim_defined(vqvae.config.likelihood, is_binary(test_data))
    report.update(bits_per_dim=None if undefined else report["bound"] / dims,
                  bits_per_dim_uniform=None if undefined else report["bound_uniform"] / dims)
    if undefined:
        notes.append(f"no bits/dim: {undefined}")
    report.update(codebook_usage(vqvae, test_data), n_test=len(test_data), grid=list(vqvae.grid_shape))
    if classifier is not None:  # computed once, on rank 0, under torchrun
        sampler = _Tempered(model, temperature) if isinstance(model, CodePrior) else None
        quality = _vq_quality(vqvae, sampler, classifier, real_test, train_data, n_samples, seed) if is_main() else None
        report.update(broadcast_object(quality))
    report["notes"] = notes
    return report


def _vq_quality(vqvae: VQVAE, sampler, classifier, real_test, train_data, n_samples: int, seed: int) -> dict:
    if sampler is not None:
        result = sample_quality(sampler, classifier, real_test, train_data, n_samples, seed)
        return {**result, "temperature": sampler.temperature}
    from .features import classifier_features, frechet_distance
    from .metrics import model_batches

    reconstructions = torch.cat([vqvae.reconstruct(x).cpu() for x in model_batches(vqvae, real_test, 1000)])
    return {"frechet_distance_reconstructions": frechet_distance(classifier_features(classifier, reconstructions),
                                                                 classifier_features(classifier, real_test))}


class _Tempered(torch.nn.Module):
    """A CodePrior whose `sample` uses a fixed temperature (what sample_quality calls)."""

    def __init__(self, prior: CodePrior, temperature: float) -> None:
        super().__init__()
        self.prior, self.temperature = prior, temperature

    def sample(self, n: int, generator=None):
        return self.prior.sample(n, generator=generator, temperature=self.temperature)

    def reconstruct(self, x):
        return self.prior.reconstruct(x)


def format_vq_report(report: dict) -> str:
    """The VQ report as the few lines a reader looks at."""
    bits = "" if report.get("bits_per_dim") is None else f" = {report['bits_per_dim']:.4f} bits/dim"
    lines = [f"on {report['n_test']:,} test images ({report['model_kind']}, {report['prior']} prior):",
             f"  -log p(x|codes)      {report['recon']:8.2f} nats",
             f"  -log p(codes)        {report['prior_nll']:8.2f} nats   (uniform: {report['prior_nll_uniform']:.2f})",
             f"  bound on -log p(x)   {report['bound']:8.2f} nats{bits}",
             f"  codebook             {report['codes_used']:8d} of {report['codebook_size']} codes used, perplexity "
             f"{report['perplexity']:.1f}"]
    if "frechet_distance" in report:
        lines.append(f"  Fréchet distance     {report['frechet_distance']:8.2f} samples (T={report['temperature']}), "
                     f"{report['frechet_distance_reconstructions']:.2f} reconstructions")
        lines.append(f"  precision / recall   {report['precision']:8.3f} / {report['recall']:.3f}   "
                     f"({report['n_samples']:,} samples)")
    elif "frechet_distance_reconstructions" in report:
        lines.append(f"  Fréchet distance     {report['frechet_distance_reconstructions']:8.2f} reconstructions")
    lines += [f"  note: {note}" for note in report.get("notes", [])]
    return "\n".join(lines)
