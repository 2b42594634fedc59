"""Print the package index `make setup` installs torch from: PyTorch's CPU wheels on Linux machines without an
NVIDIA driver when that index answers; nothing (PyPI's default build) otherwise, with a one-line notice on stderr.

GPU=1 forces the default; TORCH_CPU_INDEX names another CPU index (tests point it at a local server).

    python .ci/torch_index.py                # the index (stdout) and, where PyPI is chosen, why (stderr)
    python .ci/torch_index.py --report VENV  # at the end of set-up: the notice again, with the CUDA libraries' size
"""
from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def has_nvidia_driver() -> bool:
    """True where an NVIDIA driver is loaded (the CUDA build can use the GPU)."""
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def reachable(index: str, timeout: float = 5.0) -> str:
    """'' when index/torch/ answers, else why not."""
    try:
        with urllib.request.urlopen(index.rstrip("/") + "/torch/", timeout=timeout) as response:
            return "" if response.status == 200 else f"HTTP {response.status}"
    except Exception as err:  # DNS, refused, timeout, HTTP errors: all mean "use PyPI"
        return " ".join(str(getattr(err, "reason", err)).split())[:120] or type(err).__name__


def choose() -> str:
    """The index URL to install torch from, or '' for PyPI's default."""
    if os.environ.get("GPU", "") not in ("", "0"):
        return ""
    if not sys.platform.startswith("linux"):
        return ""  # PyPI's macOS and Windows wheels are CPU builds already
    if has_nvidia_driver():
        print("note: NVIDIA driver found: installing PyPI's default (CUDA) build of torch", file=sys.stderr)
        return ""
    index = os.environ.get("TORCH_CPU_INDEX", CPU_INDEX)
    why = reachable(index)
    if why:
        print(f"note: PyTorch's CPU wheel index {index} is not reachable ({why}); installing torch from PyPI (its "
              "Linux build bundles CUDA, several GB, and runs on the CPU too)", file=sys.stderr)
        return ""
    return index


def cuda_library_bytes(venv: Path) -> int:
    """Bytes of the CUDA libraries (PyPI's nvidia-* wheels, which its Linux torch pulls in) installed in venv."""
    return sum(f.stat().st_size for folder in venv.glob("lib/python*/site-packages/nvidia") for f in folder.rglob("*")
               if f.is_file() and not f.is_symlink())


def report(venv: Path) -> str:
    """The end-of-set-up notice: '' unless venv holds CUDA libraries that this machine cannot use."""
    size = cuda_library_bytes(venv)
    if not size or os.environ.get("GPU", "") not in ("", "0") or has_nvidia_driver():
        return ""
    amount = f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"
    return (f"note: {venv} holds {amount} of CUDA libraries, which this machine (no NVIDIA driver) does "
            f"not use: PyPI's Linux build of torch pulls them in, and set-up takes it when PyTorch's CPU index "
            f"({os.environ.get('TORCH_CPU_INDEX', CPU_INDEX)}) does not answer. Everything runs on the CPU as it is. For the CPU build (about 200 "
            f"MB): `rm -rf {venv} && make setup` once that index answers, or `make setup TORCH_INDEX=URL` with "
            "another index that has CPU wheels.")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--report"]:
        notice = report(Path(sys.argv[2]))
        if notice:
            print(notice, file=sys.stderr)
    else:
        print(choose())
