"""Checkpoints: one self-describing file (model family, config, weights, training state), written atomically."""
from __future__ import annotations

import pickle
import platform
import subprocess
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from .files import PathLike, atomic_torch_save
from .registry import UnknownModelError, model_class

FORMAT = "vae_utils.checkpoint"
FORMAT_VERSION = 2  # 2 records the model family ("kind"); version 1 files hold a VAE


class CheckpointError(ValueError):
    """A file that is not a readable vae_utils checkpoint, or one that does not fit the model."""


def save_checkpoint(model: nn.Module, path: PathLike, **training_state: Any) -> Path:
    """Atomically write the model, its family and config, and any training state (optimizer, epoch, ...) to path."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": model.kind,
        "model_config": model.config.to_dict(),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "manifest": manifest(),
        **training_state,
    }
    return atomic_torch_save(payload, path)


def read_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """The checkpoint's contents, loaded without running code from the file (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # torch.save has written zip archives since torch 1.6; vae_utils writes nothing else
        raise CheckpointError(f"{path} is not a vae_utils checkpoint: it is not a zip archive as torch.save writes "
                              "(a plain pickle or another format); use a checkpoint written by vae_utils")
    _check_map_location(map_location)
    try:
        with warnings.catch_warnings():  # e.g. torch's note on the pickle protocol: the one line below says it all
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises anything from KeyError to RuntimeError; its text advises
        # weights_only=False, which vae_utils never shows
        if isinstance(err, pickle.UnpicklingError) and UNSUPPORTED_GLOBAL in str(err).lower():
            raise CheckpointError(f"{path} holds objects that would run code when loaded ({_first_line(err)}); "
                                  "vae_utils refuses to load it: use a checkpoint written by vae_utils") from None
        raise CheckpointError(f"{path} is not a readable vae_utils checkpoint: it is not a file written by "
                              "torch.save, or it is corrupt or truncated; use another checkpoint (e.g. best.pt "
                              "beside last.pt)") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vae_utils checkpoint (no '{FORMAT}' marker); "
                              "load foreign state dicts with model.load_state_dict yourself")
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path} has an invalid checkpoint format version {version!r}: the file is damaged")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version}, newer than this vae_utils "
                              f"supports ({FORMAT_VERSION}): upgrade vae_utils to read it")
    payload.setdefault("kind", "vae")  # version 1 held VAEs only
    return payload


UNSUPPORTED_GLOBAL = "unsupported global"  # torch's refusal of a global under weights_only, in any case ("Unsupported
# global" before torch 2.14, "unsupported GLOBAL" since)


def _check_map_location(map_location: Union[str, torch.device]) -> None:
    """ValueError naming the device when map_location asks for CUDA on a machine without it (not the file's fault)."""
    try:
        device = torch.device(map_location) if isinstance(map_location, (str, torch.device)) else None
    except RuntimeError:
        raise ValueError(f"map_location={map_location!r} is not a device: pass 'cpu', 'cuda' or 'cuda:N'") from None
    if device is not None and device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"map_location={map_location!r}, but this machine has no CUDA device "
                         "(torch.cuda.is_available() is False): load it with map_location='cpu'")


PRETRAINED = {  # the committed runs: name -> file in the checkout's saved_models/
    "fashion-mnist-vae": "fashion-mnist-vae.pt",  # the main notebook's VAE (test -ELBO 240.60)
    "fashion-mnist-vqvae-prior": "fashion-mnist-vqvae-prior.pt",  # the VQ-VAE and its transformer prior
}
PRETRAINED_DIRS = (Path(__file__).resolve().parent.parent / "saved_models",  # a checkout (pip install -e .)
                   Path(__file__).resolve().parent / "weights")  # files shipped inside the package


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu", model: Optional[nn.Module] = None,
                    kind: Optional[str] = None, ema: bool = True) -> nn.Module:
    """The model rebuilt from the file alone (or `model`, if given and of the same architecture), in eval mode.

    The file names its family (`kind`, e.g. "vae"); pass `kind` to refuse files of another family. A run trained
    with a moving average of its weights (TrainConfig.ema_decay) comes back with those, as it was evaluated;
    ema=False gives the weights the optimizer was at.
    """
    return model_from_checkpoint(read_checkpoint(path, map_location), path, map_location, model, kind, ema)


def model_from_checkpoint(payload: dict[str, Any], path: PathLike, map_location: Union[str, torch.device] = "cpu",
                          model: Optional[nn.Module] = None, kind: Optional[str] = None, ema: bool = True
                          ) -> nn.Module:
    """The model of an already read checkpoint (see load_checkpoint); path only names the file in errors."""
    saved_kind = payload.get("kind")
    expected = kind or (model.kind if model is not None else None)
    if not isinstance(saved_kind, str):
        raise CheckpointError(f"{path} records no model kind (kind={saved_kind!r}): the file is damaged")
    try:
        cls = model_class(saved_kind)
    except UnknownModelError as err:
        raise CheckpointError(f"{path} holds a {saved_kind!r} model, but {err}") from None
    if expected is not None and saved_kind != expected:
        raise CheckpointError(f"{path} holds a {saved_kind} checkpoint, not a {expected}: pass a {expected} "
                              f"checkpoint (for a VAE, the last.pt or best.pt that training writes)")
    try:
        config = cls.config_class.from_dict(payload["model_config"], complete=True)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: the saved model config is invalid: {err}") from None
    name = "ema_state" if ema and "ema_state" in payload else "model_state"  # the averaged weights, if trained so
    state = payload.get(name)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no model weights ({name}): the file is damaged")
    hollow = [name for name, v in state.items() if _stored_bytes(v) < v.numel() * v.element_size()]
    if hollow:  # e.g. expanded (stride-0) views of one number: a few bytes that claim gigabytes
        raise CheckpointError(f"{path} holds weights whose stored data is smaller than their shape ({hollow[0]}"
                              f"{' and others' if len(hollow) > 1 else ''}): the file is damaged or forged; use a "
                              "checkpoint written by vae_utils")
    with torch.device("meta"):  # shapes only, no memory: a forged config cannot allocate gigabytes
        skeleton = cls(config)
    shapes = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if shapes != {k: tuple(v.shape) for k, v in state.items()}:
        raise CheckpointError(f"{path}: the weights do not fit the saved config {config}; the file is damaged "
                              "or was edited")
    if not all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise CheckpointError(f"{path} holds NaN or infinite weights (saved from a diverged run): use an earlier "
                              "checkpoint")
    if model is None:
        model = cls(config).to(map_location)
    elif model.config != config:
        saved, given = config.to_dict(), model.config.to_dict()
        diffs = [f"{k}: checkpoint {saved[k]!r}, model {given[k]!r}" for k in saved if saved[k] != given[k]]
        raise CheckpointError(f"{path} holds a different architecture than the model it is loaded into: "
                              + "; ".join(diffs) + ". Use vae_utils.load_checkpoint(path) to rebuild the saved one")
    model.load_state_dict(state)
    return model.eval()


def _stored_bytes(tensor: torch.Tensor) -> int:
    """Bytes of the tensor's storage from its offset on: what the file really holds for it."""
    return tensor.untyped_storage().nbytes() - tensor.storage_offset() * tensor.element_size()


@lru_cache(maxsize=1)
def manifest() -> dict[str, Optional[str]]:
    """Library versions and the git commit of this code, for the record."""
    import torchvision  # here, not at the top: the command line's parser never needs it

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "vae_utils": _package_version(),
        "git_commit": _git_commit(),
    }


def _package_version() -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vae-utils")
    except PackageNotFoundError:
        return None


def _git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _first_line(err: BaseException) -> str:
    """The line of torch's unpickling error that names what was refused, without its advice."""
    lines = [line.strip() for line in str(err).splitlines() if UNSUPPORTED_GLOBAL in line.lower()]
    return (lines[0].replace("WeightsUnpickler error: ", "") if lines else "an unsupported object")[:200]
