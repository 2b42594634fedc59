"""The output folder of a training run: checked before the first step, locked while the run writes to it."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Union

from torch import nn

from .files import remove_stale_temporaries

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, one run per folder is then the user's care
    fcntl = None


def output_dir(out_dir: Union[str, Path, None]) -> Optional[Path]:
    """out_dir as a Path (None stays None); an empty name is a ValueError, not the current folder."""
    if out_dir is None:
        return None
    if str(out_dir).strip() == "":
        raise ValueError("out_dir is an empty string: name a folder for the checkpoints (or None for none)")
    return Path(out_dir)


def prepare_output_dir(out_dir: Path, model: nn.Module, resume: Union[str, Path, None] = None,
                       overwrite: bool = False) -> None:
    """Fail before training when out_dir cannot be written, lacks room, or holds another run; clean leftovers."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir, prefix=".write-test."):
            pass
    except OSError as err:
        raise OSError(f"cannot write checkpoints to {out_dir}: {err.strerror or err}; "
                      "choose a writable output folder") from err
    # weights + Adam's two moments, in fp32, for last.pt, best.pt and one temporary file; the last.pt and best.pt
    # that a resumed run replaces already take their share (each is replaced through one temporary file)
    checkpoint = 3 * 4 * sum(p.numel() for p in model.parameters())
    held = sum(f.stat().st_size for f in (out_dir / "last.pt", out_dir / "best.pt") if f.is_file())
    need = max(3 * checkpoint - held, checkpoint) + (16 << 20)
    free = shutil.disk_usage(out_dir).free
    if free < need:
        raise OSError(f"only {free / 2**20:.0f} MiB free in {out_dir}, checkpoints need about {need / 2**20:.0f} MiB; "
                      "free some space or choose another output folder")
    remove_stale_temporaries(out_dir)
    existing = [out_dir / name for name in ("last.pt", "best.pt") if (out_dir / name).exists()]
    continuing = resume is not None and Path(resume).resolve().parent == out_dir.resolve()
    if existing and not continuing:
        if not overwrite:
            raise FileExistsError(f"{out_dir} already holds a run ({', '.join(p.name for p in existing)}): continue "
                                  f"it (vu.train(..., resume='{out_dir / 'last.pt'}'); on the command line --resume "
                                  f"{out_dir / 'last.pt'}), replace it (overwrite=True; --overwrite), or choose another "
                                  "output folder")
        for path in existing:  # the old run's files must not mix with the new run's
            path.unlink()


class OutputLock:
    """An exclusive lock on out_dir/train.lock for the run's duration: two runs never write one folder."""

    def __init__(self, out_dir: Optional[Path]) -> None:
        self.path = None if out_dir is None or fcntl is None else out_dir / "train.lock"
        self.file = None

    def __enter__(self) -> "OutputLock":
        if self.path is None:
            return self
        while not self._locked():  # the file was removed by the run that held it, between our open and our lock
            pass
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()
        return self

    def _locked(self) -> bool:
        """Open and lock self.path; False when the file locked is no longer the one at self.path (retry)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "a+")
        except OSError as err:
            raise OSError(f"cannot write checkpoints to {self.path.parent}: {err.strerror or err}; "
                          "choose a writable output folder") from err
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel if this process dies
        except OSError:
            self.file.seek(0)
            owner = self.file.read().strip() or "unknown"
            self.file.close()
            raise FileExistsError(f"another training process (pid {owner}) is writing to {self.path.parent}: wait "
                                  "for it to finish or choose another output folder") from None
        try:
            current = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(self.file.fileno()).st_ino:
            self.file.close()
            return False
        return True

    def __exit__(self, *exc) -> None:
        if self.file is not None:  # removed while still held, so no other run can lock the file being removed
            self.path.unlink(missing_ok=True)
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
