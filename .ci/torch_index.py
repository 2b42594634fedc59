"""Print the package index `make setup` installs torch from: PyTorch's CPU wheels on Linux machines without an
NVIDIA driver when that index answers; nothing (PyPI's default build) otherwise, with a one-line notice on stderr.

GPU=1 forces the default; TORCH_CPU_INDEX names another CPU index (tests point it at a local server).
"""
from __future__ import annotations

import os
import shutil
import sys
import urllib.request

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


if __name__ == "__main__":
    print(choose())
