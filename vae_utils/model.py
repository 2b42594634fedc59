"""The convolutional VAE: encoder q(z|x), decoder p(x|z) and the reparameterization trick."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from .config import TrainConfig, VAEConfig
from .losses import LossTerms, decoder_channels, kl_warmup_factor, mean_image, vae_loss


class VAEOutput(NamedTuple):
    """What `VAE.forward` returns and `vae_loss` takes."""

    x_logits: Tensor  # decoder output: (B, C, H, W) logits, (B, 2C, H, W) for the logistic; see losses.mean_image
    mu: Tensor  # (B, latent_dim) posterior mean
    logvar: Tensor  # (B, latent_dim) posterior log-variance
    z: Tensor  # (B, latent_dim) one reparameterized sample


def feature_sizes(image_size: int, n_layers: int) -> list[int]:
    """Spatial size after each stride-2 conv (kernel 4, padding 1 floors n/2), input size first."""
    sizes = [image_size]
    for _ in range(n_layers):
        sizes.append(sizes[-1] // 2)
    return sizes


class ResBlock(nn.Module):
    """x + conv3x3(SiLU(conv3x3(SiLU(x)))): depth at one resolution, the shape unchanged."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.SiLU(), nn.Conv2d(channels, channels, 3, 1, 1),
                                  nn.SiLU(), nn.Conv2d(channels, channels, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """Strided convolutions, then fully connected layers to (mu, logvar) of q(z|x)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        widths = (config.in_channels, *config.channels)
        self.convs = nn.Sequential(*(
            layer for c_in, c_out in zip(widths, widths[1:])
            for layer in (nn.Conv2d(c_in, c_out, 4, 2, 1), nn.SiLU(), *(ResBlock(c_out) for _ in range(config.res_blocks)))
        ))
        side = feature_sizes(config.image_size, len(config.channels))[-1]
        flat = config.channels[-1] * side * side
        hidden = [nn.Linear(flat, config.hidden_dim), nn.SiLU()] if config.hidden_dim else []
        self.head = nn.Sequential(nn.Flatten(), *hidden, nn.Linear(config.hidden_dim or flat, 2 * config.latent_dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.head(self.convs(x)).chunk(2, dim=1)  # (B, latent_dim) each
        return mu, logvar


class Decoder(nn.Module):
    """Fully connected layers to a feature map, then transposed convolutions to image logits."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        sizes = feature_sizes(config.image_size, len(config.channels))  # e.g. [28, 14, 7]
        self.side = sizes[-1]
        flat = config.channels[-1] * self.side * self.side
        hidden = [nn.Linear(config.latent_dim, config.hidden_dim), nn.SiLU()] if config.hidden_dim else []
        self.head = nn.Sequential(*hidden, nn.Linear(config.hidden_dim or config.latent_dim, flat), nn.SiLU())
        widths = (*reversed(config.channels), decoder_channels(config.likelihood, config.in_channels))
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(widths, widths[1:])):
            n_in, n_out = sizes[-1 - i], sizes[-2 - i]
            layers.extend(ResBlock(c_in) for _ in range(config.res_blocks))
            # ConvTranspose2d(k=4, s=2, p=1) gives 2n; output_padding restores an odd size (7 -> 14 -> 28, 3 -> 7).
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, output_padding=n_out - 2 * n_in))
            layers.append(nn.SiLU())
        self.deconvs = nn.Sequential(*layers[:-1])  # no activation on the logits
        self.channels = config.channels[-1]

    def forward(self, z: Tensor) -> Tensor:
        h = self.head(z).view(-1, self.channels, self.side, self.side)  # (B, C_last, s, s)
        return self.deconvs(h)  # (B, C, H, W) logits


def check_images(model: nn.Module, x: Tensor) -> None:
    """Raise ValueError unless x is a float batch of shape (B, C, H, W) that matches model.image_shape."""
    if not isinstance(x, Tensor):
        raise ValueError(f"expected a torch.Tensor of images, got {type(x).__name__}")
    if x.dim() != 4 or tuple(x.shape[1:]) != model.image_shape:
        want = "(B, {}, {}, {})".format(*model.image_shape)
        raise ValueError(f"expected images of shape {want}, got {tuple(x.shape)}; "
                         f"build the {type(model).__name__} with matching in_channels/image_size or resize the data")
    want = next(model.parameters()).dtype
    if x.dtype != want:
        hint = "divide uint8 images by 255" if not x.is_floating_point() else f"convert them with x.to({want})"
        raise ValueError(f"expected {want} images in [0, 1] (the model's dtype), got dtype {x.dtype}; {hint}")


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__


class VAE(nn.Module):
    """Convolutional Variational Autoencoder (Kingma & Welling, 2013) with a N(0, I) prior."""

    kind = "vae"  # the family name checkpoints record (see checkpoints.model_kinds)
    config_class = VAEConfig
    total_name = "neg_elbo"  # how `evaluate` names the `total` term
    best_metric = "neg_elbo"  # the test metric that picks best.pt

    def __init__(self, config: Optional[VAEConfig] = None, **overrides) -> None:
        super().__init__()
        if config is None:
            config = VAEConfig(**overrides)
        elif overrides:
            config = VAEConfig(**{**config.to_dict(), **overrides})
        self.config = config
        try:
            self.encoder = Encoder(config)
            self.decoder = Decoder(config)
        except RuntimeError as err:  # the allocator's "not enough memory: you tried to allocate ..."
            with torch.device("meta"):
                n = sum(p.numel() for m in (Encoder(config), Decoder(config)) for p in m.parameters())
            raise ValueError(f"{config} needs {n:,} parameters ({4 * n / 2**30:.1f} GiB in fp32), more than this "
                             f"machine can allocate ({_first_line(err)}): choose smaller channels, hidden_dim or "
                             "latent_dim") from None

    @property
    def latent_dim(self) -> int:
        """Size of the latent code z."""
        return self.config.latent_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images this model takes and makes."""
        c = self.config
        return (c.in_channels, c.image_size, c.image_size)

    def check_input(self, x: Tensor) -> None:
        """Raise ValueError unless x is a float batch of shape (B, C, H, W) that matches the config."""
        check_images(self, x)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters (mu, logvar), each (B, latent_dim), for images x (B, C, H, W) in [0, 1]."""
        self.check_input(x)
        return self.encoder(x)

    def reparameterize(self, mu: Tensor, logvar: Tensor, generator: Optional[torch.Generator] = None,
                       batch_rows: Optional[tuple[int, int]] = None) -> Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I) (Kingma & Welling, 2013, Sec. 2.4).

        batch_rows=(start, total): mu holds rows start... of a batch of `total` images split across processes;
        the noise of the whole batch is drawn and these rows kept, so each image gets the noise one process would.
        """
        if batch_rows is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        else:
            start, total = batch_rows
            eps = torch.randn((total, mu.shape[1]), generator=generator, device=mu.device, dtype=mu.dtype)
            eps = eps[start:start + mu.shape[0]]
        return mu + torch.exp(0.5 * logvar) * eps

    def decode_logits(self, z: Tensor) -> Tensor:
        """Decoder output for latents z (B, latent_dim): logits (B, C, H, W), or (B, 2C, H, W) for the logistic."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"expected latents of shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        return self.decoder(z)

    def decode(self, z: Tensor) -> Tensor:
        """Mean image (B, C, H, W) in [0, 1] of p(x|z)."""
        return mean_image(self.decode_logits(z), self.config.likelihood)

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None,
                batch_rows: Optional[tuple[int, int]] = None) -> VAEOutput:
        """Encode, sample one z per image, decode: everything `vae_loss` needs."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator, batch_rows)
        return VAEOutput(self.decoder(z), mu, logvar, z)

    def loss(self, x: Tensor, config: Optional[TrainConfig] = None, epochs_done: float = 0.0,
             generator: Optional[torch.Generator] = None, check_range: bool = True,
             batch_rows: Optional[tuple[int, int]] = None) -> LossTerms:
        """Negative ELBO of images x, batch means in nats per image: LossTerms(total, recon, kl).

        With a training config the KL is weighted by config.beta times the KL warm-up factor after
        `epochs_done` (fractional) epochs; without one it is the plain ELBO (beta = 1), as evaluation scores it.
        batch_rows: see `reparameterize` (set by `train` when several processes share a batch).
        """
        beta = 1.0 if config is None else config.beta * kl_warmup_factor(epochs_done, config.kl_warmup_epochs)
        c = self.config
        return vae_loss(self(x, generator, batch_rows), x, beta, c.likelihood, c.gaussian_std, check_range)

    def skip_noise(self, n: int, generator: Optional[torch.Generator] = None) -> None:
        """Draw, and drop, the noise that `loss` would draw for n images: another process scores them."""
        torch.randn((n, self.latent_dim), generator=generator, device=next(self.parameters()).device)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the posterior mean of x: (B, C, H, W) in [0, 1]."""
        mu, _ = self.encode(x)
        return self.decode(mu)

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """n images (n, C, H, W) in [0, 1] decoded from z ~ N(0, I)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n={n!r}: expected a positive number of samples")
        device = next(self.parameters()).device
        if generator is not None and generator.device != device:
            raise ValueError(f"generator is on {generator.device} but the model is on {device}")
        z = torch.randn((n, self.latent_dim), generator=generator, device=device)
        return self.decode(z)
