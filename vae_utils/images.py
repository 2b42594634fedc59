"""Image files to uint8 tensors: a folder of your own images and CelebA's JPEGs, decoded once with every core
into a cached tensor file that is keyed by the file list (names, sizes, modification times) and the preprocessing.

Nothing in the user's folder is ever written: the cache lives under $VAE_DATA_DIR/decoded (or `cache_dir`).

A set too large for memory is memory-mapped: decoded into a file-backed tensor (`torch.from_file`), written to the
cache from there, and read back with `torch.load(..., mmap=True)`, so its pixels live in the page cache, which the
kernel fills and evicts as batches are gathered, instead of the process's own memory. Sets that fit are read into
memory as before (`map_above` says where the line is).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import functional as TF
from tqdm.auto import tqdm

from .files import atomic_torch_save

CACHE_VERSION = 2  # bump when decoding or the file changes, so old caches are decoded again (2: a checksum)
MAP_ABOVE = 0.5  # memory-map a decoded set larger than this share of the memory available when it is loaded


@dataclass(frozen=True)
class Preprocess:
    """How every image is turned into a square uint8 tensor."""

    image_size: int  # side of the square output
    channels: int  # 1 (grey) or 3 (RGB)
    crop: Optional[int] = None  # centre crop of this side before resizing (CelebA: 148), None = no crop

    def __call__(self, path: Path) -> Tensor:
        """(C, S, S) uint8: mode converted, optionally centre-cropped, resized on the short side, centre-cropped."""
        with Image.open(path) as img:
            img.load()  # a truncated file fails here, not later
            img = _convert(img, self.channels)
        if self.crop is not None:
            img = TF.center_crop(img, [self.crop, self.crop])
        img = TF.resize(img, self.image_size, antialias=True)  # the short side becomes image_size
        return TF.pil_to_tensor(TF.center_crop(img, [self.image_size, self.image_size]))


@dataclass
class Decoded:
    """Decoded images and what they came from."""

    images: Tensor  # (N, C, S, S) uint8
    files: list[str]  # paths relative to the root, one per image
    skipped: list[str]  # files that could not be decoded (with skip_bad=True)
    mapped: bool = False  # images is a memory map of the cache file


def list_images(root: Path) -> list[Path]:
    """Every image file (PNG, JPEG, BMP, WebP, ...) under root, sorted by relative path; hidden folders skipped.

    Only regular files count: a FIFO, socket or device with an image's name is skipped and named on stderr (reading
    one would hang). A broken or looping symlink stays in the list, to fail as a bad image does.
    """
    found, odd = [], []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if not name.lower().endswith(IMG_EXTENSIONS) or name.startswith("."):
                continue
            path = Path(folder) / name
            try:
                regular = stat.S_ISREG(os.stat(path).st_mode)  # follows symlinks: a link to a FIFO is skipped too
            except OSError:  # a dangling or looping symlink
                regular = True
            (found if regular else odd).append(path)
    if odd:
        print(f"vae_utils: skipped {len(odd)} file(s) under {root} that are not regular files (first: "
              f"{safe_name(odd[0].relative_to(root).as_posix())})", file=sys.stderr)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def safe_name(name: str) -> str:
    """A file name fit for a message: bytes that are not UTF-8 (kept by Python as surrogates) shown as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def available_memory() -> int:
    """Bytes of memory available to new allocations (Linux's MemAvailable; else the physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def should_map(n_bytes: int, mapped: Optional[bool] = None) -> bool:
    """Whether a decoded set of n_bytes is memory-mapped: as `mapped` says, else when it exceeds MAP_ABOVE of the
    memory available now."""
    return mapped if mapped is not None else n_bytes > MAP_ABOVE * available_memory()


def decode_cached(root: Path, files: list[Path], preprocess: Preprocess, cache_dir: Path, name: str,
                  skip_bad: bool = False, mapped: Optional[bool] = None) -> Decoded:
    """The decoded images of files (under root), from the cache when it matches them and the preprocessing;
    memory-mapped when `mapped` is True, or None and the set is large (see should_map)."""
    key = _cache_key(root, files, preprocess)
    path = cache_dir / f"{name}-{key[:20]}.pt"
    size = len(files) * preprocess.channels * preprocess.image_size ** 2
    mapped = should_map(size, mapped)
    decoded, why = _read_cache(path, len(files), preprocess, mapped) if path.is_file() else (None, "")
    if decoded is None:
        if path.is_file():
            print(f"vae_utils: the decoded cache {path} {why}; decoding the images again", file=sys.stderr)
        decoded = _decode_into_cache(root, files, preprocess, path, mapped)
    if decoded.skipped and not skip_bad:
        raise ValueError(f"{len(decoded.skipped)} image(s) under {root} cannot be decoded (first: "
                         f"{safe_name(decoded.skipped[0])}); fix or remove them, or pass skip_bad_images=True "
                         "(--skip-bad-images)")
    if decoded.skipped:
        print(f"vae_utils: skipped {len(decoded.skipped)} image(s) that cannot be decoded (first: "
              f"{safe_name(decoded.skipped[0])})", file=sys.stderr)
    return decoded


def _decode_into_cache(root: Path, files: list[Path], preprocess: Preprocess, path: Path, mapped: bool) -> Decoded:
    """Decode files (bad ones recorded, not raised) and write the cache at path; a mapped set is decoded into a
    file-backed tensor beside it and read back memory-mapped, so it never has to fit in memory."""
    shape = (len(files), preprocess.channels, preprocess.image_size, preprocess.image_size)
    if not mapped:
        decoded = decode(root, files, preprocess, skip_bad=True)
        _write_cache(path, decoded, preprocess)
        return decoded
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.pixels.tmp")  # removed below, or as a stale temporary
    try:
        out = torch.from_file(str(scratch), shared=True, size=math.prod(shape), dtype=torch.uint8).view(shape)
        decoded = decode(root, files, preprocess, skip_bad=True, out=out)
        _write_cache(path, decoded, preprocess)
    finally:
        scratch.unlink(missing_ok=True)
    del decoded, out
    mapped_back, why = _read_cache(path, len(files), preprocess, mapped=True)
    if mapped_back is None:
        raise OSError(f"the decoded cache {path} just written {why}: the disk may be failing or full")
    return mapped_back


def _write_cache(path: Path, decoded: Decoded, preprocess: Preprocess) -> None:
    atomic_torch_save({"version": CACHE_VERSION, "images": decoded.images, "files": decoded.files,
                       "skipped": decoded.skipped, "preprocess": vars(preprocess),
                       "blake2b": pixels_digest(decoded.images)}, path)


def decode(root: Path, files: list[Path], preprocess: Preprocess, skip_bad: bool = False,
           out: Optional[Tensor] = None) -> Decoded:
    """Decode files with every core (a DataLoader's worker processes), with a progress bar, into `out` (a uint8
    tensor with a row per file, e.g. file-backed) or a new tensor; the images are its first rows."""
    workers = min(os.cpu_count() or 1, 8) if len(files) >= 512 else 0
    loader = torch.utils.data.DataLoader(_Files(files, preprocess), batch_size=64, num_workers=workers,
                                         collate_fn=list)
    if out is None:
        out = torch.empty((len(files), preprocess.channels, preprocess.image_size, preprocess.image_size),
                          dtype=torch.uint8)
    kept, skipped = [], []
    for batch in tqdm(loader, desc=f"decoding {len(files):,} images", unit="batch", leave=False):
        for file, image, error in batch:
            rel = file.relative_to(root).as_posix()
            if image is None:
                if not skip_bad:
                    raise ValueError(f"{safe_name(str(file))} cannot be decoded ({error}): fix or remove it, or "
                                     "pass skip_bad_images=True (--skip-bad-images)")
                skipped.append(rel)
            else:
                out[len(kept)] = image
                kept.append(rel)
    if not kept:
        raise ValueError(f"none of the {len(files)} image file(s) under {root} could be decoded")
    images = out[:len(kept)]
    return Decoded(images.clone() if skipped and not _file_backed(out) else images, kept, skipped)


def _file_backed(images: Tensor) -> bool:
    """True for a tensor whose storage is a mapped file (torch.from_file), which cannot be shrunk by a copy."""
    return getattr(images.untyped_storage(), "filename", None) is not None


def test_split_mask(files: list[str], test_fraction: float) -> Tensor:
    """True for the files of the test split: a hash of each relative path, so adding files moves no old one."""
    hashes = [int.from_bytes(hashlib.sha256(os.fsencode(f)).digest()[:8], "big") / 2**64 for f in files]
    return torch.tensor([h < test_fraction for h in hashes], dtype=torch.bool)


class _Files(torch.utils.data.Dataset):
    def __init__(self, files: list[Path], preprocess: Preprocess) -> None:
        self.files, self.preprocess = files, preprocess

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            return self.files[i], self.preprocess(self.files[i]), None
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            # truncated, corrupt, not an image, a broken link, or more pixels than PIL agrees to decode
            return self.files[i], None, " ".join(str(err).split())[:200]


def _convert(img: Image.Image, channels: int) -> Image.Image:
    """Any PIL mode (L, RGB, RGBA, P, LA, 16-bit, CMYK, ...) to L or RGB; transparency is composited on white."""
    if img.mode.startswith("I") or img.mode == "F":  # 16/32-bit grey: scale the full range to 8 bits
        array = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or array.max() > 255 else 255.0
        img = Image.fromarray(np.clip(array / top * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img.convert("L" if channels == 1 else "RGB")


def _cache_key(root: Path, files: list[Path], preprocess: Preprocess) -> str:
    listing = []
    for f in files:
        try:
            info = f.stat()
            listing.append((f.relative_to(root).as_posix(), info.st_size, info.st_mtime_ns))
        except OSError:  # a broken link: listed, to be counted as a bad image
            listing.append((f.relative_to(root).as_posix(), -1, -1))
    blob = json.dumps({"version": CACHE_VERSION, "root": str(root.resolve()), "files": listing,
                       "preprocess": vars(preprocess)})
    return hashlib.sha256(blob.encode()).hexdigest()


def pixels_digest(images: Tensor, chunk_bytes: int = 64 << 20) -> str:
    """BLAKE2b of a uint8 tensor's bytes (about 1 GB/s), read in chunks of rows (a memory-mapped set is never
    copied whole): what the decoded cache checks its pixels against."""
    digest = hashlib.blake2b()
    rows = max(1, chunk_bytes // max(1, images[0].numel())) if len(images) else 1
    for first in range(0, len(images), rows):
        digest.update(images[first:first + rows].contiguous().numpy())
    return digest.hexdigest()


def _read_cache(path: Path, n_files: int, preprocess: Preprocess, mapped: bool = False
                ) -> tuple[Optional[Decoded], str]:
    """(the cache's contents, "") when they are whole and consistent, else (None, why): it is then decoded again.
    mapped: the images stay in the file, memory-mapped (torch.load(mmap=True))."""
    try:
        data = torch.load(path, weights_only=True, mmap=mapped)
        images, files, skipped = data["images"], list(data["files"]), list(data["skipped"])
    except Exception:  # truncated, corrupt, or not ours
        return None, "is unreadable"
    shape = (len(files), preprocess.channels, preprocess.image_size, preprocess.image_size)
    if (data.get("version") != CACHE_VERSION or not isinstance(images, Tensor) or images.dtype != torch.uint8
            or tuple(images.shape) != shape or len(files) + len(skipped) != n_files):
        return None, "is from another version or does not match the files"
    if data.get("blake2b") != pixels_digest(images):
        return None, "holds pixels that differ from the checksum written with them (the file was damaged)"
    return Decoded(images, files, skipped, mapped), ""
