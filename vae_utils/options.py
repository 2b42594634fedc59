"""The command line's vocabulary, shared by the parser (cli.py) and the commands (commands.py): which TrainConfig
fields the flags set, and one flag per field of every trainable family's config dataclass."""
from __future__ import annotations

import argparse
import typing
from dataclasses import fields
from typing import NamedTuple, Optional

from .config import field_docs
from .registry import generative_models

TRAIN_FLAGS = ("dataset", "batch_size", "lr", "beta", "seed", "precision", "subset", "kl_warmup_epochs", "grad_clip",
               "skip_factor", "ema_decay", "weight_decay", "compile", "val_size", "patience", "test_every_epoch", "threads")
PRIOR_FLAGS = ("batch_size", "lr", "seed", "precision", "subset")
PRIOR_EPOCHS, PRIOR_LR = 10, 1e-3  # the prior's defaults: a transformer wants a smaller step than the conv nets


class ModelOption(NamedTuple):
    """A `train` flag made from a field of the families' config dataclasses."""

    field: str  # the config field it sets
    flag: str  # e.g. --latent-dim
    dest: str  # where argparse puts it: model_<field>
    argparse: dict  # type, nargs, help
    kinds: tuple[str, ...]  # the families whose config has the field


SHAPE_FIELDS = ("in_channels", "image_size")  # set from the data (--channels, --image-size), not per family


def trainable_models() -> dict[str, type]:
    """The families `train --model` builds from a data set alone: their config has for_images(size, channels)."""
    return {kind: cls for kind, cls in generative_models().items() if hasattr(cls.config_class, "for_images")}


def model_options(parser: Optional[argparse.ArgumentParser] = None) -> list[ModelOption]:
    """One flag per field of every trainable family's config (plain values: int, float, str, bool, tuples of
    them), with the field's comment as its help (each family's, where families give one field different
    meanings); a flag name the parser already has gets a "model-" prefix."""
    taken = set(parser._option_string_actions) if parser is not None else set()
    found: dict[str, tuple[type, bool, list[str], dict[str, list[str]]]] = {}  # field -> (type, many, kinds, doc: kinds)
    for kind, cls in sorted(trainable_models().items()):
        config_class = cls.config_class
        hints, docs = typing.get_type_hints(config_class), field_docs(config_class)
        for f in fields(config_class):
            kind_of_value = _flag_type(hints.get(f.name))
            if f.name in SHAPE_FIELDS or kind_of_value is None:
                continue
            if f.name not in found:
                found[f.name] = (*kind_of_value, [], {})
            found[f.name][2].append(kind)
            found[f.name][3].setdefault(docs.get(f.name, ""), []).append(kind)
    options = []
    for name, (value_type, many, kinds, meanings) in found.items():
        flag = "--" + name.replace("_", "-")
        flag = "--model-" + name.replace("_", "-") if flag in taken else flag
        help_text = "; ".join(f"{doc} [{', '.join(users)}]" for doc, users in meanings.items()).replace("%", "%%")
        spec = {"type": value_type, "default": None, "metavar": flag[2:].replace("-", "_").upper(), "help": help_text}
        if value_type is bool:
            spec = {"action": argparse.BooleanOptionalAction, "default": None, "help": spec["help"]}
        elif many:
            spec["nargs"] = "+"
        options.append(ModelOption(name, flag, "model_" + name, spec, tuple(kinds)))
    return options


def _flag_type(annotation) -> Optional[tuple[type, bool]]:
    """(value type, whether a tuple of them) for a field type a flag can carry; None for others (nested configs)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is tuple and args and args[0] in (int, float, str):
        return args[0], True
    if typing.get_origin(annotation) is typing.Union and len(args) == 1:  # Optional[int]
        return _flag_type(args[0])
    return (annotation, False) if annotation in (int, float, str, bool) else None
