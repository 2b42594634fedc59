"""Runs as TOML files: `train --config FILE` reads one (tomllib, the standard library's reader), each run writes
its resolved config as `config.toml` beside its checkpoints, and the presets under `configs/` are written from the
code's own (`python -m vae_utils.configfile configs/`), so the code stays the one source of truth for defaults.

A file holds TrainConfig's fields at the top level and the model's under `[model]`; `model_kind` names the family
("vae" when absent). Fields a file leaves out come from the data set's preset and the family's training defaults
(`TrainConfig.for_dataset`), so a short file is a preset with changes and a resolved file is the whole run.
"""
from __future__ import annotations

import json
import math
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any, Union

from .config import PRESETS, RECIPES, TrainConfig, short_repr
from .files import atomic_write
from .registry import UnknownModelError, generative_models, model_class

PathLike = Union[str, Path]


def to_toml(config: TrainConfig) -> str:
    """The config as TOML: TrainConfig's fields at the top, the model's in [model] (nested configs in sub-tables);
    None values are left out (TOML has no null: reading the file back gives the default, None)."""
    data = config.to_dict()
    model = data.pop("model")
    lines = [f"{key} = {_value(value)}" if _utf8(value) else
             f"# {key} left out: its value is not UTF-8 text (a file name's bytes), which TOML cannot hold; give it "
             f"on the command line (for data_root: --data-dir)" for key, value in data.items() if value is not None]
    return "\n".join(lines + _table("model", model)) + "\n"


def _utf8(value: Any) -> bool:
    """False for a string that UTF-8 cannot encode (the surrogates that stand for a file name's undecodable bytes)."""
    try:
        str(value).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _table(name: str, data: dict) -> list[str]:
    nested = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines = ["", f"[{name}]"] + [f"{k} = {_value(v)}" for k, v in data.items() if v is not None and k not in nested]
    for key, value in nested.items():
        lines += _table(f"{name}.{key}", value)
    return lines


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no place in a config file")
        return repr(value)  # the shortest text that reads back as the same float
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, int):
        return str(value)
    # a TOML basic string: JSON's escapes are TOML's; DEL, which JSON leaves raw and TOML refuses, escaped too
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007F")


def read_config_file(path: PathLike) -> dict[str, Any]:
    """The file's tables as a dict; a missing or malformed file is a one-line error that names it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no config file at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not valid TOML: it is not UTF-8 text") from None


def config_from_file(path: PathLike, **overrides: Any) -> TrainConfig:
    """The TrainConfig that the file at path describes, on top of its data set's preset; overrides (TrainConfig
    fields, and `model` as a dict of model fields) win over the file. Unknown keys, wrong types and values out of
    range are one-line errors naming the key and the file."""
    data = read_config_file(path)
    model_fields = data.pop("model", {}) or {}
    if not isinstance(model_fields, dict):
        raise ValueError(f"{path}: 'model' must be a table ([model]) of the family's fields, not "
                         f"{type(model_fields).__name__} {short_repr(model_fields)}")
    model_fields = dict(model_fields)
    model_fields.update(overrides.pop("model", {}) or {})
    data.update(overrides)
    known = {f.name for f in fields(TrainConfig)} - {"model"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r} (TrainConfig's fields are {', '.join(sorted(known))}; "
                         "the model's go under [model])")
    kind = data.get("model_kind") or "vae"
    try:
        family = model_class(kind)
    except UnknownModelError as err:
        raise ValueError(f"{path}: model_kind: {err}") from None
    wrong = sorted(set(model_fields) - {f.name for f in fields(family.config_class)})
    if wrong:
        raise ValueError(f"{path}: unknown key 'model.{wrong[0]}' for a {kind} model (its fields are "
                         f"{', '.join(f.name for f in fields(family.config_class))})")
    dataset = data.get("dataset", "fashion-mnist")
    try:
        base = TrainConfig.for_dataset(dataset, model_kind=kind) if dataset in PRESETS else TrainConfig(
            dataset=dataset, model=family.config_class(), model_kind=kind)
        model = family.config_class.from_dict({**base.model.to_dict(), **model_fields})
        return TrainConfig.from_dict({**base.to_dict(), **data, "model": model.to_dict(), "model_kind": kind})
    except (TypeError, ValueError) as err:  # the dataclasses' checks name the field: "epochs=0 is not allowed: ..."
        key = str(err).split("=", 1)[0].strip()
        raise ValueError(f"{path}: {'model.' if key in model_fields and key not in data else ''}{err}") from None


def check_config_file(path: Path, config: TrainConfig, resuming: bool, overwrite: bool) -> None:
    """FileExistsError when a fresh run would replace a config.toml it did not write (e.g. `train --config
    exp/config.toml --out exp`, whose comments would be lost), unless overwrite; the same text is no loss."""
    if resuming or overwrite or not path.is_file():
        return
    try:
        same = path.read_text() == to_toml(config)
    except (OSError, UnicodeDecodeError):
        same = False
    if not same:
        raise FileExistsError(f"{path} exists and this run would replace it with its own settings: pass --overwrite "
                              "(overwrite=True) to replace it, or write the run elsewhere (e.g. train --config "
                              f"{path} --out runs/NAME)")


def write_config(config: TrainConfig, path: PathLike, header: str = "") -> Path:
    """Write the config as TOML to path, atomically, after the comment lines of header."""
    text = ("".join(f"# {line}\n" for line in header.splitlines()) + to_toml(config)).encode()
    return atomic_write(path, lambda f: f.write(text))


PRESET_HEADER = ("written by `python -m vae_utils.configfile configs` from the code's presets (a test keeps them "
                 "equal)\n"
                 "python -m vae_utils train --config {file} --out runs/NAME; flags given there override this file")


def preset_configs() -> dict[str, TrainConfig]:
    """Every preset and recipe of the code as a named TrainConfig: what configs/ holds."""
    configs = {name: TrainConfig.for_dataset(name) for name in PRESETS}
    configs.update({f"recipe-{name}": TrainConfig.recipe(name) for name in RECIPES})
    families = sorted(kind for kind, cls in generative_models().items()  # every family `train --model` builds
                      if kind != "vae" and hasattr(cls.config_class, "for_images"))
    configs.update({f"{kind}-fashion-mnist": TrainConfig.for_dataset("fashion-mnist", model_kind=kind)
                    for kind in families})
    return configs


def main(argv: list[str]) -> int:
    """`python -m vae_utils.configfile FOLDER`: write every preset as FOLDER/NAME.toml."""
    if len(argv) != 1:
        print("usage: python -m vae_utils.configfile FOLDER", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    for name, config in preset_configs().items():
        write_config(config, folder / f"{name}.toml", PRESET_HEADER.format(file=f"configs/{name}.toml"))
        print(folder / f"{name}.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
