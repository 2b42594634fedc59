"""Data sets as in-memory uint8 tensors: MNIST-style IDX files, CIFAR-10 and SVHN through torchvision's classes,
CelebA and a folder of your own images decoded once into a cache (images.py)."""
from __future__ import annotations

import errno
import gzip
import hashlib
import json
import math
import os
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass, replace
from difflib import get_close_matches
from pathlib import Path
from typing import Iterator, Optional, Union

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.datasets.folder import IMG_EXTENSIONS as IMAGE_TYPES
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.transforms.v2 import functional as TF

from . import dsprites
from .files import remove_stale_temporaries
from .images import Preprocess, decode_cached, list_images, test_split_mask


@dataclass(frozen=True)
class Source:
    """A known data set: torchvision's class for it, its native image shape, and where its files come from."""

    tv_class: Optional[type]  # torchvision's dataset class (None: a folder of image files)
    image_size: int  # native side (a folder's default)
    channels: int  # native channels (a folder's default)
    system_dirs: tuple[str, ...] = ()  # where OS packages install the files
    how_to_get: str = ""  # what to put where (ROOT stands for the data root)


DATASETS: dict[str, Source] = {
    "fashion-mnist": Source(datasets.FashionMNIST, 28, 1, ("/usr/share/datasets/fashion-mnist",),
                            "on Debian/Ubuntu run `sudo apt-get install dataset-fashion-mnist`, or put the four "
                            "*-ubyte(.gz) files of https://github.com/zalandoresearch/fashion-mnist in ROOT"),
    "mnist": Source(datasets.MNIST, 28, 1, ("/usr/share/datasets/mnist",),
                    "put the four *-ubyte(.gz) files of the MNIST release in ROOT, or run once with internet access"),
    "cifar10": Source(datasets.CIFAR10, 32, 3, (),
                      "put the folder cifar-10-batches-py/ of the python release (data_batch_1 ... data_batch_5, "
                      "test_batch, batches.meta) in ROOT, or run once with internet access"),
    "svhn": Source(datasets.SVHN, 32, 3, (),
                   "put train_32x32.mat and test_32x32.mat (the cropped-digits release) in ROOT, or run once with "
                   "internet access"),
    "celeba": Source(datasets.CelebA, 64, 3, (),
                     "put img_align_celeba/ (the aligned-and-cropped JPEGs) and list_eval_partition.txt, "
                     "list_attr_celeba.txt, identity_CelebA.txt, list_bbox_celeba.txt, "
                     "list_landmarks_align_celeba.txt in ROOT/celeba/ (torchvision's download from Google Drive "
                     "often fails: fetch them by hand)"),
    "folder": Source(None, 64, 3, (), "pass root=THE_FOLDER (--data-dir): images in class sub-folders or flat"),
    "dsprites": Source(None, 64, 1, (), f"put {dsprites.RELEASE_FILE} (https://github.com/google-deepmind/"
                                        "dsprites-dataset) in ROOT, or use dsprites-generated, drawn offline"),
    "dsprites-generated": Source(None, 64, 1, (), "nothing: it is drawn on the fly (vae_utils/dsprites.py)"),
}
SPLITS = ("train", "test")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CELEBA_CROP = 148  # centre crop before resizing to 64x64, as PyTorch-VAE and most VAE papers do


def default_root() -> Path:
    """Where data is kept unless a root is given: $VAE_DATA_DIR, else ~/.cache/vae_utils/data."""
    return Path(os.environ.get("VAE_DATA_DIR") or Path.home() / ".cache" / "vae_utils" / "data")


class ImageDataset(Dataset):
    """Images as uint8 (N, C, H, W), in memory or memory-mapped from the decoded cache (mapped=True: batches are
    gathered from the map on the CPU, and the set is never copied whole); items are (float image (C, H, W) in
    [0, 1], label)."""

    def __init__(self, images: Tensor, labels: Optional[Tensor] = None, name: str = "images",
                 classes: Optional[list[str]] = None, factors: Optional[Tensor] = None,
                 factor_names: tuple[str, ...] = (), mapped: bool = False) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        labels = torch.full((images.shape[0],), -1) if labels is None else torch.as_tensor(labels)
        if labels.shape != (images.shape[0],):
            raise ValueError(f"expected {images.shape[0]} labels, got shape {tuple(labels.shape)}")
        if factors is not None:
            factors = torch.as_tensor(factors).long()
            if factors.dim() != 2 or len(factors) != len(images) or factors.shape[1] != len(factor_names):
                raise ValueError(f"expected factors of shape ({len(images)}, {len(factor_names)}) (one column per "
                                 f"name in factor_names), got {tuple(factors.shape)}")
        self.images, self.labels, self.name, self.classes = images, labels.long(), name, classes
        self.factors, self.factor_names = factors, tuple(factor_names)  # generative factors (dSprites), as indices
        self.mapped = mapped  # the images are a memory map of the decoded cache (a set larger than memory)

    @property
    def has_labels(self) -> bool:
        """True when every image has a class label (-1 marks an unlabelled image)."""
        return len(self) > 0 and bool((self.labels >= 0).all())

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
        check_subset(n, len(self), self.name)
        return self.take(slice(0, n))

    def take(self, rows) -> "ImageDataset":
        """The images (with their labels and factors) at rows: a slice (of a mapped set: still mapped) or an
        index tensor (a copy in memory)."""
        return ImageDataset(self.images[rows], self.labels[rows], self.name, self.classes,
                            None if self.factors is None else self.factors[rows], self.factor_names,
                            self.mapped and isinstance(rows, slice))

    def with_images(self, images: Tensor, name: Optional[str] = None) -> "ImageDataset":
        """The same rows (labels, factors) with other images, e.g. binarized, resized or on another device."""
        return ImageDataset(images, self.labels, self.name if name is None else name, self.classes, self.factors,
                            self.factor_names, self.mapped and images is self.images)

    def __repr__(self) -> str:
        return f"ImageDataset({self.name!r}, n={len(self)}, image_shape={self.image_shape})"


def check_subset(n: int, total: int, name: str) -> None:
    """ValueError unless the first n of a set of `total` images exist."""
    if n > total:
        raise ValueError(f"subset={n} but {name} holds {total} images: pass at most {total}, or no subset for all "
                         "of them")


def class_names(name: str) -> list[str]:
    """The data set's class names in label order, e.g. 'T-shirt/top', 'Trouser', ... ([] when it has none)."""
    key = canonical_name(name)
    if key in ("svhn", "cifar10"):
        return [str(d) for d in range(10)] if key == "svhn" else list(CIFAR10_CLASSES)
    return list(getattr(DATASETS[key].tv_class, "classes", []))


def binarize(dataset: ImageDataset, seed: int = 0) -> ImageDataset:
    """Each pixel drawn once as Bernoulli(grey level) with a fixed seed: the binarized test sets of the literature."""
    generator = torch.Generator().manual_seed(seed)
    bits = torch.bernoulli(dataset.images.float() / 255, generator=generator)
    return dataset.with_images((bits * 255).to(torch.uint8), f"{dataset.name}/binarized-seed{seed}")


def validation_split(n_images: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """(training rows, validation rows) of a training split of n_images: val_size rows held out by a permutation
    seeded with seed alone (the same in every run, resume and torchrun rank with that seed); the training rows
    in file order, so that a subset takes the first of them."""
    if not 0 < val_size < n_images:
        raise ValueError(f"val_size={val_size} but the training split holds {n_images} images: hold out from 1 to "
                         f"{n_images - 1} of them (e.g. --val-size {max(1, n_images // 6)}), or 0 for no validation")
    permutation = torch.randperm(n_images, generator=torch.Generator().manual_seed(seed))
    return permutation[val_size:].sort().values, permutation[:val_size]


def bernoulli_pixels(x: Tensor) -> Tensor:
    """Each value of x (in [0, 1]) drawn as a Bernoulli(x) pixel, 0. or 1., from 32 random bits per pixel.

    64-bit words from the global generator, each split into two 32-bit integers, are compared with x scaled to 2**32
    (in int64: no float64, which mps lacks): P(1) = ceil(x * 2**32) / 2**32, so 0 and 1 stay 0 and 1 and any other
    value is off by less than 2**-32. On a CPU 1.6-1.9x as fast as torch.bernoulli (`benchmarks/step_profile.py
    binarize`), fastest on a contiguous x.
    """
    n = x.numel()
    words = torch.empty((n + 1) // 2, dtype=torch.int64, device=x.device).random_(-2**63, None)  # all 64 bits
    bits = words.view(torch.int32)[:n].view(x.shape).long() + 2**31  # uniform on [0, 2**32)
    return (bits < (x.float() * 2.0**32).ceil().long()).to(x.dtype)  # x * 2**32 is exact in float32


def canonical_name(name: str) -> str:
    """'FashionMNIST', 'fashion_mnist', 'CIFAR-10' -> 'fashion-mnist', 'cifar10'; unknown names are a ValueError."""
    key = str(name).lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}.get(key, key)
    if key not in DATASETS:
        close = get_close_matches(key, DATASETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown data set {name!r}{hint}: known data sets are {sorted(DATASETS)}")
    return key


def load_dataset(
    name: str = "fashion-mnist",
    split: str = "train",
    root: Union[str, Path, None] = None,
    download: bool = True,
    subset: Optional[int] = None,
    *,
    image_size: Optional[int] = None,
    channels: Optional[int] = None,
    skip_bad_images: bool = False,
    cache_dir: Union[str, Path, None] = None,
    test_fraction: float = 0.1,
    memory_map: Optional[bool] = None,
) -> ImageDataset:
    """A data set split as an in-memory ImageDataset of (float image (C, H, W) in [0, 1], label).

    Names: fashion-mnist, mnist, cifar10, svhn, celeba, folder, dsprites (the release's npz file) and
    dsprites-generated (the same factor grid drawn offline; see dsprites.py), which carry their factors (see
    DATASETS). A root you name is used or the load fails; without one, $VAE_DATA_DIR (default
    ~/.cache/vae_utils/data) and then the system's copy are searched,
    then torchvision downloads the set. image_size and channels (1 or 3) resize (short side, centre crop) and
    convert; a folder's default is 64x64 RGB. CelebA and folders are decoded once into a cache under cache_dir
    (default $VAE_DATA_DIR/decoded); a folder's test split is the test_fraction of files chosen by a hash of
    their relative paths. skip_bad_images skips (and counts) files that cannot be decoded instead of failing.
    A decoded CelebA or folder split larger than half the available memory is memory-mapped from its cache
    (memory_map=True or False decides instead): it trains with bounded memory, the page cache doing the rest.
    """
    key = canonical_name(name)
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not allowed: expected one of {SPLITS}")
    if root is not None and str(root).strip() == "":
        raise ValueError("root is an empty string: name the folder that holds the data set, or pass None")
    source = DATASETS[key]
    size = source.image_size if image_size is None else image_size
    n_channels = source.channels if channels is None else channels
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 512:
        raise ValueError(f"image_size={image_size!r}: expected an integer from 8 to 512")
    if n_channels not in (1, 3):
        raise ValueError(f"channels={channels!r}: expected 1 (grey) or 3 (RGB)")
    cache = Path(cache_dir) if cache_dir is not None else default_root() / "decoded"
    preprocess = Preprocess(size, n_channels)
    if key == "folder":
        dataset = _load_folder(root, split, preprocess, cache, skip_bad_images, test_fraction, memory_map)
    elif key.startswith("dsprites"):
        return _resized(_load_dsprites(key, split, root, subset), preprocess)
    elif key == "celeba":
        dataset = _load_celeba(root, split, replace(preprocess, crop=CELEBA_CROP), cache, download, skip_bad_images,
                               memory_map)
    else:
        loader = _load_idx if key in ("mnist", "fashion-mnist") else _load_torchvision_arrays
        dataset = _resized(loader(key, split, root, download).subset(subset), preprocess)  # the subset first: only
        # its images are resized
    return dataset.subset(subset)


def _load_dsprites(key: str, split: str, root: Union[str, Path, None], subset: Optional[int]) -> ImageDataset:
    """dSprites: the release's npz file (key "dsprites"), or the same factor grid drawn by dsprites.render (key
    "dsprites-generated", only the first `subset` images of the split); labels are the shape (3 classes), factors
    the six factor indices."""
    if key == "dsprites-generated":
        rows = dsprites.split_rows(split)
        if isinstance(subset, int) and not isinstance(subset, bool):
            check_subset(subset, len(rows), f"{key}/{split}")  # before drawing anything
            rows = rows[:max(subset, 0)]  # a subset below 1 is refused by .subset below
        factors = dsprites.grid_factors(rows)
        images = dsprites.render(factors)
    else:
        named = root is not None
        folder = Path(root) if named else default_root()
        path = next((p for p in (folder / dsprites.RELEASE_FILE, folder / "dsprites" / dsprites.RELEASE_FILE)
                     if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"dsprites not found: no {dsprites.RELEASE_FILE} in {folder} or "
                                    f"{folder / 'dsprites'}. To get it: "
                                    f"{DATASETS[key].how_to_get.replace('ROOT', str(folder))}")
        images, factors = dsprites.read_release(path, split)
    dataset = ImageDataset(images, factors[:, 1], f"{key}/{split}", list(dsprites.SHAPES), factors,
                           dsprites.FACTOR_NAMES)
    return dataset.subset(subset)


def _load_idx(key: str, split: str, root: Union[str, Path, None], download: bool) -> ImageDataset:
    """MNIST-style IDX files, checked and read by torchvision's IDX reader."""
    source, named = DATASETS[key], root is not None
    cls, system_dirs = source.tv_class, source.system_dirs
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
            raise FileNotFoundError(_not_found(key, root, named, "download=False"))
        try:
            cls(str(root), train=split == "train", download=True)
        except Exception as err:  # torchvision raises RuntimeError/URLError/OSError offline
            raise FileNotFoundError(_not_found(key, root, named, f"download failed: {err}")) from None
        found = _find_files(tv_raw, names)
    # a root you name is never written: its .gz files are unpacked into the cache, as are read-only ones
    cache = tv_raw if not named and _writable(tv_raw) else default_root() / "unpacked" / _digest(root)
    files, counts = _unpacked(found, cache)
    prefix = "train" if split == "train" else "t10k"
    if counts[f"{prefix}-images-idx3-ubyte"] == 0:
        raise ValueError(f"{found[f'{prefix}-images-idx3-ubyte']} holds no images: the {split} split is empty")
    images = read_image_file(str(files[f"{prefix}-images-idx3-ubyte"])).unsqueeze(1)  # (N, 1, H, W) uint8
    labels = read_label_file(str(files[f"{prefix}-labels-idx1-ubyte"]))
    return ImageDataset(images.contiguous(), labels, f"{key}/{split}", class_names(key))


def _load_torchvision_arrays(key: str, split: str, root: Union[str, Path, None], download: bool) -> ImageDataset:
    """CIFAR-10 or SVHN through torchvision's own class (its pickle / .mat readers and integrity checks)."""
    source = DATASETS[key]
    root = Path(root) if root is not None else default_root()
    split_args = {"train": split == "train"} if key == "cifar10" else {"split": split}
    try:
        try:
            tv = source.tv_class(str(root), **split_args, download=False)
        except RuntimeError:  # "Dataset not found or corrupted"
            if not download:
                raise
            tv = source.tv_class(str(root), **split_args, download=True)
    except ImportError as err:  # SVHN's .mat files need scipy
        raise ImportError(f"{key} needs {err.name or 'scipy'} to read its files: pip install scipy") from None
    except Exception as err:  # not found, corrupt (md5), or the download failed offline
        why = " ".join(str(err).split())[:200]
        raise FileNotFoundError(f"{key} {split} not found or corrupt in {root} ({why}). To get it: "
                                f"{source.how_to_get.replace('ROOT', str(root))}") from None
    images = torch.as_tensor(tv.data)
    images = images.permute(0, 3, 1, 2) if key == "cifar10" else images  # CIFAR is (N, H, W, C), SVHN (N, C, H, W)
    labels = torch.as_tensor(tv.targets if key == "cifar10" else tv.labels)
    return ImageDataset(images.contiguous(), labels, f"{key}/{split}", class_names(key))


def _load_celeba(root: Union[str, Path, None], split: str, preprocess: Preprocess, cache: Path, download: bool,
                 skip_bad: bool, memory_map: Optional[bool] = None) -> ImageDataset:
    """CelebA's aligned-and-cropped images of a split (list_eval_partition.txt), via torchvision's CelebA class."""
    root = Path(root) if root is not None else default_root()
    source = DATASETS["celeba"]
    folder = root / "celeba"
    if (folder / "img_align_celeba").is_dir() and not (folder / "list_eval_partition.txt").is_file():
        raise FileNotFoundError(f"{folder / 'list_eval_partition.txt'} is missing: CelebA's splits come from it; "
                                "put it beside img_align_celeba/")
    try:
        tv = datasets.CelebA(str(root), split=split, target_type=[], download=download)
    except Exception as err:  # not found, a text file with the wrong checksum, or the download failed
        why = " ".join(str(err).split())[:200]
        raise FileNotFoundError(f"celeba not found or corrupt in {folder} ({why}). To get it: "
                                f"{source.how_to_get.replace('ROOT', str(root))}") from None
    images_dir = folder / "img_align_celeba"
    files = [images_dir / f for f in tv.filename]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) of list_eval_partition.txt are missing from {images_dir} "
                                f"(first: {missing[0].name}): unpack img_align_celeba.zip there")
    decoded = decode_cached(images_dir, files, preprocess, cache, f"celeba-{split}", skip_bad, memory_map)
    return ImageDataset(decoded.images, None, f"celeba/{split}", mapped=decoded.mapped)


def _load_folder(root: Union[str, Path, None], split: str, preprocess: Preprocess, cache: Path, skip_bad: bool,
                 test_fraction: float, memory_map: Optional[bool] = None) -> ImageDataset:
    """Every image under root; class sub-folders give labels (torchvision's ImageFolder layout), flat gives none."""
    if root is None:
        raise ValueError("the folder data set needs root=THE_FOLDER (--data-dir): the folder that holds the images")
    if not (isinstance(test_fraction, float) and 0 < test_fraction < 1):
        raise ValueError(f"test_fraction={test_fraction!r}: expected a number between 0 and 1")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder: pass the folder that holds the images")
    files = list_images(root)
    if not files:
        raise ValueError(f"{root} holds no images ({', '.join(e.lstrip('.') for e in IMAGE_TYPES)}): put them "
                         "there, flat or in one sub-folder per class")
    names = [f.relative_to(root).as_posix() for f in files]
    in_test = test_split_mask(names, test_fraction)
    keep = in_test if split == "test" else ~in_test
    if not keep.any():
        raise ValueError(f"the {split} split of {root} is empty ({len(files)} images, test_fraction="
                         f"{test_fraction}): add images or change test_fraction")
    classes, _ = _folder_labels(names)  # from every file, so that both splits number the classes alike
    split_files = [f for f, k in zip(files, keep.tolist()) if k]  # each split decoded and cached on its own
    decoded = decode_cached(root, split_files, preprocess, cache, f"folder-{_digest(root)}-{split}", skip_bad,
                            memory_map)
    index = {name: i for i, name in enumerate(classes or [])}
    labels = None if classes is None else torch.tensor([index[f.split("/", 1)[0]] for f in decoded.files])
    return ImageDataset(decoded.images, labels, f"folder:{root.name}-{_digest(root)[:8]}/{split}", classes,
                        mapped=decoded.mapped)


def _folder_labels(files: list[str]) -> tuple[Optional[list[str]], Optional[Tensor]]:
    """Class names and labels from the first path component when every image sits in a sub-folder, else none."""
    if not all("/" in f for f in files):
        return None, None
    classes = sorted({f.split("/", 1)[0] for f in files})
    index = {c: i for i, c in enumerate(classes)}
    return classes, torch.tensor([index[f.split("/", 1)[0]] for f in files])


def _resized(dataset: ImageDataset, preprocess: Preprocess) -> ImageDataset:
    """The data set converted to preprocess.channels and resized (short side, centre crop) when they differ."""
    images = dataset.images
    if images.shape[1] != preprocess.channels:
        images = images.repeat(1, 3, 1, 1) if preprocess.channels == 3 else TF.rgb_to_grayscale(images)
    size = preprocess.image_size
    if tuple(images.shape[2:]) != (size, size):
        images = torch.cat([TF.center_crop(TF.resize(chunk, size, antialias=True), [size, size])
                            for chunk in images.split(4096)])
    if images is dataset.images:
        return dataset
    return dataset.with_images(images.contiguous())


def _file_names(cls: type) -> list[str]:
    """The four uncompressed IDX file names torchvision expects, e.g. 'train-images-idx3-ubyte'."""
    return [os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]


def _find_files(folder: Path, names: list[str]) -> Optional[dict[str, Path]]:
    """Map each expected name to `name` or `name.gz` in folder; None unless all four are there."""
    found = {}
    for name in names:  # a .gz beside its unpacked copy (torchvision's raw/ folder) is the source: it is re-checked
        for path in (folder / f"{name}.gz", folder / name):
            if path.is_file():
                found[name] = path
                break
        else:
            return None
    return found


def _unpacked(found: dict[str, Path], cache: Path) -> tuple[dict[str, Path], dict[str, int]]:
    """Checked, uncompressed IDX files (plain ones as they are, .gz ones unpacked into cache while current) and the
    number of items each holds."""
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
    return files, counts


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
    remove_stale_temporaries(dst.parent)  # left by a process killed while unpacking (the pid is in the name)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.{os.getpid()}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as fout, gzip.open(src, "rb") as fin:
            shutil.copyfileobj(fin, fout)
        check_idx_file(Path(tmp), source=src)
        os.replace(tmp, dst)
        fd, tmp = tempfile.mkstemp(prefix=f".{stamp_path.name}.{os.getpid()}.", suffix=".tmp", dir=dst.parent)
        with os.fdopen(fd, "w") as f:
            f.write(stamp)
        os.replace(tmp, stamp_path)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on the device of {dst.parent} to unpack {src.name} (errno 28):"
                                        " free some space, or set $VAE_DATA_DIR to a folder on another disk") from None
        if isinstance(err, (gzip.BadGzipFile, FileNotFoundError)) or not err.errno:
            raise ValueError(f"{src}: cannot decompress ({err}); the file is corrupt or truncated, get a fresh copy"
                             ) from None
        raise OSError(err.errno, f"cannot unpack {src} into {dst.parent}: {err.strerror or err}") from None
    except (EOFError, zlib.error) as err:
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
    return hashlib.sha256(os.fsencode(path.resolve())).hexdigest()[:12]  # the name's bytes: any file name works


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


def _not_found(key: str, root: Path, named: bool, why: str) -> str:
    source = DATASETS[key]
    places = ", ".join(str(p) for p in (root, root / source.tv_class.__name__ / "raw",
                                         *([] if named else source.system_dirs)))
    return f"{key} not found in {places} ({why}). To get it: {source.how_to_get.replace('ROOT', str(root))}"


def iterate_batches(dataset: Dataset, batch_size: int, device: torch.device, order: Optional[Tensor] = None,
                    start: int = 0, labels: bool = False) -> Iterator:
    """Yield float batches (B, C, H, W) in [0, 1] on device, in `order` (indices) from batch `start` on; with
    labels=True, pairs (images, labels (B,) long) instead.

    An ImageDataset is batched by indexing its uint8 tensor (no per-sample Python work); any other
    Dataset goes through a torch DataLoader.
    """
    order = torch.arange(len(dataset)) if order is None else order
    order = order[start * batch_size:]
    if isinstance(dataset, ImageDataset):
        # a no-op when the data already live there; a memory-mapped set stays in its map, each batch gathered from it
        images = dataset.images if dataset.mapped else dataset.images.to(device, non_blocking=True)
        targets = dataset.labels.to(images.device, non_blocking=True) if labels else None
        order = order.to(images.device, non_blocking=True)
        for first in range(0, len(order), batch_size):
            rows = order[first:first + batch_size]
            x = images.index_select(0, rows).to(device, non_blocking=True).float().div_(255)
            yield (x, targets.index_select(0, rows).to(device, non_blocking=True)) if labels else x
    else:
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=order.tolist())
        for batch in loader:
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            x = x.to(device, non_blocking=True).float()
            if labels:
                if not isinstance(batch, (list, tuple)) or len(batch) < 2:
                    raise ValueError(f"{type(dataset).__name__} yields no labels: a conditional model needs "
                                     "(image, label) items")
                yield x, torch.as_tensor(batch[1]).to(device, non_blocking=True).long()
            else:
                yield x


def model_batches(model: torch.nn.Module, dataset: Dataset, batch_size: int) -> Iterator[Tensor]:
    """Float batches of dataset on the model's device, the model in eval mode meanwhile (restored afterwards)."""
    for x, _ in model_inputs(model, dataset, batch_size, conditional=False):
        yield x


def model_inputs(model: torch.nn.Module, dataset: Dataset, batch_size: int, conditional: Optional[bool] = None
                 ) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
    """(x, extra) pairs for the model's methods, `model.loss(x, **extra)`: extra is {"labels": y} for a conditional
    model (a `conditional = True` attribute, e.g. the conditional VAE) and {} otherwise; the model in eval mode
    meanwhile (restored afterwards)."""
    if len(dataset) == 0:
        raise ValueError("cannot evaluate on an empty data set")
    labelled = is_conditional(model) if conditional is None else conditional
    if labelled:
        check_labels(model, dataset, "the data set")
    was_training = model.training
    model.eval()
    try:
        for batch in iterate_batches(dataset, batch_size, next(model.parameters()).device, labels=labelled):
            yield (batch[0], {"labels": batch[1]}) if labelled else (batch, {})
    finally:
        model.train(was_training)


def is_conditional(model: object) -> bool:
    """True for a model whose methods take the images' labels (`conditional = True`, e.g. the conditional VAE)."""
    return bool(getattr(model, "conditional", False))


def check_labels(model: torch.nn.Module, dataset: Dataset, name: str) -> None:
    """ValueError unless every image of an ImageDataset has a label the conditional model knows (0..classes-1)."""
    if not isinstance(dataset, ImageDataset):
        return
    if not dataset.has_labels:
        raise ValueError(f"{name} ({dataset.name}) has no class labels, and the {type(model).__name__} is conditioned "
                         "on them: use a labelled data set (e.g. fashion-mnist, or an image folder with one "
                         "sub-folder per class)")
    n_classes = getattr(model, "n_classes", None)
    top = int(dataset.labels.max())
    if n_classes is not None and top >= n_classes:
        raise ValueError(f"{name} ({dataset.name}) has labels up to {top} but the {type(model).__name__} knows "
                         f"{n_classes} classes: build it with num_classes={top + 1} or more")


def dataset_checksum(dataset: Dataset) -> Optional[str]:
    """SHA-256 of an ImageDataset's images and labels (None for other data sets), to tie checkpoints to data."""
    if not isinstance(dataset, ImageDataset):
        return None
    digest = hashlib.sha256()
    images = dataset.images.cpu()
    rows = max(1, (64 << 20) // max(1, images[0].numel())) if len(images) else 1
    for first in range(0, len(images), rows):  # in chunks: a memory-mapped set is never copied whole
        digest.update(images[first:first + rows].contiguous().numpy())
    digest.update(dataset.labels.cpu().numpy().tobytes())
    return digest.hexdigest()


def dataset_image_shape(dataset: Dataset) -> tuple[int, ...]:
    """(C, H, W) of the first item's image."""
    if isinstance(dataset, ImageDataset):
        return dataset.image_shape
    item = dataset[0]
    x = item[0] if isinstance(item, (list, tuple)) else item
    return tuple(x.shape)
