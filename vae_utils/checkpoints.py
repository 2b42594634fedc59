"""Checkpoints: one self-describing file (config + weights + training state), written atomically."""
from __future__ import annotations

import os
import platform
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torchvision

from .config import VAEConfig
from .model import VAE

FORMAT = "vae_utils.checkpoint"
FORMAT_VERSION = 1
PathLike = Union[str, Path]


class CheckpointError(ValueError):
    """A file that is not a readable vae_utils checkpoint, or one that does not fit the model."""


def save_checkpoint(model: VAE, path: PathLike, **training_state: Any) -> Path:
    """Atomically write the model, its config and any training state (optimizer, epoch, history, ...) to path."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "manifest": manifest(),
        **training_state,
    }
    return atomic_torch_save(payload, path)


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """torch.save to a temporary file beside path, fsync, then os.replace: a crash leaves the old file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def read_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """The checkpoint's contents, loaded without running code from the file (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt zip, truncated file, or a pickle that wants to run code
        raise CheckpointError(f"{path} is not a readable vae_utils checkpoint (it is corrupt, truncated, or holds "
                              f"objects that would run code when loaded, which is refused): {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vae_utils checkpoint (no '{FORMAT}' marker); "
                              "load foreign state dicts with model.load_state_dict yourself")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}, newer than this vae_utils "
                              f"supports ({FORMAT_VERSION}): upgrade vae_utils to read it")
    return payload


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu", model: Optional[VAE] = None) -> VAE:
    """A VAE rebuilt from the file alone (or `model`, if given and of the same architecture), in eval mode."""
    return model_from_checkpoint(read_checkpoint(path, map_location), path, map_location, model)


def model_from_checkpoint(payload: dict[str, Any], path: PathLike, map_location: Union[str, torch.device] = "cpu",
                          model: Optional[VAE] = None) -> VAE:
    """The VAE of an already read checkpoint (see load_checkpoint); path only names the file in errors."""
    try:
        config = VAEConfig.from_dict(payload["model_config"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: the saved model config is invalid: {err}") from err
    if model is None:
        model = VAE(config).to(map_location)
    elif model.config != config:
        saved, given = config.to_dict(), model.config.to_dict()
        diffs = [f"{k}: checkpoint {saved[k]!r}, model {given[k]!r}" for k in saved if saved[k] != given[k]]
        raise CheckpointError(f"{path} holds a different architecture than the model it is loaded into: "
                              + "; ".join(diffs) + ". Use vae_utils.load_checkpoint(path) to rebuild the saved one")
    try:
        model.load_state_dict(payload["model_state"])
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path}: the weights do not fit the saved config: {err}") from err
    return model.eval()


@lru_cache(maxsize=1)
def manifest() -> dict[str, Optional[str]]:
    """Library versions and the git commit of this code, for the record."""
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: directories cannot be opened
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
