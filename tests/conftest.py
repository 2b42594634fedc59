"""Shared helpers and fixtures: a small VAE config, synthetic image data, tiny IDX files written by the tests."""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import replace
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


def cli_exit_code(argv) -> int:
    """The exit status of a command line that must stop with SystemExit (a refused input: 2)."""
    from vae_utils.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


@pytest.fixture
def idx_root(tmp_path: Path) -> Path:
    """A data root holding a small synthetic Fashion-MNIST (gzipped IDX files, as the release ships them)."""
    write_mnist_like(tmp_path / "data")
    return tmp_path / "data"


def pytest_configure(config: pytest.Config) -> None:
    """The suite's threads, chosen once from the machine's load as it starts (vae_utils/threads.py's rule: the cores
    other work leaves free) and fixed for every test, subprocess and notebook kernel, so that a busy machine does
    not slow the suite down several times and the runs a test compares bit for bit share one thread count.
    OMP_NUM_THREADS set by the user wins."""
    if not os.environ.get("OMP_NUM_THREADS"):
        threads = vu.threads.threads_for_load()
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def _own_inductor_cache(tmp_path_factory):
    """Inductor's kernels (the compile tests) go to a cache of this test run's own, under pytest's temporary folder,
    not the machine's shared /tmp/torchinductor_$USER; subprocesses inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor-cache")))
        yield


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own data and classifier caches and no system data directories: real files never leak in."""
    import vae_utils.data as data

    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VAE_CACHE_DIR", str(tmp_path / "user-cache"))  # trained classifiers
    monkeypatch.setattr(data, "DATASETS", {k: replace(source, system_dirs=()) for k, source in data.DATASETS.items()})
    torch.manual_seed(0)


def _md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar10(root: Path, monkeypatch: pytest.MonkeyPatch, n_per_batch: int = 8, seed: int = 0) -> dict:
    """CIFAR-10's python release in miniature: pickled batches of (N, 3072) uint8 rows; torchvision's md5 list
    is pointed at the files written here, so its real integrity check runs."""
    import pickle

    from torchvision import datasets

    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n_per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data, "filenames": []}, f)
        written[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"]}, f)
    cls = datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[n, _md5(folder / n)] for n in names[:5]])
    monkeypatch.setattr(cls, "test_list", [["test_batch", _md5(folder / "test_batch")]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / "batches.meta")})
    return written


def write_svhn(root: Path, monkeypatch: pytest.MonkeyPatch, n: int = 12, seed: int = 0) -> dict:
    """SVHN's cropped digits in miniature: train/test_32x32.mat with X (32, 32, 3, N) and y in 1..10 (10 = digit 0)."""
    from scipy.io import savemat
    from torchvision import datasets

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    written, split_list = {}, dict(datasets.SVHN.split_list)
    for split in ("train", "test"):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
        path = root / f"{split}_32x32.mat"
        savemat(path, {"X": x, "y": y})
        written[split] = (x, y)
        split_list[split] = [split_list[split][0], path.name, _md5(path)]
    monkeypatch.setattr(datasets.SVHN, "split_list", split_list)
    return written


def write_celeba(root: Path, monkeypatch: pytest.MonkeyPatch, n: int = 12, size=(178, 218)) -> list[str]:
    """CelebA's aligned-and-cropped release in miniature: JPEGs in img_align_celeba/ and the five text files that
    torchvision's CelebA class reads, in their real layouts (partition 0 train, 1 valid, 2 test)."""
    from PIL import Image
    from torchvision import datasets

    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
            folder / "img_align_celeba" / name, quality=90)
    partition = [0] * (n - 6) + [1, 1, 2, 2, 2, 2]
    attrs = ["5_o_Clock_Shadow", "Smiling"]
    files = {
        "list_eval_partition.txt": "".join(f"{f} {p}\n" for f, p in zip(names, partition)),
        "identity_CelebA.txt": "".join(f"{f} {i + 1}\n" for i, f in enumerate(names)),
        "list_attr_celeba.txt": f"{n}\n{' '.join(attrs)}\n" + "".join(f"{f} 1 -1\n" for f in names),
        "list_bbox_celeba.txt": f"{n}\nimage_id x_1 y_1 width height\n" + "".join(f"{f} 1 2 3 4\n" for f in names),
        "list_landmarks_align_celeba.txt": f"{n}\nlefteye_x lefteye_y\n" + "".join(f"{f} 69 109\n" for f in names),
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    file_list = [(fid, _md5(folder / fname) if fname in files else md5, fname)
                 for fid, md5, fname in datasets.CelebA.file_list]
    monkeypatch.setattr(datasets.CelebA, "file_list", file_list)
    return names


def write_image_folder(root: Path, flat: bool = False, n: int = 30) -> list[Path]:
    """PNGs and JPEGs of mixed sizes and modes (L, RGB, RGBA, P, 16-bit) in class sub-folders, or flat."""
    from PIL import Image

    rng = np.random.default_rng(0)
    made = []
    modes = ["L", "RGB", "RGBA", "P", "I;16"]
    for i in range(n):
        cls = ("cats", "dogs", "owls")[i % 3]
        folder = root if flat else root / cls
        folder.mkdir(parents=True, exist_ok=True)
        w, h = int(rng.integers(20, 90)), int(rng.integers(20, 90))
        mode = modes[i % len(modes)]
        if mode == "I;16":
            img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
        else:
            img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
        ext = ".jpg" if mode in ("L", "RGB") and i % 2 else ".png"
        path = folder / f"img{i:03d}{ext}"
        img.save(path)
        made.append(path)
    (root / "notes.txt").write_text("not an image")  # ignored
    return made
