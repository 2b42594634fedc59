"""One evaluation report for every model family: it asks what the model offers (capabilities.py), never its kind."""
from __future__ import annotations

import inspect
import math
from typing import Any, Optional

import torch
from torch import nn

from .capabilities import DiscreteCodes, GaussianLatent, Hierarchical, ImportanceWeighted, LearnedPrior, Sampler
from .data import ImageDataset, is_conditional, model_inputs
from .distributed import broadcast_object, is_main
from .inception import InceptionFeatures, inception_scores
from .features import (FeatureClassifier, class_histogram, classifier_features, frechet_distance, precision_recall,
                       predicted_classes)
from .config import MAX_IWAE_K, MAX_SAMPLES, PR_K
from .disentanglement import disentanglement_suite
from .metrics import (ACTIVE_GROUP_NATS, NOISY_BELOW, _check_count, bits_undefined, codebook_usage, evaluate,
                      group_kl, iwae_nll, latent_stats)
from .reconstruction import reconstruction_fidelity

NEAR_CHANCE = 1.5  # a feature classifier below 1.5 / n_classes test accuracy is too close to chance to trust
UNIFORM_BITS = {"discretized-logistic": 8.0, "discretized-mix-logistic": 8.0,  # bits/dim of a uniform guess: 256
                "bernoulli": 1.0}  # levels, 2 levels
# How format_report names the loss terms it knows; any other term is shown under its own name.
TERM_LABELS = {"neg_elbo": "-ELBO (k=1)", "prior_nll": "-log p(codes)", "kl": "KL", "neg_iwae_bound": "-L_k (training)",
               "mmd": "MMD²"}
PARTS = ("recon", "kl", "commitment", "mmd")  # the parts of a total that is not the -ELBO, shown beside it


@torch.no_grad()
def evaluation_report(model: nn.Module, test_data: ImageDataset, train_data: Optional[ImageDataset] = None,
                      classifier: Optional[FeatureClassifier] = None, iwae_k: int = 100, n_samples: int = 10_000,
                      seed: int = 0, real_test: Optional[ImageDataset] = None, iwae_precision: str = "fp32",
                      progress: bool = False, sample_options: Optional[dict[str, Any]] = None,
                      classifier_accuracy: Optional[float] = None, ex_post: Optional[nn.Module] = None,
                      inception: Optional[InceptionFeatures] = None) -> dict:
    """Everything the model offers, on test_data, in nats per image; `notes` says what is missing or noisy.

    Always: the model's loss terms with one fixed-seed sample per image (`evaluate`: -ELBO, recon and KL for a
    VAE). Importance weights: the IWAE NLL with iwae_k samples and bits/dim. A `bound` term without them: bits/dim
    of the bound. A Gaussian posterior: KL per dimension and active units, and on a set that carries its
    generative factors (dSprites) disentanglement_lib's six metrics (MIG, β-VAE and FactorVAE scores, DCI, SAP,
    modularity). Discrete codes: codebook usage and
    perplexity over the whole split, and the bound under a uniform prior (a learned prior's NLL comes from its
    loss terms). With a classifier, a model that samples: Fréchet distances, precision/recall and the class
    histogram of n_samples samples (sample_options go to `model.sample`, e.g. a prior's temperature); one that only
    reconstructs: the Fréchet distance of its reconstructions. train_data gives the Fréchet floor.

    real_test (default test_data) is what samples are compared with: the grey-level test images when test_data is
    a binarized copy, since the decoder's means are grey levels too. Sizes are checked before any work.

    `notes` also says when a figure means little: bits/dim worse than a uniform distribution over the pixel values,
    no active latent unit, or a classifier whose test accuracy (classifier_accuracy) is near chance, in which case
    the figures that rest on its features are left out.

    ex_post (e.g. a samplers.GMMSampler) adds the same sample figures for its samples, prefixed with its `name`
    (gmm_frechet_distance, gmm_precision, gmm_recall, gmm_sample_class_histogram).

    A model that reconstructs: PSNR and SSIM of its reconstructions of test_data. With `inception` (an
    InceptionFeatures), a model that samples: FID and KID of n_samples samples against real_test on the standard
    Inception's features (inception_fid, inception_kid, inception_kid_sd), the figures image papers print.
    """
    real_test = test_data if real_test is None else real_test
    weighted, samples = isinstance(model, ImportanceWeighted), classifier is not None and isinstance(model, Sampler)
    inception = inception if isinstance(model, Sampler) else None
    if weighted:
        _check_count(iwae_k, "iwae_k", 1, MAX_IWAE_K, "importance samples")
    if samples or inception is not None:
        _check_count(n_samples, "n_samples", PR_K + 1, MAX_SAMPLES, "samples")
        _check_count(len(real_test), "test images", PR_K + 1, math.inf, "images for precision/recall")
    sample_options = _checked_sample_options(model, sample_options)
    notes = []
    if classifier is not None and classifier_accuracy is not None and classifier_accuracy < NEAR_CHANCE / (
            classifier.n_classes):
        notes.append(f"the feature classifier's test accuracy {classifier_accuracy:.2f} is near chance (1/"
                     f"{classifier.n_classes} = {1 / classifier.n_classes:.2f}): its features say little, so the "
                     "Fréchet distance, precision/recall and class histogram are left out (train it on more data or "
                     "for more epochs: python -m vae_utils classifier)")
        classifier, samples = None, False
    if classifier is not None and min(len(real_test), n_samples) < NOISY_BELOW:
        notes.append(f"Fréchet distance and precision/recall from {min(len(real_test), n_samples)} images are "
                     f"noisy and biased (use at least {NOISY_BELOW:,}): compare them only between runs of the "
                     "same size")
    report: dict[str, Any] = {"model_kind": getattr(model, "kind", type(model).__name__)}
    report.update(evaluate(model, test_data, seed=seed))
    dims = math.prod(model.image_shape) * math.log(2)
    undefined = bits_undefined(model, test_data)
    if weighted:
        report.update(iwae_nll(model, test_data, k=iwae_k, seed=seed, precision=iwae_precision, progress=progress))
        report.pop("bits_per_dim_note", None)
    elif "bound" in report:
        report["bits_per_dim"] = None if undefined else report["bound"] / dims
    else:
        notes.append(getattr(model, "no_density_note", None) or f"{type(model).__name__} offers no importance "
                     "weights and no bound: no -log p(x) estimate beyond its loss")
    if undefined and (weighted or "bound" in report):
        notes.append(f"no bits/dim: {undefined}")
    if isinstance(model, DiscreteCodes):
        report.update(_code_figures(model, report, dims, undefined))
        if not isinstance(model, LearnedPrior):
            notes.append("a VQ-VAE alone has a uniform prior over codes: train a prior (`train-prior`) for a "
                         "tighter bound and for samples")
        report.update(codebook_usage(model, test_data))
    if isinstance(model, GaussianLatent):
        stats = latent_stats(model, test_data)
        report.update(active_units=int(stats.active.sum()), latent_dim=model.latent_dim,
                      kl_per_dim=[round(v, 4) for v in stats.kl_per_dim.tolist()])
        if getattr(test_data, "factors", None) is not None:  # a set with known generative factors (dSprites)
            report.update(disentanglement_suite(stats.mu, test_data.factors, test_data.factor_names, seed=seed))
        if report["active_units"] == 0:
            notes.append("no latent unit is active (no posterior mean varies over the data by more than 0.01): the "
                         "posterior has collapsed to the prior and the decoder ignores z; train longer, or use KL "
                         "warm-up or a smaller beta")
    if isinstance(model, Hierarchical):
        per_group = group_kl(model, test_data, seed=seed)
        report.update(kl_per_group=[round(v, 4) for v in per_group.tolist()], n_groups=model.n_groups,
                      active_groups=int((per_group >= ACTIVE_GROUP_NATS).sum()))
    uniform_bits = UNIFORM_BITS.get(getattr(model, "likelihood", None))
    if report.get("bits_per_dim") is not None and uniform_bits and report["bits_per_dim"] > uniform_bits:
        notes.append(f"{report['bits_per_dim']:.2f} bits/dim is worse than a uniform distribution over the pixel "
                     f"values ({uniform_bits:g} bits/dim): the model has not learned the data yet")
    if is_conditional(model):
        notes.append(f"{type(model).__name__} is conditioned on the label: its -ELBO and IWAE NLL bound "
                     "-log p(x|y), the true label given; -log p(x) is at most that plus log(classes) nats")
    report["n_test"] = len(test_data)
    if isinstance(model, DiscreteCodes):
        report["grid"] = list(model.grid_shape)
    if classifier is not None:  # computed once, on rank 0, under torchrun
        if samples:
            quality = (sample_quality(model, classifier, real_test, train_data, n_samples, seed, sample_options)
                       if is_main() else None)
        else:
            quality = _reconstruction_quality(model, classifier, real_test) if is_main() else None
            if not hasattr(model, "reconstruct"):
                notes.append(f"{type(model).__name__} neither samples nor reconstructs: no Fréchet distance")
        report.update(broadcast_object(quality))
        if samples and is_conditional(model) and classifier.n_classes == model.n_classes:
            report.update(broadcast_object(conditional_accuracy(model, classifier, n_samples, seed)
                                           if is_main() else None))
        if ex_post is not None and samples:
            name = getattr(ex_post, "name", "ex_post")
            quality = sample_quality(ex_post, classifier, real_test, None, n_samples, seed) if is_main() else None
            report.update({f"{name}_{k}": v for k, v in broadcast_object(quality).items()
                           if k in ("frechet_distance", "precision", "recall", "sample_class_histogram")})
    if hasattr(model, "reconstruct"):
        report.update(broadcast_object(reconstruction_fidelity(model, test_data) if is_main() else None))
    if inception is not None:
        scores = (inception_scores(inception, real_test, draw_samples(model, n_samples, seed, sample_options), seed)
                  if is_main() else None)
        report.update({f"inception_{k}": v for k, v in broadcast_object(scores).items()}, inception_samples=n_samples)
    report.update(sample_options)  # e.g. the prior's temperature, recorded even when no sample was scored
    report["notes"] = notes
    return report


def _code_figures(model: nn.Module, report: dict, dims: float, undefined: Optional[str]) -> dict:
    """The prior over codes (learned, or uniform) and the bound under the uniform prior."""
    uniform = model.uniform_prior_nats()
    figures = {"prior_nll_uniform": uniform, "bound_uniform": report["recon"] + uniform,
               "prior": "learned" if isinstance(model, LearnedPrior) else "uniform"}
    if figures["prior"] == "uniform":
        figures["prior_nll"] = uniform
    figures["bits_per_dim_uniform"] = None if undefined else figures["bound_uniform"] / dims
    return figures


def _checked_sample_options(model: nn.Module, options: Optional[dict[str, Any]]) -> dict[str, Any]:
    """options, refused up front when model.sample does not take them or a temperature is not > 0."""
    options = dict(options or {})
    if not options:
        return options
    sample = getattr(model, "sample", None)
    accepted = set(inspect.signature(sample).parameters) if sample is not None else set()
    wrong = sorted(set(options) - accepted)
    if wrong:
        raise ValueError(f"{type(model).__name__}.sample takes no {', '.join(wrong)}: drop "
                         f"{'it' if len(wrong) == 1 else 'them'}")
    temperature = options.get("temperature", 1.0)
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature > 0:
        raise ValueError(f"temperature={temperature!r}: expected a number > 0 (1 samples the prior itself)")
    return options


def sample_quality(model: nn.Module, classifier: FeatureClassifier, real_test: ImageDataset,
                   train_data: Optional[ImageDataset], n_samples: int, seed: int,
                   sample_options: Optional[dict[str, Any]] = None) -> dict:
    """Fréchet distances, precision/recall and the class histogram of n_samples samples against real_test."""
    options = dict(sample_options or {})
    samples = draw_samples(model, n_samples, seed, options)
    reconstructions = torch.cat([model.reconstruct(x, **extra).cpu()
                                 for x, extra in model_inputs(model, real_test, 1000)])
    real = classifier_features(classifier, real_test)
    fake = classifier_features(classifier, samples)
    result = {
        **_versus(real, fake),
        "frechet_distance_reconstructions": frechet_distance(classifier_features(classifier, reconstructions), real),
        "n_samples": n_samples,
        "sample_class_histogram": [round(v, 4) for v in class_histogram(classifier, samples).tolist()],
        **options,
    }
    if train_data is not None:
        floor = classifier_features(classifier, train_data.subset(min(len(train_data), len(real_test))))
        result["frechet_distance_floor"] = frechet_distance(floor, real)
    return result


def draw_samples(model: nn.Module, n: int, seed: int, sample_options: Optional[dict[str, Any]] = None
                 ) -> torch.Tensor:
    """n samples of the model (N, C, H, W) on the CPU, drawn 1,000 at a time from one generator seeded with seed."""
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    return torch.cat([model.sample(min(1000, n - i), generator=generator, **(sample_options or {})).cpu()
                      for i in range(0, n, 1000)])


def _versus(real: torch.Tensor, fake: torch.Tensor) -> dict:
    """The Fréchet distance of two sets of features, and precision/recall on up to 5,000 of each."""
    m = min(5000, len(real), len(fake))
    precision, recall = precision_recall(real[:m], fake[:m], k=PR_K)
    return {"frechet_distance": frechet_distance(fake, real), "precision": precision, "recall": recall}


def image_quality(classifier: FeatureClassifier, real_test: ImageDataset, images: torch.Tensor) -> dict:
    """Fréchet distance and precision/recall of any images (N, C, H, W) in [0, 1] against real_test, as
    sample_quality scores samples: the scale beside a model's figures (real images blurred, an untrained model)."""
    return _versus(classifier_features(classifier, real_test), classifier_features(classifier, images))


def conditional_accuracy(model: nn.Module, classifier: FeatureClassifier, n_samples: int, seed: int) -> dict:
    """The share of samples drawn for class c that the classifier assigns to c: overall and per class, from
    n_samples samples spread evenly over the classes (at least one each)."""
    per_class = max(1, n_samples // model.n_classes)
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    labels = torch.arange(model.n_classes).repeat_interleave(per_class)
    samples = torch.cat([model.sample(len(chunk), generator=generator, labels=chunk).cpu()
                         for chunk in labels.split(1000)])
    hits = (predicted_classes(classifier, samples) == labels).double().view(model.n_classes, per_class).mean(1)
    return {"conditional_accuracy": float(hits.mean()),
            "conditional_accuracy_per_class": [round(v, 4) for v in hits.tolist()]}


def _reconstruction_quality(model: nn.Module, classifier: FeatureClassifier, real_test: ImageDataset) -> dict:
    """The Fréchet distance of the model's reconstructions of real_test (a model that cannot sample)."""
    if not hasattr(model, "reconstruct"):
        return {}
    reconstructions = torch.cat([model.reconstruct(x, **extra).cpu()
                                 for x, extra in model_inputs(model, real_test, 1000)])
    return {"frechet_distance_reconstructions": frechet_distance(classifier_features(classifier, reconstructions),
                                                                 classifier_features(classifier, real_test))}


def format_report(report: dict) -> str:
    """The report as the few lines a reader looks at: the loss, bounds in nats and bits/dim, latents or codes,
    sample quality, notes."""
    kind = f" ({report['model_kind']}" + (f", {report['prior']} prior)" if "prior" in report else ")")
    lines = [f"on {report['n_test']:,} test images{kind if 'model_kind' in report else ''}:"]
    if "prior" not in report:  # a model with codes shows its terms as recon + prior below
        lines.append(_loss_line(report))
    bits = "" if report.get("bits_per_dim") is None else f" = {report['bits_per_dim']:.4f} bits/dim"
    if "iwae_nll" in report:
        k = str(report["iwae_k"])
        lines.append(f"  IWAE NLL (k={k}){' ' * max(1, 8 - len(k))}{report['iwae_nll']:8.2f} nats{bits}")
    if "prior" in report:
        lines.append(f"  -log p(x|codes)      {report['recon']:8.2f} nats")
        lines.append(f"  -log p(codes)        {report['prior_nll']:8.2f} nats   (uniform: "
                     f"{report['prior_nll_uniform']:.2f})")
    if "bound" in report and "iwae_nll" not in report:
        lines.append(f"  bound on -log p(x)   {report['bound']:8.2f} nats{bits}")
    if "codes_used" in report:
        lines.append(f"  codebook             {report['codes_used']:8d} of {report['codebook_size']} codes used, "
                     f"perplexity {report['perplexity']:.1f}")
    if "active_units" in report:
        lines.append(f"  active units         {report['active_units']:8d} of {report['latent_dim']}")
    if "kl_per_group" in report:
        lines.append(f"  active groups        {report['active_groups']:8d} of {report['n_groups']}   (KL per group, "
                     f"top first: {', '.join(f'{v:.1f}' for v in report['kl_per_group'])} nats)")
    if "mig" in report:
        per_factor = ", ".join(f"{k} {v:.2f}" for k, v in report["mig_per_factor"].items())
        lines.append(f"  MIG                  {report['mig']:8.3f}   ({per_factor})")
    if "beta_vae_score" in report:
        lines.append(f"  β-VAE / FactorVAE score {report['beta_vae_score']:5.3f} / {report['factor_vae_score']:.3f}   "
                     f"SAP {report['sap']:.3f}   modularity {report['modularity']:.3f}   explicitness "
                     f"{report['explicitness_test']:.3f}")
        lines.append(f"  DCI                  {report['dci_disentanglement']:8.3f} disentanglement, "
                     f"{report['dci_completeness']:.3f} completeness, {report['dci_informativeness_test']:.3f} "
                     "informativeness")
    if "frechet_distance" in report:
        floor = report.get("frechet_distance_floor")
        at = f" (T={report['temperature']})" if "temperature" in report else ""
        lines.append(f"  Fréchet distance     {report['frechet_distance']:8.2f} samples{at}, "
                     f"{report['frechet_distance_reconstructions']:.2f} reconstructions"
                     + ("" if floor is None else f", {floor:.2f} real train vs test (floor)"))
        lines.append(f"  precision / recall   {report['precision']:8.3f} / {report['recall']:.3f}   "
                     f"({report['n_samples']:,} samples)")
        for name in sorted(k.removesuffix("_frechet_distance") for k in report if k.endswith("_frechet_distance")):
            lines.append(f"  with the {name} sampler: Fréchet distance {report[name + '_frechet_distance']:.2f}, "
                         f"precision / recall {report[name + '_precision']:.3f} / {report[name + '_recall']:.3f}")
    if "psnr" in report:
        lines.append(f"  reconstructions      PSNR {report['psnr']:.2f} dB, SSIM {report['ssim']:.4f}")
    if "inception_fid" in report:
        lines.append(f"  Inception FID / KID  {report['inception_fid']:8.2f} / {report['inception_kid']:.4f} ± "
                     f"{report['inception_kid_sd']:.4f}   ({report['inception_samples']:,} samples, the standard "
                     "Inception's features)")
    if "conditional_accuracy" in report:
        lines.append(f"  conditional accuracy {report['conditional_accuracy']:8.3f}   (samples drawn for class c "
                     "that the classifier assigns to c)")
    if "frechet_distance" not in report and "frechet_distance_reconstructions" in report:
        lines.append(f"  Fréchet distance     {report['frechet_distance_reconstructions']:8.2f} reconstructions")
    lines += [f"  note: {note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def _loss_line(report: dict) -> str:
    """The model's total loss term with its parts, e.g. '-ELBO (k=1)  239.56 nats   (recon 225.12 + KL 14.44)';
    a family trained on another total (the IWAE's -L_k) shows that first, then its -ELBO."""
    elbo = (f"  -ELBO (k=1)          {report['neg_elbo']:8.2f} nats   (recon {report['recon']:.2f} + KL "
            f"{report['kl']:.2f})") if "neg_elbo" in report else ""
    total = [k for k in report if k != "model_kind"][0]  # the loss terms come first, the total first among them
    if total == "neg_elbo":
        return elbo
    parts = [f"{TERM_LABELS.get(k, k)} {report[k]:{'.4g' if abs(report[k]) < 1 else '.2f'}}"
             for k in PARTS if k in report]  # small parts (an MMD²) keep their digits
    line = f"  {TERM_LABELS.get(total, total):<20} {report[total]:8.2f} nats" + (
        f"   ({', '.join(parts)})" if parts and not elbo else "")
    return line + ("\n" + elbo if elbo else "")


def vq_report(model: nn.Module, test_data: ImageDataset, train_data: Optional[ImageDataset] = None,
              classifier: Optional[FeatureClassifier] = None, n_samples: int = 10_000, seed: int = 0,
              real_test: Optional[ImageDataset] = None, temperature: float = 1.0) -> dict:
    """`evaluation_report` with a sampling temperature, as the VQ-VAE's report was called before (kept for
    notebooks that use it)."""
    options = {"temperature": temperature} if isinstance(model, Sampler) else {}
    return evaluation_report(model, test_data, train_data, classifier, n_samples=n_samples, seed=seed,
                             real_test=real_test, sample_options=options)


format_vq_report = format_report  # the one formatter serves every family
