"""The model zoo: pretrained families in the ecosystem's format (a folder of config.json + model.safetensors each,
under the checkout's saved_models/zoo/), listed with their test figures and the command that trained them in
saved_models/zoo/zoo.json, which `benchmarks/build_zoo.py` writes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from .checkpoints import PRETRAINED, PRETRAINED_DIRS, _check_map_location, load_checkpoint
from .hub import from_pretrained

ZOO_DIR = Path(__file__).resolve().parent.parent / "saved_models" / "zoo"  # a checkout (pip install -e .)
INDEX_NAME = "zoo.json"


def zoo_index(folder: Path = ZOO_DIR) -> dict[str, dict[str, Any]]:
    """The zoo's entries by name (family, data, test figures, check figure, size, command); {} without a zoo."""
    index = folder / INDEX_NAME
    return json.loads(index.read_text())["models"] if index.is_file() else {}


def pretrained(name: Optional[str] = None, map_location: Union[str, torch.device] = "cpu"
               ) -> Union[nn.Module, list[dict[str, Any]]]:
    """A pretrained model by name, from any working directory, in eval mode: a zoo folder (safetensors), else one of
    the committed training checkpoints (checkpoints.PRETRAINED). Without a name: the list of what there is, each
    with its family, data, test figures and the command that trained it."""
    entries = zoo_index()
    if name is None:
        return [{"name": key, **entry} for key, entry in entries.items()] + [
            {"name": key, "file": f"saved_models/{file}"} for key, file in PRETRAINED.items() if key not in entries]
    if not isinstance(name, str) or (name not in entries and name not in PRETRAINED):
        raise ValueError(f"no pretrained model {name!r}: known are {sorted(set(entries) | set(PRETRAINED))} "
                         "(vu.pretrained() lists them with their figures)")
    _check_map_location(map_location)
    if name in entries:
        return from_pretrained(ZOO_DIR / name, map_location)
    for folder in PRETRAINED_DIRS:
        if (folder / PRETRAINED[name]).is_file():
            return load_checkpoint(folder / PRETRAINED[name], map_location)
    raise FileNotFoundError(f"{PRETRAINED[name]} is in none of {[str(d) for d in PRETRAINED_DIRS]}: it ships with "
                            "the repository's saved_models/; install vae_utils from a checkout (`pip install -e .`, "
                            "as `make setup` does) or pass the file to load_checkpoint")


def format_zoo(entries: list[dict[str, Any]]) -> str:
    """The listing as a table: name, family, data, test figure, megabytes, the command that trained it."""
    lines = [f"{'name':34s} {'family':10s} {'data':34s} {'test figure':26s} {'MB':>5s}  command"]
    for e in entries:
        test = e.get("test", {})
        figure = f"{test['metric']} {test['value']:.2f}" if test else "-"
        size = f"{e['megabytes']:5.1f}" if "megabytes" in e else "    -"
        lines.append(f"{e['name']:34s} {e.get('family', '-'):10s} {e.get('data', '-'):34s} {figure:26s} {size}  "
                     f"{e.get('command', e.get('file', ''))}")
    return "\n".join(lines)
