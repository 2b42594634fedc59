"""vae_utils: a convolutional Variational Autoencoder (Kingma & Welling, 2013) and its family, for notebooks.

The model families (`vae_utils/models/`), the registry and the configs load with the package; everything else
loads on first use of its name (PEP 562), so that `python -m vae_utils --help` answers without torchvision,
matplotlib or the data code.
"""
from __future__ import annotations

import importlib
from typing import Any

from . import models  # noqa: F401 (registers every family in vae_utils/models/)
from .capabilities import (DiscreteCodes, GaussianLatent, Hierarchical, ImportanceWeighted, LearnedPrior, Sampler,
                           offers)
from .config import Config, TrainConfig
from .losses import LossTerms, kl_divergence, reconstruction_loss, vae_loss
from .models.classifier import ClassifierConfig, FeatureClassifier
from .models.hvae import HVAE, HVAEConfig
from .models.ladder import LadderConfig, LadderVAE
from .models.prior import CodePrior, PriorConfig
from .models.vae import VAE, VAEConfig, VAEOutput
from .models.vqvae import VQVAE, VQVAEConfig
from .registry import UnknownModelError, model_class, register_model, registered_models
from .repro import resolve_device, resolve_precision, set_seed

_LAZY = {  # public name -> the module that defines it, imported when the name is first used
    **dict.fromkeys(["CheckpointError", "load_checkpoint", "read_checkpoint", "save_checkpoint"], "checkpoints"),
    **dict.fromkeys(["pretrained", "format_zoo"], "zoo"),
    **dict.fromkeys(["DATASETS", "ImageDataset", "binarize", "class_names", "load_dataset", "validation_split"],
                   "data"),
    **dict.fromkeys(["class_histogram", "classifier_features", "frechet_distance", "load_or_train_classifier",
                     "precision_recall"], "features"),
    **dict.fromkeys(["interpolate", "manifold_grid", "pca_2d", "slerp", "traverse"], "latent"),
    **dict.fromkeys(["LatentStats", "active_units", "code_counts", "codebook_usage", "evaluate", "group_kl", "iwae_nll",
                     "latent_stats", "log_importance_weights", "perplexity"], "metrics"),
    **dict.fromkeys(["plot_class_histogram", "plot_code_usage", "plot_history", "plot_kl_per_dim", "plot_kl_per_group",
                     "plot_latent_projection", "save_images", "show_images"], "plotting"),
    **dict.fromkeys(["evaluation_report", "format_report", "format_vq_report", "image_quality", "sample_quality",
                     "vq_report"],
                    "report"),
    **dict.fromkeys(["NonFiniteLossError", "TrainingInterrupted", "UpdatesSkippedError", "selected_epoch", "stop_reason",
                     "train"], "training"),
    **dict.fromkeys(["GMMSampler", "MAFSampler", "TwoStageSampler"], "samplers"),
    "CompileUnavailableError": "compiling",
    **dict.fromkeys(["disentanglement_scores", "disentanglement_suite", "mig", "mutual_information_gap"],
                    "disentanglement"),
    "conditional_accuracy": "report",
    **dict.fromkeys(["from_pretrained", "model_card", "push_to_hub", "save_pretrained"], "hub"),
    **dict.fromkeys(["InceptionFeatures", "inception_scores", "inception_weights"], "inception"),
    "reconstruction_fidelity": "reconstruction",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        try:  # a submodule, e.g. vu.features
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":  # the submodule exists but needs something missing
                raise
            raise AttributeError(f"module 'vae_utils' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "register_model", "model_class", "registered_models", "UnknownModelError", "Config",
    "ImportanceWeighted", "GaussianLatent", "Sampler", "DiscreteCodes", "LearnedPrior", "Hierarchical", "offers",
    "HVAE", "HVAEConfig", "LadderVAE", "LadderConfig", "group_kl", "UpdatesSkippedError",
    "VAE", "VAEConfig", "VAEOutput", "TrainConfig", "ClassifierConfig",
    "VQVAE", "VQVAEConfig", "CodePrior", "PriorConfig", "codebook_usage", "code_counts", "perplexity",
    "plot_code_usage", "sample_quality", "image_quality", "vq_report", "format_vq_report",
    "vae_loss", "kl_divergence", "reconstruction_loss", "LossTerms",
    "load_dataset", "ImageDataset", "DATASETS", "binarize", "class_names", "validation_split",
    "train", "selected_epoch", "stop_reason", "evaluate", "NonFiniteLossError", "TrainingInterrupted",
    "iwae_nll", "log_importance_weights", "latent_stats", "LatentStats", "active_units",
    "frechet_distance", "precision_recall", "evaluation_report", "format_report",
    "FeatureClassifier", "load_or_train_classifier", "classifier_features", "class_histogram",
    "save_checkpoint", "load_checkpoint", "read_checkpoint", "CheckpointError", "pretrained",
    "interpolate", "slerp", "traverse", "pca_2d", "manifold_grid", "show_images", "save_images", "plot_history",
    "plot_kl_per_dim", "plot_kl_per_group", "plot_latent_projection", "plot_class_histogram",
    "set_seed", "resolve_device", "resolve_precision", "GMMSampler", "MAFSampler", "TwoStageSampler",
    "save_pretrained", "from_pretrained", "push_to_hub", "model_card", "format_zoo",
    "InceptionFeatures", "inception_scores", "inception_weights", "reconstruction_fidelity",
]
