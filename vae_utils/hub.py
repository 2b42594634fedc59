"""Weights in the formats the ecosystem reads: a folder of `config.json` (the family and its config, flat, as
diffusers and transformers write theirs) and `model.safetensors` (the weights, no pickle at all), and the Hugging
Face Hub through `huggingface_hub` (an optional extra: `pip install .[hub]`).

    model.save_pretrained("folder")            # or vu.save_pretrained(model, "folder")
    model = vu.from_pretrained("folder")       # or a Hub id: vu.from_pretrained("user/repo")
    model.push_to_hub("user/repo")             # folder + model card, uploaded

Training checkpoints (`last.pt`, `best.pt`) stay torch files: they also hold the optimizer and random states.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from .checkpoints import CheckpointError, _package_version, model_from_checkpoint
from .files import PathLike, atomic_write

CONFIG_NAME, WEIGHTS_NAME, CARD_NAME = "config.json", "model.safetensors", "README.md"
FORMAT = "vae_utils.pretrained"


def _holds(weights_file: Path, state: dict[str, torch.Tensor]) -> bool:
    """Whether weights_file is a safetensors file of exactly these tensors (names, dtypes, shapes and values)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        saved = load_file(weights_file)
    except (OSError, SafetensorError):
        return False
    return saved.keys() == state.keys() and all(
        saved[k].dtype == v.dtype and saved[k].shape == v.shape and torch.equal(saved[k], v) for k, v in state.items())


def save_pretrained(model: nn.Module, folder: PathLike, card: Optional[str] = None) -> Path:
    """Write model.safetensors, then config.json (and README.md, a model card, when given) into folder, each file
    atomically: a folder that has its config.json has its weights. A model.safetensors that already holds exactly
    these weights is left byte for byte (safetensors orders its header anew at each save: no churn under git)."""
    from safetensors.torch import save

    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}  # no shared storage
    if not _holds(folder / WEIGHTS_NAME, state):
        weights = save(state, metadata={"format": "pt", "kind": model.kind})
        atomic_write(folder / WEIGHTS_NAME, lambda f: f.write(weights))
    config = {"_class_name": type(model).__name__, "_kind": model.kind, "_format": FORMAT,
              "_vae_utils_version": _package_version(), **model.config.to_dict()}
    atomic_write(folder / CONFIG_NAME, lambda f: f.write(json.dumps(config, indent=2).encode()))
    if card is not None:
        atomic_write(folder / CARD_NAME, lambda f: f.write(card.encode()))
    return folder


def from_pretrained(name_or_path: Union[str, PathLike], map_location: Union[str, torch.device] = "cpu"
                    ) -> nn.Module:
    """The model saved by `save_pretrained` in a folder, or in a Hugging Face Hub repository ("user/repo",
    downloaded into the Hub's cache by `huggingface_hub`), rebuilt from its config.json, in eval mode."""
    path = Path(name_or_path)
    if not path.is_dir():
        path = _download(str(name_or_path))
    return _load_folder(path, map_location)


def push_to_hub(model: nn.Module, repo_id: str, card: Optional[str] = None, private: bool = False,
                token: Optional[str] = None) -> str:
    """Save the model (with its card: `model_card(model)` unless given) into a temporary folder and upload it to
    the Hub repository repo_id, created if missing; the commit's URL."""
    hub = _hub()
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, model_card(model) if card is None else card)
        api = hub.HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        return str(api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message="vae_utils.push_to_hub"))


def model_card(model: nn.Module, report: Optional[dict[str, Any]] = None, command: Optional[str] = None,
               data: Optional[str] = None) -> str:
    """A Hub model card: its metadata block, the family and config, and, when given, the report's figures, the
    command that trained it and the data."""
    lines = ["---", "library_name: vae_utils", "tags:", "- vae", f"- {model.kind}", "---", "",
             f"# {type(model).__name__} ({model.kind})", "",
             "Saved by vae_utils; load it with `vae_utils.from_pretrained(\"<this repo>\")`.", ""]
    if data:
        lines += [f"Data: {data}", ""]
    if command:
        lines += ["Trained by:", "", "```bash", command, "```", ""]
    if report:
        lines += ["| figure | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in report.items()
                  if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
        lines.append("")
    lines += ["Config:", "", "```json", json.dumps(model.config.to_dict(), indent=2), "```", ""]
    return "\n".join(lines)


class HubMixin:
    """`save_pretrained`, `push_to_hub` as methods of a model family."""

    def save_pretrained(self, folder: PathLike, card: Optional[str] = None) -> Path:
        """Write this model as config.json + model.safetensors (see vae_utils.hub)."""
        return save_pretrained(self, folder, card)

    def push_to_hub(self, repo_id: str, card: Optional[str] = None, private: bool = False,
                    token: Optional[str] = None) -> str:
        """Upload this model to a Hub repository (needs huggingface_hub: pip install .[hub])."""
        return push_to_hub(self, repo_id, card, private, token)


def _load_folder(folder: Path, map_location: Union[str, torch.device]) -> nn.Module:
    """The model of a save_pretrained folder, checked as load_checkpoint checks a checkpoint."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config_file, weights_file = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for needed in (config_file, weights_file):
        if not needed.is_file():
            raise FileNotFoundError(f"{folder} has no {needed.name}: it is not a folder written by save_pretrained "
                                    f"(which holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        config = json.loads(config_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{config_file} is not valid JSON ({err}): save the model again") from None
    if not isinstance(config, dict) or config.get("_format") != FORMAT:
        raise CheckpointError(f"{config_file} is not a vae_utils config (no \"_format\": \"{FORMAT}\"): load it "
                              "with the library that wrote it")
    try:
        state = load_file(weights_file, device=str(map_location))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights_file} is not a readable safetensors file ({err}): save the model again"
                              ) from None
    payload = {"kind": config.get("_kind"), "model_state": state,
               "model_config": {k: v for k, v in config.items() if not k.startswith("_")}}
    return model_from_checkpoint(payload, folder, map_location)


def _hub() -> Any:
    """The huggingface_hub module; ImportError in one line saying how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError("loading from or pushing to the Hugging Face Hub needs huggingface_hub: pip install "
                          "'vae-utils[hub]' (or pip install huggingface_hub)") from None
    return huggingface_hub


def _download(repo_id: str) -> Path:
    """The Hub repository's files in the local cache (downloaded unless HF_HUB_OFFLINE is set)."""
    if repo_id.count("/") != 1 or repo_id.startswith(("/", ".")) or os.path.exists(repo_id):
        raise FileNotFoundError(f"{repo_id} is not a folder written by save_pretrained, nor a Hub repository id of "
                                "the form user/name")
    hub = _hub()
    from huggingface_hub import constants
    from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hub.snapshot_download(repo_id, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME]))
    except LocalEntryNotFoundError:
        raise FileNotFoundError(f"{repo_id} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and "
                                "the Hub cannot be reached (HF_HUB_OFFLINE is set, or no network): run once with a "
                                "network and without HF_HUB_OFFLINE, or download the repository's config.json and "
                                "model.safetensors into a folder and pass its path") from None
    except HfHubHTTPError as err:
        raise FileNotFoundError(f"{repo_id} could not be downloaded from the Hub ({str(err).splitlines()[0]}): "
                                "check the name, and your token for a private repository") from None
