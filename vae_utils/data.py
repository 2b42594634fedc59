"""Data sets: MNIST-style IDX files found locally, on the system, or downloaded by torchvision."""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Iterator, Optional, Union

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.datasets.mnist import read_image_file, read_label_file

# name -> (torchvision class, directories where OS packages install the upstream IDX files)
DATASETS: dict[str, tuple[type, tuple[str, ...]]] = {
    "fashion-mnist": (datasets.FashionMNIST, ("/usr/share/datasets/fashion-mnist",)),
    "mnist": (datasets.MNIST, ("/usr/share/datasets/mnist",)),
}
SPLITS = ("train", "test")
HOW_TO_GET = {
    "fashion-mnist": "on Debian/Ubuntu run `sudo apt-get install dataset-fashion-mnist`, or put the four "
    "*-ubyte(.gz) files of https://github.com/zalandoresearch/fashion-mnist in ROOT",
    "mnist": "put the four *-ubyte(.gz) files of the MNIST release in ROOT, or run once with internet access",
}


def default_root() -> Path:
    """Where data is kept unless a root is given: $VAE_DATA_DIR, else ~/.cache/vae_utils/data."""
    return Path(os.environ.get("VAE_DATA_DIR") or Path.home() / ".cache" / "vae_utils" / "data")


class ImageDataset(Dataset):
    """Images held in memory as uint8 (N, C, H, W); items are (float image (C, H, W) in [0, 1], label)."""

    def __init__(self, images: Tensor, labels: Tensor, name: str = "images") -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"expected {images.shape[0]} labels, got shape {tuple(labels.shape)}")
        self.images, self.labels, self.name = images, labels.long(), name

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index].float().div_(255), int(self.labels[index])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])

    def subset(self, n: Optional[int]) -> "ImageDataset":
        """The first n images (all of them when n is None)."""
        if n is None:
            return self
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"subset={n!r}: expected a positive number of images")
        if n > len(self):
            raise ValueError(f"subset={n} but {self.name} holds {len(self)} images: pass at most {len(self)}, "
                             "or no subset for all of them")
        return ImageDataset(self.images[:n], self.labels[:n], self.name)

    def __repr__(self) -> str:
        return f"ImageDataset({self.name!r}, n={len(self)}, image_shape={self.image_shape})"


def class_names(name: str) -> list[str]:
    """The data set's class names in label order, e.g. 'T-shirt/top', 'Trouser', ... for Fashion-MNIST."""
    return list(DATASETS[canonical_name(name)][0].classes)


def binarize(dataset: ImageDataset, seed: int = 0) -> ImageDataset:
    """Each pixel drawn once as Bernoulli(grey level) with a fixed seed: the binarized test sets of the literature."""
    generator = torch.Generator().manual_seed(seed)
    bits = torch.bernoulli(dataset.images.float() / 255, generator=generator)
    return ImageDataset((bits * 255).to(torch.uint8), dataset.labels, f"{dataset.name}/binarized-seed{seed}")


def canonical_name(name: str) -> str:
    """'FashionMNIST', 'fashion_mnist', 'Fashion-MNIST' -> 'fashion-mnist'; unknown names are a ValueError."""
    key = str(name).lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist"}.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}: known data sets are {sorted(DATASETS)}")
    return key


def load_dataset(
    name: str = "fashion-mnist",
    split: str = "train",
    root: Union[str, Path, None] = None,
    download: bool = True,
    subset: Optional[int] = None,
) -> ImageDataset:
    """A data set split as an in-memory ImageDataset of (float image (C, H, W) in [0, 1], label).

    A root you name is used or the load fails; without one, $VAE_DATA_DIR (default ~/.cache/vae_utils/data) and
    then the system's copy are searched, then torchvision downloads it. Compressed files are unpacked once into a
    cache that is checked against its source on every load.
    """
    key = canonical_name(name)
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not allowed: expected one of {SPLITS}")
    cls, system_dirs = DATASETS[key]
    named = root is not None
    if named and str(root).strip() == "":
        raise ValueError("root is an empty string: name the folder that holds the IDX files, or pass None")
    root = Path(root) if named else default_root()
    tv_raw = root / cls.__name__ / "raw"  # torchvision's layout, where its downloads land
    names = _file_names(cls)
    places = [root, tv_raw] + ([] if named else [Path(d) for d in system_dirs])
    found = None
    for place in places:
        found = _find_files(place, names)
        if found:
            break
        partial = [n for n in names if (place / n).is_file() or (place / f"{n}.gz").is_file()]
        if partial and named:
            missing = sorted(set(names) - set(partial))
            raise FileNotFoundError(f"{place} holds only part of {key}: {missing} missing; add them (plain or "
                                    ".gz) or remove the others")
    if found is None:
        if not download:
            raise FileNotFoundError(_not_found(key, root, system_dirs, named, "download=False"))
        try:
            cls(str(root), train=split == "train", download=True)
        except Exception as err:  # torchvision raises RuntimeError/URLError/OSError offline
            raise FileNotFoundError(_not_found(key, root, system_dirs, named, f"download failed: {err}")) from None
        found = _find_files(tv_raw, names)
    files = _unpacked(found, tv_raw if _writable(tv_raw) else default_root() / "unpacked" / _digest(root))
    prefix = "train" if split == "train" else "t10k"
    if check_idx_file(files[f"{prefix}-images-idx3-ubyte"])[0] == 0:
        raise ValueError(f"{found[f'{prefix}-images-idx3-ubyte']} holds no images: the {split} split is empty")
    images = read_image_file(str(files[f"{prefix}-images-idx3-ubyte"])).unsqueeze(1)  # (N, 1, H, W) uint8
    labels = read_label_file(str(files[f"{prefix}-labels-idx1-ubyte"]))
    return ImageDataset(images.contiguous(), labels, f"{key}/{split}").subset(subset)


def _file_names(cls: type) -> list[str]:
    """The four uncompressed IDX file names torchvision expects, e.g. 'train-images-idx3-ubyte'."""
    return [os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]


def _find_files(folder: Path, names: list[str]) -> Optional[dict[str, Path]]:
    """Map each expected name to `name` or `name.gz` in folder; None unless all four are there."""
    found = {}
    for name in names:
        for path in (folder / name, folder / f"{name}.gz"):
            if path.is_file():
                found[name] = path
                break
        else:
            return None
    return found


def _unpacked(found: dict[str, Path], cache: Path) -> dict[str, Path]:
    """Checked, uncompressed IDX files: plain ones as they are, .gz ones unpacked into cache (kept while current)."""
    files, counts = {}, {}
    for name, src in found.items():
        dst = src if src.suffix != ".gz" else _unpack(src, cache / name)
        counts[name] = check_idx_file(dst, source=src)[0]
        files[name] = dst
    for kind in ("train", "t10k"):
        n_images, n_labels = (counts[f"{kind}-{part}"] for part in ("images-idx3-ubyte", "labels-idx1-ubyte"))
        if n_images != n_labels:
            raise ValueError(f"{found[f'{kind}-images-idx3-ubyte'].parent}: {kind} split has {n_images} images but "
                             f"{n_labels} labels; the files do not belong together")
    return files


def _unpack(src: Path, dst: Path) -> Path:
    """Decompress src to dst unless dst already holds this very source (its path, size and mtime are stamped).

    Each writer unpacks into a temporary file of its own, checks it, then renames it over dst: processes that
    share a data folder never see, or leave, half a file.
    """
    stat = src.stat()
    stamp = json.dumps({"source": str(src.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    stamp_path = dst.with_name(dst.name + ".source")
    if dst.is_file() and stamp_path.is_file() and stamp_path.read_text() == stamp:
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as fout, gzip.open(src, "rb") as fin:
            shutil.copyfileobj(fin, fout)
        check_idx_file(Path(tmp), source=src)
        os.replace(tmp, dst)
        fd, tmp = tempfile.mkstemp(prefix=f".{stamp_path.name}.", suffix=".tmp", dir=dst.parent)
        with os.fdopen(fd, "w") as f:
            f.write(stamp)
        os.replace(tmp, stamp_path)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{src}: cannot decompress ({err}); the file is corrupt or truncated, get a fresh copy") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dst


def _writable(folder: Path) -> bool:
    """True when folder exists writable, or can be created."""
    for parent in (folder, *folder.parents):
        if parent.exists():
            return os.access(parent, os.W_OK | os.X_OK)
    return False


def _digest(path: Path) -> str:
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]


def check_idx_file(path: Path, source: Optional[Path] = None) -> tuple[int, ...]:
    """Validate an uncompressed unsigned-byte IDX file's header and size; return its dimensions."""
    shown = source or path
    want_dims = 3 if "images" in path.name else 1
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(4 + 4 * want_dims)
    if len(header) < 4 or header[:2] != b"\x00\x00" or header[2] != 0x08 or header[3] != want_dims:
        raise ValueError(f"{shown}: not an unsigned-byte IDX file with {want_dims} dimension(s) "
                         f"(magic bytes {header[:4].hex() or 'missing'}, expected 000008{want_dims:02x}); "
                         "the file is corrupt or not what its name says")
    if len(header) < 4 + 4 * want_dims:
        raise ValueError(f"{shown}: IDX header is truncated ({size} bytes)")
    dims = struct.unpack(f">{want_dims}I", header[4:])
    expected = len(header) + math.prod(dims)
    if size != expected:
        raise ValueError(f"{shown}: IDX header announces dimensions {dims} ({expected} bytes) but the file has "
                         f"{size} bytes; it is truncated or corrupt, get a fresh copy")
    return dims


def _not_found(key: str, root: Path, system_dirs: tuple[str, ...], named: bool, why: str) -> str:
    places = ", ".join(str(p) for p in (root, root / DATASETS[key][0].__name__ / "raw", *([] if named else system_dirs)))
    return f"{key} not found in {places} ({why}). To get it: {HOW_TO_GET[key].replace('ROOT', str(root))}"


def iterate_batches(dataset: Dataset, batch_size: int, device: torch.device, order: Optional[Tensor] = None,
                    start: int = 0) -> Iterator[Tensor]:
    """Yield float batches (B, C, H, W) in [0, 1] on device, in `order` (indices) from batch `start` on.

    An ImageDataset is batched by indexing its uint8 tensor (no per-sample Python work); any other
    Dataset goes through a torch DataLoader.
    """
    order = torch.arange(len(dataset)) if order is None else order
    order = order[start * batch_size:]
    if isinstance(dataset, ImageDataset):
        images = dataset.images.to(device, non_blocking=True)  # a no-op when the data already lives there
        order = order.to(device, non_blocking=True)
        for first in range(0, len(order), batch_size):
            yield images.index_select(0, order[first:first + batch_size]).float().div_(255)
    else:
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=order.tolist())
        for batch in loader:
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            yield x.to(device, non_blocking=True).float()


def dataset_checksum(dataset: Dataset) -> Optional[str]:
    """SHA-256 of an ImageDataset's images and labels (None for other data sets), to tie checkpoints to data."""
    if not isinstance(dataset, ImageDataset):
        return None
    digest = hashlib.sha256(dataset.images.cpu().contiguous().numpy().tobytes())
    digest.update(dataset.labels.cpu().numpy().tobytes())
    return digest.hexdigest()


def dataset_image_shape(dataset: Dataset) -> tuple[int, ...]:
    """(C, H, W) of the first item's image."""
    if isinstance(dataset, ImageDataset):
        return dataset.image_shape
    item = dataset[0]
    x = item[0] if isinstance(item, (list, tuple)) else item
    return tuple(x.shape)
