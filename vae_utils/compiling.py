"""`torch.compile` of the training objective (TrainConfig.compile): the model's forward and loss fused by inductor,
the backward through AOTAutograd, for any family whose `loss` the trainer calls (docs/speed.md, round three).

Shapes are static (`dynamic=False`): one graph for the full batches and one recompile for an epoch's last, smaller
batch; `dynamic=True` fails on `torch.randn` of a symbolic batch size. The epochs done (a float that KL warm-up
reads, new at every step) go in as a 0-dim tensor, so that its value does not recompile. Inductor keeps what it
compiled in its cache folder (TORCHINDUCTOR_CACHE_DIR, by default under the system's temporary folder), so a second
run on the same machine skips most of the compilation. Within one process, runs with other settings (another
config, precision or batch size) each add a compiled graph; past torch._dynamo.config.recompile_limit (8) dynamo
warns and runs the step eagerly: the same numbers, without the speed.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import torch

NO_COMPILE = "or train without compilation (TrainConfig(compile=False), the default; `train --no-compile`)"


class CompileUnavailableError(RuntimeError):
    """torch.compile cannot build kernels here (no C++ compiler for the CPU, no Triton for CUDA)."""


def cpp_compiler() -> str:
    """The C++ compiler inductor's CPU backend will use (its own search: $CXX, then g++), checked by compiling a
    one-line file with it; or raise with what to do."""
    name = None
    try:
        from torch._inductor import cpp_builder  # private: torch gives no public way to ask
        name = cpp_builder.get_cpp_compiler()
    except ImportError:  # a torch that moved it: look for the usual names ourselves
        name = next((n for n in (os.environ.get("CXX"), "g++", "clang++") if n and shutil.which(n)), None)
    except (RuntimeError, subprocess.SubprocessError, OSError):
        pass
    if name is not None and compiles(name):
        return name
    found = f" ({name} compiles nothing)" if name is not None else ""
    raise CompileUnavailableError(
        f"compile=True needs a C++ compiler for torch.compile's CPU backend (inductor) and none works here{found}: "
        "install one (`apt-get install g++` on Debian/Ubuntu, Xcode's command line tools on macOS) or name it in "
        "$CXX, " + NO_COMPILE)


@functools.lru_cache(maxsize=None)
def compiles(cxx: str) -> bool:
    """Whether cxx turns a one-line C++ file into a non-empty object file (a stand-in such as /bin/true does not)."""
    with tempfile.TemporaryDirectory(prefix="vae_utils-cxx-") as folder:
        out = Path(folder) / "probe.o"
        try:
            done = subprocess.run([cxx, "-x", "c++", "-c", "-", "-o", str(out)], input=b"int probe() { return 1; }\n",
                                  capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return False
        return done.returncode == 0 and out.is_file() and out.stat().st_size > 0


def check_compilable(device: torch.device) -> None:
    """Raise CompileUnavailableError, saying what to do, when torch.compile cannot build kernels for device."""
    if device.type == "cpu":
        cpp_compiler()
    elif device.type == "cuda":
        from torch.utils._triton import has_triton
        if not has_triton():
            raise CompileUnavailableError("compile=True on CUDA needs Triton (`pip install triton`, which "
                                          "PyTorch's Linux CUDA wheels bring along), " + NO_COMPILE)


def compile_objective(objective: Callable, device: torch.device) -> Callable:
    """objective (model.loss, or the same through DistributedDataParallel) under torch.compile, static shapes."""
    check_compilable(device)
    compiled = torch.compile(objective, dynamic=False)

    def step(x: torch.Tensor, config, epochs_done: float, **options):  # a CPU scalar: no copy to a GPU per step
        return compiled(x, config, torch.tensor(epochs_done, dtype=torch.float32), **options)

    return step
