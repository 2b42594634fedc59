"""The model families, filled by registration: checkpoints, training and the CLI look a family up here by the
`kind` it records, and nothing below `models/` imports a model.

A family is a `torch.nn.Module` class with a `config_class` (a config dataclass, see `config.Config`) and an
`__init__(config)`; `@register_model("name")` records it. Importing `vae_utils` registers the built-in families;
one defined elsewhere (a notebook cell, a user's module) is registered when its definition runs.
"""
from __future__ import annotations

import re
from typing import Callable, TypeVar

Family = TypeVar("Family", bound=type)
_FAMILIES: dict[str, type] = {}
_KIND = re.compile(r"^[a-z0-9][a-z0-9._-]*$")  # what a checkpoint, a CLI flag and a file name can all carry


class UnknownModelError(ValueError):
    """A model kind that no registered family has (its defining module was not imported)."""


def register_model(kind: str) -> Callable[[Family], Family]:
    """Class decorator: record a model family under `kind`, the name its checkpoints store (e.g. "vae").

    The class must have `config_class`, a dataclass with `to_dict()` and `from_dict(data, complete)`. It gets
    `kind`, and `total_name` ("loss") and `best_metric` (the total) unless it sets them: how `evaluate` names its
    `loss(...).total` and which validation metric picks best.pt. Defining the class again under the same kind (a
    re-run notebook cell) replaces it; another class under a taken kind is an error.
    """
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise ValueError(f"model kind {kind!r} is not allowed: use lower-case letters, digits, '.', '_' or '-'")

    def decorate(cls: Family) -> Family:
        config_class = getattr(cls, "config_class", None)
        if not (isinstance(cls, type) and isinstance(config_class, type) and hasattr(config_class, "to_dict")
                and hasattr(config_class, "from_dict")):
            raise TypeError(f"@register_model({kind!r}) needs a class with a `config_class` that has to_dict() and "
                            f"from_dict() (e.g. a dataclass deriving from vae_utils.Config); {cls!r} has "
                            f"{config_class!r}")
        taken = _FAMILIES.get(kind)
        if taken is not None and _name(taken) != _name(cls):
            raise ValueError(f"model kind {kind!r} is already registered by {_name(taken)}: choose another kind "
                             f"for {_name(cls)}")
        cls.kind = kind
        if not hasattr(cls, "total_name"):
            cls.total_name = "loss"
        if not hasattr(cls, "best_metric"):
            cls.best_metric = cls.total_name
        _FAMILIES[kind] = cls
        return cls

    return decorate


def model_class(kind: str) -> type:
    """The family registered under kind; UnknownModelError (naming the kind and what to import) otherwise."""
    cls = _FAMILIES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise UnknownModelError(f"no model family {kind!r} is registered (registered: {', '.join(sorted(_FAMILIES))})"
                                f": import the module that defines it, the class decorated with "
                                f"@vae_utils.register_model({kind!r}), first (on the command line: "
                                f"python -m vae_utils --import MODULE ...)")
    return cls


def registered_models() -> dict[str, type]:
    """Every registered family by kind (a copy)."""
    return dict(_FAMILIES)


def generative_models() -> dict[str, type]:
    """The families that `train` and `evaluate` take: those with a `loss(x, ...)` (the feature classifier has none)."""
    return {kind: cls for kind, cls in _FAMILIES.items() if callable(getattr(cls, "loss", None))}


def kind_of_config(config: object, preferred: str = "") -> str:
    """The kind of the family whose config_class config is; `preferred` wins when several families share it."""
    kinds = [kind for kind, cls in _FAMILIES.items() if type(config) is cls.config_class]
    if not kinds:
        names = ", ".join(sorted(cls.config_class.__name__ for cls in _FAMILIES.values()))
        raise UnknownModelError(f"{type(config).__name__} is the config of no registered model family (known: "
                                f"{names}): register the model class that uses it with @vae_utils.register_model")
    return preferred if preferred in kinds else kinds[0]


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
