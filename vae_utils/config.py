"""Configuration dataclasses: one for the model's architecture, one for a training run."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional, Union

LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "gaussian", "discretized-logistic")  # see losses.py
CHANNEL_COUNTS = (1, 3)
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 512
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LR_SCHEDULES = ("constant", "onecycle")
ON_NONFINITE = ("stop", "skip")


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of the convolutional VAE; saved inside every checkpoint."""

    in_channels: int = 1  # 1 (grey) or 3 (RGB)
    image_size: int = 28  # square images; every conv halves it, the flattened size is derived
    latent_dim: int = 32  # size of z (README "Speed": the recipe search that chose these defaults)
    channels: tuple[int, ...] = (16, 32)  # stride-2 conv widths, encoder order; wider is better per epoch, slower per second
    hidden_dim: int = 256  # fully connected layer between the feature map and (mu, logvar); 0 = none
    likelihood: str = "bernoulli"  # p(x|z), one of LIKELIHOODS; "discretized-logistic" for 8-bit colour (bits/dim)
    gaussian_std: float = 0.1  # std of the Gaussian likelihood, in pixel units; unused otherwise
    res_blocks: int = 0  # residual blocks after each stride-2 stage (encoder) and before it (decoder)

    REQUIRED = ("in_channels", "image_size", "latent_dim", "channels", "hidden_dim", "likelihood", "gaussian_std")
    # ^ fields every checkpoint holds (format 1 on); later fields take their defaults when a file lacks them

    def __post_init__(self) -> None:
        _check(isinstance(self.channels, (list, tuple)), "channels", self.channels, "a tuple of conv widths")
        object.__setattr__(self, "channels", tuple(self.channels))  # JSON gives lists back
        _check(self.in_channels in CHANNEL_COUNTS, "in_channels", self.in_channels, f"one of {CHANNEL_COUNTS}")
        _check_int(self.image_size, "image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        _check_int(self.latent_dim, "latent_dim", 1, 4096)
        _check(len(self.channels) >= 1, "channels", self.channels, "at least one conv width")
        for width in self.channels:
            _check_int(width, "channels", 1, 4096)
        _check(
            self.image_size >> (len(self.channels) - 1) >= 2,
            "channels",
            self.channels,
            f"at most {int(math.log2(self.image_size))} stride-2 convolutions for image_size={self.image_size}",
        )
        _check_int(self.hidden_dim, "hidden_dim", 0, 65536)
        _check(self.likelihood in LIKELIHOODS, "likelihood", self.likelihood, f"one of {LIKELIHOODS}")
        _check_positive(self.gaussian_std, "gaussian_std")
        _check_int(self.res_blocks, "res_blocks", 0, 16)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON and `torch.load(weights_only=True)` safe)."""
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], complete: bool = False) -> "VAEConfig":
        """Inverse of `to_dict`; unknown keys are an error, and so are missing REQUIRED ones when complete=True."""
        return _from_dict(cls, data, complete)

    @classmethod
    def for_images(cls, image_size: int, in_channels: int, **overrides) -> "VAEConfig":
        """A model that scales with the image: stride-2 stages down to 4x4 (7x7 for 28), widths doubling from 32."""
        _check_int(image_size, "image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        stages = max(1, int(math.log2(image_size / 4)))  # 28 -> 2 (7x7), 32 -> 3 (4x4), 64 -> 4 (4x4)
        colour = in_channels == 3
        defaults = dict(in_channels=in_channels, image_size=image_size, channels=tuple(min(32 << i, 256) for i in
                        range(stages)), latent_dim=128 if colour else 32, hidden_dim=512 if colour else 256,
                        likelihood="discretized-logistic" if colour else "bernoulli", res_blocks=1 if colour else 0)
        return cls(**{**defaults, **overrides})

    @classmethod
    def for_dataset(cls, name: str, **overrides) -> "VAEConfig":
        """The preset of a named data set (see PRESETS); overrides win."""
        return cls(**{**_preset(name)["model"], **overrides})


@dataclass(frozen=True)
class VQVAEConfig:
    """Architecture of the VQ-VAE (van den Oord et al., 2017): conv encoder to a grid of codes, EMA codebook."""

    in_channels: int = 1  # 1 (grey) or 3 (RGB)
    image_size: int = 28  # square images; each stride-2 conv halves it: 28 -> 14 -> 7, a 7x7 grid of codes
    channels: tuple[int, ...] = (32, 64)  # stride-2 conv widths, encoder order
    res_blocks: int = 1  # residual blocks at the grid's resolution, in the encoder and the decoder
    codebook_size: int = 128  # K, entries of the codebook
    code_dim: int = 16  # D, size of each entry (and of the encoder's output per grid cell)
    commitment: float = 0.25  # beta of the commitment loss ||z_e - sg(e)||^2 (the paper's 0.25)
    ema_decay: float = 0.99  # gamma of the exponential moving averages that update the codebook
    ema_epsilon: float = 1e-5  # Laplace smoothing of the EMA counts (no division by zero for unused codes)
    dead_code_steps: int = 100  # a code no image used for this many training steps is restarted; 0 = never
    likelihood: str = "bernoulli"  # p(x|codes), one of LIKELIHOODS (as the VAE's)
    gaussian_std: float = 0.1  # std of the Gaussian likelihood, in pixel units; unused otherwise

    def __post_init__(self) -> None:
        _check(isinstance(self.channels, (list, tuple)), "channels", self.channels, "a tuple of conv widths")
        object.__setattr__(self, "channels", tuple(self.channels))
        _check(self.in_channels in CHANNEL_COUNTS, "in_channels", self.in_channels, f"one of {CHANNEL_COUNTS}")
        _check_int(self.image_size, "image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        _check(len(self.channels) >= 1, "channels", self.channels, "at least one conv width")
        for width in self.channels:
            _check_int(width, "channels", 1, 4096)
        _check(self.image_size >> len(self.channels) >= 1, "channels", self.channels,
               f"at most {int(math.log2(self.image_size))} stride-2 convolutions for image_size={self.image_size}")
        _check_int(self.res_blocks, "res_blocks", 0, 16)
        _check_int(self.codebook_size, "codebook_size", 2, 65536)
        _check_int(self.code_dim, "code_dim", 1, 4096)
        _check(_is_number(self.commitment) and self.commitment >= 0 and math.isfinite(self.commitment),
               "commitment", self.commitment, "a finite number >= 0")
        _check(_is_number(self.ema_decay) and 0 <= self.ema_decay < 1, "ema_decay", self.ema_decay,
               "a number in [0, 1)")
        _check_positive(self.ema_epsilon, "ema_epsilon")
        _check_int(self.dead_code_steps, "dead_code_steps", 0, 1 << 40)
        _check(self.likelihood in LIKELIHOODS, "likelihood", self.likelihood, f"one of {LIKELIHOODS}")
        _check_positive(self.gaussian_std, "gaussian_std")

    @property
    def grid_size(self) -> int:
        """Side of the grid of codes (image_size halved once per stride-2 conv, rounding down)."""
        return self.image_size >> len(self.channels)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON and `torch.load(weights_only=True)` safe)."""
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], complete: bool = False) -> "VQVAEConfig":
        """Inverse of `to_dict`; unknown keys are an error, and so are missing ones when complete=True."""
        return _from_dict(cls, data, complete)

    @classmethod
    def for_images(cls, image_size: int, in_channels: int, **overrides) -> "VQVAEConfig":
        """Stride-2 stages down to a grid of at most 8x8 codes (7x7 for 28), the likelihood of the VAE's preset."""
        _check_int(image_size, "image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        stages = max(1, math.ceil(math.log2(image_size / 8)))  # 28 -> 2 (7x7), 32 -> 2 (8x8), 64 -> 3 (8x8)
        colour = in_channels == 3
        defaults = dict(in_channels=in_channels, image_size=image_size, channels=tuple(min(32 << i, 256) for i in
                        range(stages)), codebook_size=512 if colour else 128, code_dim=32 if colour else 16,
                        likelihood="discretized-logistic" if colour else "bernoulli")
        return cls(**{**defaults, **overrides})


@dataclass(frozen=True)
class PriorConfig:
    """A causal transformer over a VQ-VAE's grid of codes, in raster order; it holds the VQ-VAE's config."""

    vqvae: VQVAEConfig = field(default_factory=VQVAEConfig)  # the (frozen) VQ-VAE whose codes it models
    width: int = 64  # model width of the transformer (128 wide, 4 deep: 2.5x the time per epoch here)
    layers: int = 3  # transformer blocks
    heads: int = 4  # attention heads; must divide width
    dropout: float = 0.1  # dropout in attention and MLP while training

    def __post_init__(self) -> None:
        if isinstance(self.vqvae, dict):
            object.__setattr__(self, "vqvae", VQVAEConfig.from_dict(self.vqvae, complete=True))
        _check(isinstance(self.vqvae, VQVAEConfig), "vqvae", self.vqvae, "a VQVAEConfig")
        _check_int(self.width, "width", 1, 8192)
        _check_int(self.layers, "layers", 1, 64)
        _check_int(self.heads, "heads", 1, 256)
        _check(self.width % self.heads == 0, "heads", self.heads, f"a divisor of width={self.width}")
        _check(_is_number(self.dropout) and 0 <= self.dropout < 1, "dropout", self.dropout, "a number in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON and `torch.load(weights_only=True)` safe)."""
        return {**asdict(self), "vqvae": self.vqvae.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], complete: bool = False) -> "PriorConfig":
        """Inverse of `to_dict`; unknown keys are an error, and so are missing ones when complete=True."""
        return _from_dict(cls, data, complete)


MODEL_CONFIGS = {"vae": VAEConfig, "vqvae": VQVAEConfig, "vqvae-prior": PriorConfig}  # by the model's `kind`
ModelConfig = Union[VAEConfig, VQVAEConfig, PriorConfig]


@dataclass(frozen=True)
class TrainConfig:
    """One training run: data, optimisation and reproducibility settings, plus the model."""

    dataset: str = "fashion-mnist"  # see vae_utils.DATASETS
    epochs: int = 10  # total epochs; resuming continues up to this number
    batch_size: int = 256  # images per Adam step; with lr 3e-3, the best test ELBO per CPU second we measured
    lr: float = 3e-3  # Adam's peak learning rate (Kingma & Ba defaults otherwise)
    lr_schedule: str = "onecycle"  # "onecycle": 10% linear warm-up, then cosine decay to lr/100; or "constant"
    beta: float = 1.0  # weight of the VAE's KL term; 1 is the vanilla VAE (Higgins et al. for beta != 1)
    kl_warmup_epochs: int = 0  # the VAE's beta rises linearly from 0 over this many epochs (0 = no warm-up)
    binarize: bool = False  # dynamic binarization: each batch's pixels drawn as Bernoulli(grey level)
    seed: int = 0  # seeds torch, numpy, Python and the data order
    device: str = "auto"  # "auto" picks CUDA when present, else CPU
    precision: str = "auto"  # "auto": bf16 autocast where the hardware has fast bf16, fp16 + GradScaler on older GPUs, else fp32
    subset: Optional[int] = None  # train on the first N training images (quick runs); None = all
    on_nonfinite: str = "stop"  # a NaN/inf loss: "stop" raises NonFiniteLossError, "skip" drops the batch and counts it
    model: ModelConfig = field(default_factory=VAEConfig)  # a VAEConfig, VQVAEConfig or PriorConfig
    model_kind: str = ""  # set from `model` (a key of MODEL_CONFIGS); read only when `model` is a dict ("" = "vae")

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):  # from JSON or a checkpoint: model_kind names its class
            kind = self.model_kind or "vae"
            _check(kind in MODEL_CONFIGS, "model_kind", self.model_kind, f"one of {sorted(MODEL_CONFIGS)}")
            object.__setattr__(self, "model", MODEL_CONFIGS[kind].from_dict(self.model))
        kind = next((k for k, c in MODEL_CONFIGS.items() if type(self.model) is c), None)
        _check(kind is not None, "model", self.model, f"a model config ({', '.join(c.__name__ for c in MODEL_CONFIGS.values())})")
        object.__setattr__(self, "model_kind", kind)
        _check(isinstance(self.dataset, str) and self.dataset != "", "dataset", self.dataset, "a data set name")
        _check_int(self.epochs, "epochs", 1, 100_000)
        _check_int(self.batch_size, "batch_size", 1, 1 << 20)
        _check_positive(self.lr, "lr")
        _check(self.lr_schedule in LR_SCHEDULES, "lr_schedule", self.lr_schedule, f"one of {LR_SCHEDULES}")
        _check(_is_number(self.beta) and self.beta >= 0 and math.isfinite(self.beta), "beta", self.beta, "a finite number >= 0")
        _check_int(self.kl_warmup_epochs, "kl_warmup_epochs", 0, 100_000)
        _check(isinstance(self.binarize, bool), "binarize", self.binarize, "True or False")
        _check_int(self.seed, "seed", 0, 2**63 - 1)
        _check(isinstance(self.device, str), "device", self.device, '"auto", "cpu", "cuda" or "cuda:N"')
        _check(self.precision in PRECISIONS, "precision", self.precision, f"one of {PRECISIONS}")
        _check(self.on_nonfinite in ON_NONFINITE, "on_nonfinite", self.on_nonfinite, f"one of {ON_NONFINITE}")
        if self.subset is not None:
            _check_int(self.subset, "subset", 1, 1 << 40)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON and `torch.load(weights_only=True)` safe)."""
        return {**asdict(self), "model": self.model.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], complete: bool = False) -> "TrainConfig":
        """Inverse of `to_dict`; unknown keys are an error, and so are missing ones when complete=True."""
        return _from_dict(cls, data, complete)

    @classmethod
    def recipe(cls, name: str, **overrides) -> "TrainConfig":
        """A named recipe of RECIPES (e.g. "long": paper-comparable likelihoods on binarized Fashion-MNIST)."""
        if name not in RECIPES:
            raise ValueError(f"no recipe {name!r}: recipes are {sorted(RECIPES)}")
        recipe = RECIPES[name]
        model = overrides.pop("model", VAEConfig(**recipe["model"]))
        return cls(**{**recipe["train"], **overrides, "model": model})

    @classmethod
    def for_dataset(cls, name: str, **overrides) -> "TrainConfig":
        """A run of the data set's preset: its model, batch size and learning rate; overrides win."""
        preset = _preset(name)
        model = overrides.pop("model", VAEConfig.for_dataset(name))
        return cls(**{**preset["train"], **overrides, "model": model})


# One name gives a sensible run. Grey sets keep the measured default recipe (README "Speed"); colour sets use
# the 8-bit discretized logistic likelihood so that bits/dim compare with the literature.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "fashion-mnist": {"model": {}, "train": {"dataset": "fashion-mnist"}},
    "mnist": {"model": {}, "train": {"dataset": "mnist"}},
    "cifar10": {"model": {"image_size": 32, "in_channels": 3}, "train": {"dataset": "cifar10", "batch_size": 128,
                                                                         "lr": 2e-3}},
    "svhn": {"model": {"image_size": 32, "in_channels": 3}, "train": {"dataset": "svhn", "batch_size": 128,
                                                                      "lr": 2e-3}},
    "celeba": {"model": {"image_size": 64, "in_channels": 3}, "train": {"dataset": "celeba", "batch_size": 128,
                                                                        "lr": 2e-3}},
}


# Longer runs for paper-comparable likelihoods (README "Evaluation"; benchmarks/long_binarized.py measures them).
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "long": {"model": dict(channels=(16, 32), latent_dim=64, hidden_dim=512),
             "train": dict(dataset="fashion-mnist", binarize=True, epochs=175, batch_size=256, lr=2e-3)},
    # ^ 1.7 M parameters, about 10 s per epoch on the 2-core CPU of README "Speed": 175 epochs in 28-30 minutes;
    # the decoder stays as cheap as the default's, since IWAE with k = 5000 runs it 5,000 times per test image
}


def _preset(name: str) -> dict[str, dict[str, Any]]:
    key = str(name).lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}.get(key, key)
    if key not in PRESETS:
        raise ValueError(f"no preset for data set {name!r}: presets exist for {sorted(PRESETS)}; for a folder of "
                         "images use VAEConfig.for_images(image_size, in_channels)")
    model = PRESETS[key]["model"]
    model = VAEConfig.for_images(model["image_size"], model["in_channels"]).to_dict() if model else {}
    return {"model": model, "train": PRESETS[key]["train"]}


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture of the feature classifier behind the Fréchet distance; saved inside its checkpoint."""

    in_channels: int = 1  # 1 (grey) or 3 (RGB)
    n_classes: int = 10  # labels of the data set it is trained on

    def __post_init__(self) -> None:
        _check(self.in_channels in CHANNEL_COUNTS, "in_channels", self.in_channels, f"one of {CHANNEL_COUNTS}")
        _check_int(self.n_classes, "n_classes", 2, 100_000)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON and `torch.load(weights_only=True)` safe)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], complete: bool = False) -> "ClassifierConfig":
        """Inverse of `to_dict`; unknown keys are an error, and so are missing ones when complete=True."""
        return _from_dict(cls, data, complete)


def _from_dict(cls, data: dict[str, Any], complete: bool = False):
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    required = getattr(cls, "REQUIRED", known)
    unknown, missing = sorted(set(data) - known), sorted(set(required) - set(data))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; known fields are {sorted(known)}")
    if complete and missing:
        raise ValueError(f"{cls.__name__}: missing field(s) {missing}")
    return cls(**data)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r} is not allowed: expected {allowed}")


def _check_int(value: Any, name: str, low: int, high: int) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    _check(ok, name, value, f"an integer from {low} to {high}")


def _check_positive(value: Any, name: str) -> None:
    _check(_is_number(value) and math.isfinite(value) and value > 0, name, value, "a finite number > 0")
