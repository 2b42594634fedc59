"""Everything we can say about a trained model, in numbers that can sit next to a paper's."""
from __future__ import annotations

from typing import Optional

import torch

from .classifier import FeatureClassifier, class_histogram, classifier_features
from .data import ImageDataset, iterate_batches
from .diagnostics import latent_stats
from .frechet import frechet_distance, precision_recall
from .likelihood import iwae_nll
from .metrics import evaluate
from .model import VAE


@torch.no_grad()
def evaluation_report(model: VAE, test_data: ImageDataset, train_data: Optional[ImageDataset] = None,
                      classifier: Optional[FeatureClassifier] = None, iwae_k: int = 100, n_samples: int = 10_000,
                      seed: int = 0, real_test: Optional[ImageDataset] = None) -> dict:
    """-ELBO, IWAE NLL (nats, bits/dim), KL, active units; with a classifier also Fréchet distances,
    precision/recall and the class histogram of samples. All on test_data; train_data gives the floor.

    real_test (default test_data) is what samples are compared with: the grey-level test images when
    test_data is a binarized copy, since the decoder's means are grey levels too.
    """
    real_test = test_data if real_test is None else real_test
    report = dict(evaluate(model, test_data, seed=seed))
    report.update(iwae_nll(model, test_data, k=iwae_k, seed=seed))
    stats = latent_stats(model, test_data)
    report.update(active_units=int(stats.active.sum()), latent_dim=model.latent_dim,
                  kl_per_dim=[round(v, 4) for v in stats.kl_per_dim.tolist()])
    if classifier is None:
        return report
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    samples = torch.cat([model.sample(min(1000, n_samples - i), generator=generator).cpu()
                         for i in range(0, n_samples, 1000)])
    reconstructions = torch.cat([model.reconstruct(x).cpu() for x in iterate_batches(real_test, 1000, device)])
    real = classifier_features(classifier, real_test)
    fake = classifier_features(classifier, samples)
    report.update(
        frechet_distance=frechet_distance(fake, real),
        frechet_distance_reconstructions=frechet_distance(classifier_features(classifier, reconstructions), real),
        n_samples=n_samples,
        sample_class_histogram=[round(v, 4) for v in class_histogram(classifier, samples).tolist()],
    )
    if train_data is not None:
        floor = classifier_features(classifier, train_data.subset(min(len(train_data), len(real_test))))
        report["frechet_distance_floor"] = frechet_distance(floor, real)
    m = min(5000, len(real), len(fake))
    report["precision"], report["recall"] = precision_recall(real[:m], fake[:m])
    return report
