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

import os
import shutil
import subprocess
from typing import Callable

import torch

NO_COMPILE = "or train without compilation (TrainConfig(compile=False), the default; `train --no-compile`)"


class CompileUnavailableError(RuntimeError):
    """torch.compile cannot build kernels here (no C++ compiler for the CPU, no Triton for CUDA)."""


def cpp_compiler() -> str:
    """The C++ compiler inductor's CPU backend will use (its own search: $CXX, then g++), or raise with what to do."""
    try:
        from torch._inductor import cpp_builder  # private: torch gives no public way to ask
        return cpp_builder.get_cpp_compiler()
    except ImportError:  # a torch that moved it: look for the usual names ourselves
        for name in (os.environ.get("CXX"), "g++", "clang++"):
            if name and shutil.which(name):
                return name
    except (RuntimeError, subprocess.SubprocessError, OSError):
        pass
    raise CompileUnavailableError(
        "compile=True needs a C++ compiler for torch.compile's CPU backend (inductor) and none works here: install "
        "one (`apt-get install g++` on Debian/Ubuntu, Xcode's command line tools on macOS) or name it in $CXX, "
        + NO_COMPILE)


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
