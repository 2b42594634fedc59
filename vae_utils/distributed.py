"""Several processes (torchrun): PyTorch's own process group, read from torchrun's environment.

A plain `python` process or a notebook is world size 1 and every function here is then a no-op.
"""
from __future__ import annotations

import atexit
import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started for a world of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_env(device_type: str) -> None:
    """Join torchrun's process group (nccl on CUDA, gloo on CPU) once; a no-op outside torchrun."""
    if launched_by_torchrun() and dist.is_available() and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=10))
        atexit.register(shutdown)  # a script that only calls vu.train leaves the group cleanly too


def shutdown() -> None:
    """Leave the process group (a no-op when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    """This process's rank (0 outside torchrun)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes in the run (1 outside torchrun)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, the process that writes files and prints."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """On CUDA under torchrun, this rank's GPU (LOCAL_RANK); otherwise device unchanged."""
    if device.type == "cuda" and world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of tensor over all ranks (in place; the tensor itself when alone)."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """Rank 0's tensor on every rank (in place; every rank passes one of the same shape and dtype)."""
    if world_size() > 1:
        dist.broadcast(tensor, src=0)
    return tensor


def broadcast_object(obj: Any) -> Any:
    """Rank 0's obj on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's obj, in rank order, on every rank."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def shard(n: int, parts: int, index: int) -> slice:
    """The index-th of `parts` contiguous, near-equal slices of range(n) (the first n % parts are one longer)."""
    base, extra = divmod(n, parts)
    start = index * base + min(index, extra)
    return slice(start, start + base + (index < extra))
