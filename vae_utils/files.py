"""Files that are never half-written: write to a temporary file beside the target, fsync, then rename over it."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Union

import torch

PathLike = Union[str, Path]
_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$")  # .last.pt.<pid>.<random>.tmp


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """torch.save to a temporary file beside path, fsync, then os.replace: a crash leaves the old file whole."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write(path: PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Call write(f) on a temporary file beside path, fsync, then os.replace it over path; never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def remove_stale_temporaries(folder: PathLike) -> list[Path]:
    """Delete the temporary files that killed processes left in folder (their writer is gone); return them."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        match = _TMP.match(tmp.name)
        if match and not _alive(int(match["pid"])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


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
