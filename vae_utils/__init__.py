"""vae_utils: a convolutional Variational Autoencoder (Kingma & Welling, 2013) and its family, for notebooks."""
from . import models  # registers every family in vae_utils/models/
from .capabilities import DiscreteCodes, GaussianLatent, ImportanceWeighted, LearnedPrior, Sampler, offers
from .checkpoints import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from .config import Config, TrainConfig
from .data import DATASETS, ImageDataset, binarize, class_names, load_dataset
from .features import (ClassifierConfig, FeatureClassifier, class_histogram, classifier_features, frechet_distance,
                       load_or_train_classifier, precision_recall)
from .latent import interpolate, manifold_grid, pca_2d, slerp, traverse
from .losses import LossTerms, kl_divergence, reconstruction_loss, vae_loss
from .metrics import (LatentStats, active_units, code_counts, codebook_usage, evaluate, iwae_nll, latent_stats,
                      log_importance_weights, perplexity)
from .models.prior import CodePrior, PriorConfig
from .models.vae import VAE, VAEConfig, VAEOutput
from .models.vqvae import VQVAE, VQVAEConfig
from .plotting import (plot_class_histogram, plot_code_usage, plot_history, plot_kl_per_dim, plot_latent_projection,
                       save_images, show_images)
from .registry import UnknownModelError, model_class, register_model, registered_models
from .report import evaluation_report, format_report, format_vq_report, sample_quality, vq_report
from .repro import resolve_device, resolve_precision, set_seed
from .training import NonFiniteLossError, TrainingInterrupted, train

__all__ = [
    "register_model", "model_class", "registered_models", "UnknownModelError", "Config",
    "ImportanceWeighted", "GaussianLatent", "Sampler", "DiscreteCodes", "LearnedPrior", "offers",
    "VAE", "VAEConfig", "VAEOutput", "TrainConfig", "ClassifierConfig",
    "VQVAE", "VQVAEConfig", "CodePrior", "PriorConfig", "codebook_usage", "code_counts", "perplexity",
    "plot_code_usage", "sample_quality", "vq_report", "format_vq_report",
    "vae_loss", "kl_divergence", "reconstruction_loss", "LossTerms",
    "load_dataset", "ImageDataset", "DATASETS", "binarize", "class_names",
    "train", "evaluate", "NonFiniteLossError", "TrainingInterrupted",
    "iwae_nll", "log_importance_weights", "latent_stats", "LatentStats", "active_units",
    "frechet_distance", "precision_recall", "evaluation_report", "format_report",
    "FeatureClassifier", "load_or_train_classifier", "classifier_features", "class_histogram",
    "save_checkpoint", "load_checkpoint", "read_checkpoint", "CheckpointError",
    "interpolate", "slerp", "traverse", "pca_2d", "manifold_grid", "show_images", "save_images", "plot_history",
    "plot_kl_per_dim", "plot_latent_projection", "plot_class_histogram",
    "set_seed", "resolve_device", "resolve_precision",
]
