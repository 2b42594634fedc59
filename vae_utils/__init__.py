"""vae_utils: a convolutional Variational Autoencoder (Kingma & Welling, 2013), and a VQ-VAE beside it, for notebooks."""
from .checkpoints import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from .config import ClassifierConfig, PriorConfig, TrainConfig, VAEConfig, VQVAEConfig
from .data import DATASETS, ImageDataset, binarize, class_names, load_dataset
from .features import (FeatureClassifier, class_histogram, classifier_features, frechet_distance,
                       load_or_train_classifier, precision_recall)
from .latent import interpolate, manifold_grid, pca_2d, slerp, traverse
from .losses import LossTerms, kl_divergence, reconstruction_loss, vae_loss
from .metrics import (LatentStats, active_units, evaluate, evaluation_report, format_report, iwae_nll,
                      latent_stats, log_importance_weights, sample_quality)
from .model import VAE, VAEOutput
from .prior import CodePrior
from .vq_metrics import format_vq_report, vq_report
from .vqvae import VQVAE, code_counts, codebook_usage, perplexity
from .plotting import (plot_class_histogram, plot_code_usage, plot_history, plot_kl_per_dim, plot_latent_projection, save_images,
                       show_images)
from .repro import resolve_device, resolve_precision, set_seed
from .training import NonFiniteLossError, TrainingInterrupted, train

__all__ = [
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
