"""Reproducibility and hardware: seeds, device and numeric precision, each chosen once and explicitly."""
from __future__ import annotations

import os
import platform
import random
from contextlib import nullcontext
from typing import ContextManager

import numpy as np
import torch


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when available, else Apple's mps, else CPU; an unavailable device is a ValueError."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a device: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but this machine has no CUDA GPU: use 'cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device={device!r} but this machine has no Apple GPU: use 'cpu' or 'auto'")
    elif dev.type != "cpu":
        raise ValueError(f"device={device!r} is not supported: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return dev


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX or AVX-512-BF16, where bf16 matmuls beat fp32 several times over."""
    return any(_bf16_units().values())


def describe_cpu() -> str:
    """The CPU's model name, threads and fast-bf16 units, e.g. 'AMD EPYC, 2 threads (no AMX, AVX-512-BF16)'."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:  # not Linux: keep what platform says
        pass
    units = ", ".join(unit if present else f"no {unit}" for unit, present in _bf16_units().items())
    return f"{name}, {torch.get_num_threads()} threads ({units})"


def _bf16_units() -> dict[str, bool]:
    probes = {"AMX": "_is_amx_tile_supported", "AVX-512-BF16": "_is_avx512_bf16_supported"}
    return {unit: bool(getattr(torch.cpu, probe, lambda: False)()) for unit, probe in probes.items()}


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' on CUDA with bf16 support or a CPU with fast bf16, 'fp16' on older GPUs, else 'fp32'."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision={precision!r} is not allowed: expected 'auto', 'fp32', 'bf16' or 'fp16'")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"  # fp16 trains with a GradScaler
    if device.type == "mps":
        return "fp32"  # bf16 autocast on Apple GPUs is recent and partial
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast(device: torch.device, precision: str) -> ContextManager:
    """Mixed-precision context for the forward pass: bf16 or fp16 autocast, or nothing for fp32."""
    if precision in ("bf16", "fp16"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return nullcontext()


def get_rng_state() -> dict:
    """Every global random state in play (Python, NumPy, torch CPU and CUDA), safe for weights_only loading."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore what `get_rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def bars_disabled() -> bool:
    """TQDM_DISABLE=1 hides every progress bar (the epoch lines stay); tqdm.notebook itself ignores the variable."""
    return os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")
