"""The conditional VAE (Sohn et al., 2015): the class label enters encoder and decoder, q(z|x, y) and p(x|z, y),
so that the ELBO bounds log p(x|y) and `sample(n, labels=...)` draws images of chosen classes."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Collection, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..config import TrainConfig, check, check_int
from ..importance import gaussian_log_weights
from ..losses import LossTerms, kl_warmup_factor, mean_image, vae_loss
from ..registry import register_model
from .vae import VAE, Decoder, Encoder, VAEConfig, VAEOutput

Labels = Union[int, Sequence[int], Tensor, None]


@dataclass(frozen=True)
class CVAEConfig(VAEConfig):
    """The VAE's architecture (every VAEConfig field) and the number of classes its label takes."""

    num_classes: int = 10  # labels 0..num_classes-1; the CLI sets it from the training set

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.num_classes, "num_classes", 1, 100_000)
        check(self.architecture == "conv", "architecture", self.architecture, "'conv' (the conditional networks are "
              "convolutional)")

    def for_training_set(self, n_images: int, given: Collection[str] = (), n_classes: int = 0) -> "CVAEConfig":
        """num_classes = the training set's classes, unless the user set it; an unlabelled set is a ValueError."""
        if n_classes == 0:
            raise ValueError("the conditional VAE (--model cvae) needs class labels and this training set has none: "
                             "use a labelled data set (fashion-mnist, mnist, cifar10, an image folder with one "
                             "sub-folder per class)")
        if "num_classes" in given:
            if self.num_classes < n_classes:
                raise ValueError(f"num_classes={self.num_classes} but the training set has {n_classes} classes: "
                                 f"choose at least {n_classes} (or leave it out)")
            return self
        return replace(self, num_classes=n_classes)


def _labelled(layers: nn.Sequential, h: Tensor, label_term: Tensor) -> Tensor:
    """layers applied to h, label_term added to the output of the first linear layer: a learned vector per class
    added there is the same as the one-hot label concatenated to that layer's input (Sohn et al.'s form)."""
    added = False
    for layer in layers:
        h = layer(h)
        if not added and isinstance(layer, nn.Linear):
            h, added = h + label_term.to(h.dtype), True
    return h


def _first_linear_width(layers: nn.Sequential) -> int:
    return next(layer.out_features for layer in layers if isinstance(layer, nn.Linear))


class ConditionalEncoder(Encoder):
    """The VAE's encoder with the label added to its first fully connected layer: q(z | x, y)."""

    def __init__(self, config: CVAEConfig) -> None:
        super().__init__(config)
        self.label = nn.Embedding(config.num_classes, _first_linear_width(self.head))

    def forward(self, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = _labelled(self.head, self.convs(x), self.label(labels)).chunk(2, dim=1)
        return mu, logvar


class ConditionalDecoder(Decoder):
    """The VAE's decoder with the label added to its first fully connected layer: p(x | z, y)."""

    def __init__(self, config: CVAEConfig) -> None:
        super().__init__(config)
        self.label = nn.Embedding(config.num_classes, _first_linear_width(self.head))

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        return self.given(labels)(z)

    def given(self, labels: Tensor) -> "LabelledDecoder":
        """This decoder with the labels of B images fixed: a z-only decoder for `gaussian_log_weights`."""
        return LabelledDecoder(self, labels)


class LabelledDecoder(nn.Module):
    """A ConditionalDecoder with the labels of B images fixed; it takes z (B * c, D), c samples per image in a row,
    and keeps the decoder's parts (head, deconvs, channels, side) for the sub-pixel form of `subpixel.py`."""

    def __init__(self, decoder: ConditionalDecoder, labels: Tensor) -> None:
        super().__init__()
        self.decoder, self.labels = decoder, labels
        self.deconvs, self.channels, self.side = decoder.deconvs, decoder.channels, decoder.side

    def head(self, z: Tensor) -> Tensor:
        rows = self.labels.repeat_interleave(len(z) // len(self.labels))
        return _labelled(self.decoder.head, z, self.decoder.label(rows))

    def forward(self, z: Tensor) -> Tensor:
        return self.deconvs(self.head(z).view(-1, self.channels, self.side, self.side))


@register_model("cvae")
class ConditionalVAE(VAE):
    """A VAE conditioned on the class label (Sohn et al., 2015): every method that sees images or makes them takes
    their labels (`labels=`); `train` and the report pass them from labelled data sets (`conditional = True`).

    Its -ELBO and IWAE NLL bound -log p(x|y), the label given; with uniform p(y) over C classes,
    -log p(x) <= -log p(x|y) + log C for the true label y, which bounds how far the two can be compared.
    """

    config_class = CVAEConfig
    encoder_class, decoder_class = ConditionalEncoder, ConditionalDecoder
    conditional = True

    @property
    def n_classes(self) -> int:
        """Number of classes the label takes."""
        return self.config.num_classes

    def check_labels(self, labels: Labels, n: int) -> Tensor:
        """labels as a long tensor (n,) on the model's device: a tensor or sequence of n class indices, or one int for
        all; ValueError when missing, of the wrong length or outside 0..num_classes-1."""
        if labels is None:
            raise ValueError("the conditional VAE needs the images' labels (labels=...): pass the class of each image")
        device = next(self.parameters()).device
        if isinstance(labels, int) and not isinstance(labels, bool):
            labels = torch.full((n,), labels, dtype=torch.long)
        labels = torch.as_tensor(labels)
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.shape != (n,):
            raise ValueError(f"labels: expected {n} integer class indices, got {labels.dtype} {tuple(labels.shape)}")
        labels = labels.to(device=device, dtype=torch.long)
        if n and not (0 <= int(labels.min()) and int(labels.max()) < self.n_classes):
            raise ValueError(f"labels from {int(labels.min())} to {int(labels.max())}: this model knows classes 0 "
                             f"to {self.n_classes - 1}")
        return labels

    def encode(self, x: Tensor, labels: Labels = None) -> tuple[Tensor, Tensor]:
        """q(z|x, y) as (mu, logvar), each (B, latent_dim), for images x (B, C, H, W) in [0, 1] and their labels."""
        self.check_input(x)
        return self.encoder(x, self.check_labels(labels, len(x)))

    def posterior(self, x: Tensor, labels: Labels = None) -> tuple[Tensor, Tensor]:
        """q(z|x, y) as (mu, logvar): the GaussianLatent capability, with the labels."""
        return self.encode(x, labels)

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None,
                batch_rows: Optional[tuple[int, int]] = None, labels: Labels = None) -> VAEOutput:
        """Encode with the labels, sample one z per image, decode with the labels."""
        labels = self.check_labels(labels, len(x))
        mu, logvar = self.encode(x, labels)
        z = self.reparameterize(mu, logvar, generator, batch_rows)
        return VAEOutput(self.decoder(z, labels), mu, logvar, z)

    def loss(self, x: Tensor, config: Optional[TrainConfig] = None, epochs_done: float = 0.0,
             generator: Optional[torch.Generator] = None, check_range: bool = True,
             batch_rows: Optional[tuple[int, int]] = None, labels: Labels = None) -> LossTerms:
        """The conditional -ELBO, -log p(x|z, y) + beta KL(q(z|x, y) || N(0, I)): batch means in nats per image."""
        beta = 1.0 if config is None else config.beta * kl_warmup_factor(epochs_done, config.kl_warmup_epochs)
        c = self.config
        return vae_loss(self(x, generator, batch_rows, labels), x, beta, c.likelihood, c.gaussian_std, check_range)

    def log_importance_weights(self, x: Tensor, k: int, generator: Optional[torch.Generator] = None, *,
                               labels: Labels = None, check_range: bool = True, precision: str = "fp32",
                               **options) -> Tensor:
        """log w_i = log p(x|z_i, y) + log p(z_i) - log q(z_i|x, y) for k samples per image: (B, k) nats."""
        labels = self.check_labels(labels, len(x))
        mu, logvar = self.encode(x, labels)
        c = self.config
        return gaussian_log_weights(mu, logvar, self.decoder.given(labels), x, k, c.likelihood, c.gaussian_std,
                                    generator, check_range=check_range, precision=precision, **options)

    def decode_logits(self, z: Tensor, labels: Labels = None) -> Tensor:
        """Decoder output for latents z (B, latent_dim) and labels."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected latents of shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        return self.decoder(z, self.check_labels(labels, len(z)))

    def decode(self, z: Tensor, labels: Labels = None) -> Tensor:
        """Mean image (B, C, H, W) in [0, 1] of p(x|z, y)."""
        return mean_image(self.decode_logits(z, labels), self.config.likelihood)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, labels: Labels = None) -> Tensor:
        """Decode the posterior mean of x with its labels: (B, C, H, W) in [0, 1]."""
        labels = self.check_labels(labels, len(x))
        mu, _ = self.encode(x, labels)
        return self.decode(mu, labels)

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None, labels: Labels = None) -> Tensor:
        """n images (n, C, H, W) in [0, 1] from z ~ N(0, I) and the given labels (one int: all of that class); without
        labels, each drawn uniformly from the classes with the generator."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n={n!r}: expected a positive number of samples")
        device = next(self.parameters()).device
        if generator is not None and generator.device != device:
            raise ValueError(f"generator is on {generator.device} but the model is on {device}")
        if labels is None:
            labels = torch.randint(self.n_classes, (n,), generator=generator, device=device)
        labels = self.check_labels(labels, n)
        z = torch.randn((n, self.latent_dim), generator=generator, device=device)
        return self.decode(z, labels)

    @torch.no_grad()
    def sample_by_class(self, per_class: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """per_class samples of every class, class by class: (num_classes * per_class, C, H, W), one grid row each
        with make_grid(nrow=per_class)."""
        labels = torch.arange(self.n_classes).repeat_interleave(per_class)
        return self.sample(len(labels), generator, labels=labels)
