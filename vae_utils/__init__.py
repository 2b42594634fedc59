"""vae_utils: a convolutional Variational Autoencoder (Kingma & Welling, 2013) for research notebooks."""
from .checkpoints import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from .config import TrainConfig, VAEConfig
from .data import DATASETS, ImageDataset, load_dataset
from .latent import interpolate
from .losses import LossTerms, kl_divergence, reconstruction_loss, vae_loss
from .metrics import evaluate
from .model import VAE, VAEOutput
from .plotting import plot_history, save_images, show_images
from .repro import resolve_device, resolve_precision, set_seed
from .training import NonFiniteLossError, TrainingInterrupted, train

__all__ = [
    "VAE", "VAEConfig", "VAEOutput", "TrainConfig",
    "vae_loss", "kl_divergence", "reconstruction_loss", "LossTerms",
    "load_dataset", "ImageDataset", "DATASETS",
    "train", "evaluate", "NonFiniteLossError", "TrainingInterrupted",
    "save_checkpoint", "load_checkpoint", "read_checkpoint", "CheckpointError",
    "interpolate", "show_images", "save_images", "plot_history",
    "set_seed", "resolve_device", "resolve_precision",
]
