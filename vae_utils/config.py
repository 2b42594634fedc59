"""Configuration: the base of every config dataclass, the training run's config, and the data sets' presets.

Each model family's config sits beside its model (`vae_utils/models/`); a TrainConfig holds any of them.
"""
from __future__ import annotations

import inspect
import math
import re
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Collection, Optional

from .registry import UnknownModelError, kind_of_config, model_class

CHANNEL_COUNTS = (1, 3)
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 512
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LR_SCHEDULES = ("constant", "onecycle")
ON_NONFINITE = ("stop", "skip")
# Evaluation limits, checked before any work (metrics.py, report.py and the command line)
MAX_IWAE_K = 100_000  # papers use 5,000; more only costs time
MAX_SAMPLES = 100_000  # samples held in memory for the Fréchet distance
MAX_DECODED_PER_STEP = 1 << 28  # decoder outputs one training step may hold (batch x samples x values per image):
# 268 M, about 1 GB in fp32 before gradients (IWAE k=5000 at batch 256 would be 1.0 G and die in the allocator)
PR_K = 3  # neighbours of improved precision/recall (Kynkäänniemi et al., 2019)
ACTIVE_GROUP_NATS = 0.1  # a group of latents whose KL averages less than this (nats per image) carries nothing


class Config:
    """Base of the config dataclasses: `to_dict` gives plain values (JSON and `torch.load(weights_only=True)`
    safe: tuples as lists, nested configs as dicts) and `from_dict` reads them back, refusing unknown keys."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], complete: bool = False):
        """Inverse of `to_dict`; unknown keys are an error, and so are missing ones when complete=True (a class
        may narrow that to the fields in its REQUIRED tuple, for files written before later fields existed)."""
        return _from_dict(cls, data, complete)

    def for_training_set(self, n_images: int, given: Collection[str] = (), n_classes: int = 0) -> "Config":
        """This config fitted to a training set of n_images in n_classes classes (0: unlabelled): a family whose
        config depends on it (the β-TCVAE's estimator, the cVAE's classes) returns an adjusted copy, leaving the
        fields in `given` (set by the user) alone, and one that cannot work with it (more VampPrior pseudo-inputs
        than images, a cVAE on unlabelled images) raises ValueError. Most return self."""
        return self


def _default_model() -> Config:
    return model_class("vae").config_class()


@dataclass(frozen=True)
class TrainConfig(Config):
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
    data_root: Optional[str] = None  # where the files were read (--data-dir), for evaluate and resume; None: search
    on_nonfinite: str = "stop"  # a NaN/inf loss: "stop" raises NonFiniteLossError, "skip" drops the batch and counts it
    grad_clip: float = 0.0  # clip the gradient's global norm to this before each step (0 = no clipping)
    skip_factor: float = 0.0  # skip updates whose gradient norm exceeds this many times its running scale, and
    # count them (VDVAE's guard against rare huge gradients); 0 = never skip
    ema_decay: float = 0.0  # an exponential moving average of the weights with this decay, used for evaluation,
    # sampling and the checkpoints' model (Polyak averaging, as VDVAE and NVAE); 0 = none
    weight_decay: float = 0.0  # AdamW's decoupled weight decay (Loshchilov & Hutter, 2019), a regulariser against
    # overfitting in long runs; each step shrinks the weights by lr * weight_decay; 0 = plain Adam
    val_size: int = 0  # training images held out for validation (a permutation seeded by `seed`): the per-epoch
    # figures, best.pt and early stopping use them; 0 = none, and then nothing is chosen (best.pt is the last epoch)
    patience: int = 0  # early stopping: stop after this many epochs without a better validation figure (epochs of
    # KL warm-up do not count, as in the VampPrior and Exemplar VAE code); 0 = train all `epochs`
    test_every_epoch: bool = False  # also score the test split after every epoch (a curve to look at, never used to
    # choose anything); otherwise the test split is scored once, at the end, on the chosen epoch's weights
    threads: int = 0  # torch's threads while training: 0 = follow the load, all cores on a quiet machine and fewer when
    # other work holds some (threads.py; Linux); N = exactly N (bit for bit repeatable whatever the load)
    compile: bool = False  # torch.compile the model's forward and loss (inductor; compiling.py): about 0.85x the
    # eager time with a warm cache on the 2-core CPU, numbers equal to about 0.01 nats, not bit for bit
    model: Config = field(default_factory=_default_model)  # the config of any registered family (VAEConfig, ...)
    model_kind: str = ""  # the family's kind, set from `model`; names its config class when `model` is a dict

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):  # from JSON or a checkpoint: model_kind names its class
            check(isinstance(self.model_kind, str), "model_kind", self.model_kind, "a model kind")
            object.__setattr__(self, "model", model_class(self.model_kind or "vae").config_class.from_dict(self.model))
        try:
            object.__setattr__(self, "model_kind", kind_of_config(self.model, self.model_kind))
        except UnknownModelError as err:
            raise ValueError(f"model={self.model!r} is not allowed: {err}") from None
        check(isinstance(self.dataset, str) and self.dataset != "", "dataset", self.dataset, "a data set name")
        check_int(self.epochs, "epochs", 1, 100_000)
        check_int(self.batch_size, "batch_size", 1, 1 << 20)
        check_positive(self.lr, "lr")
        check(self.lr_schedule in LR_SCHEDULES, "lr_schedule", self.lr_schedule, f"one of {LR_SCHEDULES}")
        check(is_number(self.beta) and self.beta >= 0 and math.isfinite(self.beta), "beta", self.beta, "a finite number >= 0")
        refused = getattr(model_class(self.model_kind), "beta_refused", None)  # a family whose loss ignores beta
        check(self.beta == 1 or refused is None, "beta", self.beta, f"1 for a {self.model_kind}: {refused}")
        check_int(self.kl_warmup_epochs, "kl_warmup_epochs", 0, 100_000)
        for name in ("binarize", "compile", "test_every_epoch"):
            check(isinstance(getattr(self, name), bool), name, getattr(self, name), "True or False")
        check_int(self.seed, "seed", 0, 2**63 - 1)
        check(isinstance(self.device, str), "device", self.device, '"auto", "cpu", "cuda" or "cuda:N"')
        check(self.precision in PRECISIONS, "precision", self.precision, f"one of {PRECISIONS}")
        check(self.on_nonfinite in ON_NONFINITE, "on_nonfinite", self.on_nonfinite, f"one of {ON_NONFINITE}")
        for name in ("grad_clip", "skip_factor"):
            value = getattr(self, name)
            check(is_number(value) and math.isfinite(value) and value >= 0, name, value, "a finite number >= 0")
        check(self.skip_factor == 0 or self.skip_factor > 1, "skip_factor", self.skip_factor,
              "0 (never skip) or a factor > 1 of the running gradient norm")
        check(is_number(self.weight_decay) and 0 <= self.weight_decay < 1,
              "weight_decay", self.weight_decay, "a number in [0, 1): 0 for plain Adam, e.g. 0.05 to shrink the "
              "weights by lr * 0.05 per step")
        check(is_number(self.ema_decay) and 0 <= self.ema_decay < 1, "ema_decay", self.ema_decay,
              "a number in [0, 1): 0 for no average, e.g. 0.999 to average over about 1,000 steps")
        check_int(self.val_size, "val_size", 0, 1 << 40)
        check_int(self.patience, "patience", 0, 100_000)
        check_int(self.threads, "threads", 0, 4096)
        check(self.patience == 0 or self.val_size > 0, "patience", self.patience,
              "0 without a validation split: early stopping watches the validation figure, so pass val_size too")
        samples = getattr(self.model, "samples_per_image", lambda: 1)()  # the IWAE decodes k samples per image
        shape = (getattr(self.model, "in_channels", 1), getattr(self.model, "image_size", 28))
        per_step = self.batch_size * samples * shape[0] * shape[1] ** 2
        check(per_step <= MAX_DECODED_PER_STEP, "batch_size", self.batch_size,
              f"at most {MAX_DECODED_PER_STEP // (samples * shape[0] * shape[1] ** 2):,} with {samples:,} samples per "
              f"image: a step decodes batch_size x k images ({per_step:,} values, several GB with their gradients); "
              "lower batch_size or k")
        if self.subset is not None:
            check_int(self.subset, "subset", 1, 1 << 40)
        check(self.data_root is None or isinstance(self.data_root, str), "data_root", self.data_root,
              "a folder's path or None")

    @classmethod
    def recipe(cls, name: str, **overrides) -> "TrainConfig":
        """A named recipe of RECIPES (e.g. "long": paper-comparable likelihoods on binarized Fashion-MNIST)."""
        if name not in RECIPES:
            raise ValueError(f"no recipe {name!r}: recipes are {sorted(RECIPES)}")
        recipe = RECIPES[name]
        kind = recipe.get("kind", "vae")
        model = overrides.pop("model", None) or model_class(kind).config_class(**recipe["model"])
        return cls(**{**recipe["train"], **overrides, "model": model, "model_kind": kind})

    @classmethod
    def for_dataset(cls, name: str, **overrides) -> "TrainConfig":
        """A run of the data set's preset: its model, batch size and learning rate; overrides win. With
        model_kind="hvae" (any family with a config_class.for_dataset), that family's model for the set and its
        `train_defaults` (e.g. the hierarchical VAE's moving average and gradient clipping)."""
        family = model_class(overrides.get("model_kind") or "vae")
        model = overrides.pop("model", None) or _preset_model(family.config_class, name)
        return cls(**{**preset(name)["train"], **getattr(family, "train_defaults", {}), **overrides, "model": model})


# One name gives a sensible run. Grey sets keep the measured default recipe (docs/speed.md); colour sets use
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
    # dSprites: Chen et al.'s (2018) conv widths (after Higgins et al., 2017) and 10 latent dimensions; an epoch is
    # 663,552 images
    **{name: {"model": {"image_size": 64, "in_channels": 1, "latent_dim": 10, "channels": (32, 32, 64, 64)},
              "train": {"dataset": name, "batch_size": 256, "lr": 2e-3, "epochs": 1}}
       for name in ("dsprites", "dsprites-generated")},
}


# The papers' protocol (the VampPrior and Exemplar VAE reference code; docs/evaluation.md, "The protocol"): 10,000
# of the 60,000 training images held out for validation (binarized once), early stopping on the validation -ELBO.
# The reference stops when its counter exceeds 50 (`e > early_stopping_epochs`), after 51 epochs without a better
# figure: patience 51 here. Our epoch caps are far below the papers' 2,000 (a 2-core CPU's budget).
PAPERS_PROTOCOL = dict(val_size=10_000, patience=51)

# Longer runs for paper-comparable likelihoods (docs/evaluation.md; benchmarks/long_binarized.py measures them).
RECIPES: dict[str, dict[str, Any]] = {  # {"model": config fields, "train": TrainConfig fields, "kind": family (vae)}
    "long": {"model": dict(channels=(16, 32), latent_dim=64, hidden_dim=512),
             "train": dict(dataset="fashion-mnist", binarize=True, epochs=175, batch_size=256, lr=2e-3,
                           **PAPERS_PROTOCOL)},
    # ^ 1.7 M parameters (its training time, with the command that measures it: docs/speed.md);
    # the decoder stays as cheap as the default's, since IWAE with k = 5000 runs it 5,000 times per test image
    # The VampPrior and Exemplar VAE papers' setting (benchmarks/reproduce.py): gated MLPs of 300 units, latent 40,
    # batch 100, Adam at a constant 5e-4, KL warm-up; the papers train up to 2,000 epochs with early stopping
    "paper-mlp": {"model": dict(architecture="gated-mlp", latent_dim=40, hidden_dim=300),
                  "train": dict(dataset="fashion-mnist", binarize=True, epochs=100, batch_size=100, lr=5e-4,
                                lr_schedule="constant", kl_warmup_epochs=10, **PAPERS_PROTOCOL)},
    # The hierarchical VAE on binarized Fashion-MNIST (benchmarks/hierarchical.py binarized; docs/hierarchical.md):
    # sized so that training fits 60 minutes and the IWAE NLL with k = 5000 about 30 on the 2-core CPU
    "hvae-binarized": {"kind": "hvae", "model": dict(groups=(2, 2), widths=(32, 16), z_channels=4, cells=1),
                       "train": dict(dataset="fashion-mnist", binarize=True, epochs=100, batch_size=128, lr=2e-3,
                                     ema_decay=0.999, grad_clip=200.0, skip_factor=10.0, **PAPERS_PROTOCOL)},
    # The dense ladder (models/ladder.py): the long recipe's conv networks at either end of three groups of latent
    # vectors, about 13 s per epoch on the 2-core CPU (250 epochs in 55 minutes); k = 5000 in about 20 minutes
    "ladder-binarized": {"kind": "ladder", "model": dict(channels=(16, 32), hidden_dim=512, width=256,
                                                         latent_dims=(32, 32, 64)),
                         "train": dict(dataset="fashion-mnist", binarize=True, epochs=250, batch_size=256, lr=2e-3,
                                       kl_warmup_epochs=10, ema_decay=0.999, grad_clip=200.0, skip_factor=10.0,
                                       **PAPERS_PROTOCOL)},
}
# The same ladder with a VampPrior of K = 500 pseudo-inputs on its top group (models/ladder_vamp.py), as the VampPrior
# and Exemplar VAE papers give their two-level HVAE
RECIPES["ladder-vamp-binarized"] = {"kind": "ladder-vamp", "model": {**RECIPES["ladder-binarized"]["model"],
                                                                     "pseudo_inputs": 500},
                                    "train": dict(RECIPES["ladder-binarized"]["train"])}


def _preset_model(config_class: type, name: str) -> Config:
    """A family's model for the data set's preset: its own for_dataset, else its for_images at the preset's shape."""
    if hasattr(config_class, "for_dataset"):
        return config_class.for_dataset(name)
    shape = preset(name)["model"]
    size, channels = shape.get("image_size", 28), shape.get("in_channels", 1)
    return config_class.for_images(size, channels) if hasattr(config_class, "for_images") else config_class()


def preset(name: str) -> dict[str, dict[str, Any]]:
    """The preset of a data set: {"model": image shape (empty: the VAE's defaults), "train": TrainConfig fields}."""
    key = str(name).lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}.get(key, key)
    if key not in PRESETS:
        raise ValueError(f"no preset for data set {name!r}: presets exist for {sorted(PRESETS)}; for a folder of "
                         "images use VAEConfig.for_images(image_size, in_channels)")
    return PRESETS[key]


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
    return cls(**{k: _typed(v, _field_types(cls).get(k)) for k, v in data.items()})


def _plain(value: Any) -> Any:
    """A field's value as JSON-safe data: configs as dicts, tuples as lists."""
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _typed(value: Any, annotation: Any) -> Any:
    """A plain value read back as its field's type: lists as tuples, dicts as nested config dataclasses."""
    origin = typing.get_origin(annotation) or annotation
    if isinstance(value, list) and origin is tuple:
        return tuple(value)
    if isinstance(value, dict) and isinstance(origin, type) and is_dataclass(origin) and issubclass(origin, Config):
        return origin.from_dict(value, complete=True)
    return value


def _field_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # a forward reference that cannot be resolved: keep the values as they are
        return {}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


MAX_VALUE_CHARS = 80  # a value shown in an error message is cut to this many characters (a forged file's list of a
# million entries stays one readable line)


def short_repr(value: Any) -> str:
    """repr(value), cut to MAX_VALUE_CHARS with its length said where it is longer."""
    text = repr(value)
    if len(text) <= MAX_VALUE_CHARS:
        return text
    size = f", {len(value):,} entries" if isinstance(value, (list, tuple, dict, str)) else ""
    return f"{text[:MAX_VALUE_CHARS]}... ({len(text):,} characters{size})"


def check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{name}={short_repr(value)} is not allowed: expected {allowed}")


def check_int(value: Any, name: str, low: int, high: int) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    check(ok, name, value, f"an integer from {low} to {high}")


def check_positive(value: Any, name: str) -> None:
    check(is_number(value) and math.isfinite(value) and value > 0, name, value, "a finite number > 0")


def field_docs(cls: type) -> dict[str, str]:
    """The trailing comment of each field of a config dataclass (its documentation), read from the source."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):  # defined where no source is kept (some interactive sessions)
        return {}
    docs = {}
    for line in lines:
        match = re.match(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
        if match and match[1] in {f.name for f in fields(cls)}:
            docs.setdefault(match[1], match[2].strip())
    return docs
