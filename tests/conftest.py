"""Shared helpers and fixtures: a small VAE config, synthetic image data, tiny IDX files written by the tests."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import vae_utils as vu

SMALL = vu.VAEConfig(latent_dim=4, channels=(8, 16), hidden_dim=32)  # a VAE that trains in milliseconds
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write a uint8 array in the IDX format (big-endian header: 0, 0, type 0x08, ndim; then the dims)."""
    data = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def write_mnist_like(folder: Path, n_train: int = 64, n_test: int = 32, compress: bool = True, seed: int = 0) -> dict:
    """Four IDX files like the upstream MNIST/Fashion-MNIST release; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array, compress)
    return arrays


def blob_data(n: int = 64, seed: int = 0):
    """n images of four smooth random blobs (labels 0-3): something to learn, unlike noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(4, 1, 7, 7, generator=g)
    imgs = torch.nn.functional.interpolate(base, size=28, mode="bilinear")[torch.arange(n) % 4]
    return vu.ImageDataset((imgs * 255).round().to(torch.uint8), torch.arange(n) % 4)


@pytest.fixture
def idx_root(tmp_path: Path) -> Path:
    """A data root holding a small synthetic Fashion-MNIST (gzipped IDX files, as the release ships them)."""
    write_mnist_like(tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own data and classifier caches and no system data directories: real files never leak in."""
    import vae_utils.data as data

    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VAE_CACHE_DIR", str(tmp_path / "user-cache"))  # trained classifiers
    monkeypatch.setattr(data, "DATASETS", {k: (cls, ()) for k, (cls, _) in data.DATASETS.items()})
    torch.manual_seed(0)
