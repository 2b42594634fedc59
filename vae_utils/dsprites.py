"""dSprites (Matthey et al., 2017): 64x64 binary images of a shape under six factors, each combination once.

`read_release` checks and reads the released `dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`; `render` draws the
same factor grid with this package's own geometry, so that a disentanglement study runs offline. The two are not
the same images (docs/data.md says how they differ): data sets built from them carry different names.
"""
from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

RELEASE_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
FACTOR_NAMES = ("color", "shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_SIZES = (1, 3, 6, 40, 32, 32)  # the release's grid: 737,280 images
SHAPES = ("square", "ellipse", "heart")
SIDE = 64
TEST_FRACTION = 0.1  # the release has no split: a fixed random tenth of the grid is the test split
SPLIT_SEED = 0

# This package's geometry, in pixels of the 64x64 canvas (the release's exact one is not published).
CENTRE_RANGE = (16.0, 48.0)  # the sprite's centre for position 0 and 1
RADIUS = 10.0  # half the extent of a shape at scale 1


def factor_values() -> tuple[Tensor, ...]:
    """The value of every index of each factor, as in the release's latents_values: colour 1, shape 1-3, scale
    0.5-1 (6), orientation 0-2 pi (40, both ends included), positions 0-1 (32 each)."""
    return (torch.ones(1), torch.arange(1.0, 4.0), torch.linspace(0.5, 1.0, 6), torch.linspace(0, 2 * math.pi, 40),
            torch.linspace(0.0, 1.0, 32), torch.linspace(0.0, 1.0, 32))


def grid_factors(rows: Tensor) -> Tensor:
    """The factor indices (N, 6) of images at flat positions rows of the grid (the release's order, pos_y fastest)."""
    out, rest = torch.empty(len(rows), len(FACTOR_SIZES), dtype=torch.long), rows.long()
    for j in reversed(range(len(FACTOR_SIZES))):
        out[:, j], rest = rest % FACTOR_SIZES[j], rest // FACTOR_SIZES[j]
    return out


def split_rows(split: str) -> Tensor:
    """Flat grid positions of a split: test = a fixed random TEST_FRACTION of the grid, train = the rest, each in a
    fixed random order, so that the first n images of a split (a subset) are a uniform sample of its factors."""
    n = math.prod(FACTOR_SIZES)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = int(n * TEST_FRACTION)
    return order[:n_test] if split == "test" else order[n_test:]


def render(factors: Tensor, chunk: int = 2048) -> Tensor:
    """Binary images (N, 1, 64, 64) uint8 in {0, 255} of factor indices (N, 6), drawn at pixel centres."""
    out = torch.zeros(len(factors), 1, SIDE, SIDE, dtype=torch.uint8)
    for shape, inside in enumerate((_square, _ellipse, _heart)):
        rows = (factors[:, 1] == shape).nonzero().squeeze(1)
        for first in range(0, len(rows), chunk):
            part = rows[first:first + chunk]
            u, v = _sprite_frame(factors[part])
            out[part, 0] = inside(u, v).to(torch.uint8).mul_(255)
    return out


def _sprite_frame(factors: Tensor) -> tuple[Tensor, Tensor]:
    """Every pixel centre of the canvas in the frame of each image's sprite (N, 64, 64): unrotated, unit radius."""
    values = factor_values()
    centre = torch.arange(SIDE, dtype=torch.float32) + 0.5
    low, high = CENTRE_RANGE
    cx = (low + (high - low) * values[4][factors[:, 4]])[:, None, None]
    cy = (low + (high - low) * values[5][factors[:, 5]])[:, None, None]
    dx, dy = centre[None, None, :] - cx, cy - centre[None, :, None]  # y up, as the shapes are defined
    angle, r = values[3][factors[:, 3]][:, None, None], (RADIUS * values[2][factors[:, 2]])[:, None, None]
    cos, sin = torch.cos(angle) / r, torch.sin(angle) / r
    return cos * dx + sin * dy, cos * dy - sin * dx


def _square(u: Tensor, v: Tensor) -> Tensor:
    return (u.abs() <= 0.8) & (v.abs() <= 0.8)


def _ellipse(u: Tensor, v: Tensor) -> Tensor:
    return (u / 1.0).pow(2) + (v / 0.5).pow(2) <= 1.0


def _heart(u: Tensor, v: Tensor) -> Tensor:
    """The heart curve (x^2 + y^2 - 1)^3 <= x^2 y^3, scaled to about the square's extent and centred."""
    x, y = u * 1.15, v * 1.15 + 0.12
    return (x.pow(2) + y.pow(2) - 1).pow(3) <= x.pow(2) * y.pow(3)


def generate(split: str) -> tuple[Tensor, Tensor]:
    """(images (N, 1, 64, 64) uint8, factor indices (N, 6)) of a split of the rendered grid."""
    factors = grid_factors(split_rows(split))
    return render(factors), factors


def read_release(path: Union[str, Path], split: str) -> tuple[Tensor, Tensor]:
    """(images (N, 1, 64, 64) uint8 in {0, 255}, factor indices (N, 6)) of a split of the released npz file;
    ValueError naming the file and what is wrong when it is not the release's (keys, shapes, dtypes, values, a
    damaged or truncated archive). Each member's header is read and checked before its data, so a forged file never
    makes the loader allocate more than the release's arrays."""
    path = Path(path)
    n = math.prod(FACTOR_SIZES)
    expected = {"imgs": (n, SIDE, SIDE), "latents_classes": (n, len(FACTOR_SIZES))}
    headers = _member_headers(path)
    missing = sorted(set(expected) - set(headers))
    if missing:
        raise ValueError(f"{path} lacks the key(s) {missing} of the dSprites release (it has {sorted(headers)}): "
                         f"use the released {RELEASE_FILE}")
    for key, shape in expected.items():
        found, dtype = headers[key]
        if found != shape or dtype.hasobject or dtype.kind not in "iub":
            raise ValueError(f"{path}: {key} holds {dtype} of shape {found}; the release has integers of shape "
                             f"{shape}: use the released {RELEASE_FILE}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            imgs, classes = archive["imgs"], archive["latents_classes"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
        raise ValueError(f"{path} is damaged or truncated (a member ends early or fails its checksum): download "
                         f"{RELEASE_FILE} again from https://github.com/google-deepmind/dsprites-dataset") from None
    factors = torch.from_numpy(np.asarray(classes, dtype=np.int64))
    if not bool(((factors >= 0) & (factors < torch.tensor(FACTOR_SIZES))).all()) or imgs.max() > 1:
        raise ValueError(f"{path}: factor indices outside the grid {FACTOR_SIZES} or pixels other than 0/1: use the "
                         f"released {RELEASE_FILE}")
    rows = split_rows(split)
    images = torch.from_numpy(np.ascontiguousarray(imgs[rows.numpy()], dtype=np.uint8)).unsqueeze(1).mul_(255)
    return images, factors[rows]


def _member_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{key: (shape, dtype)} of every .npy member of the npz at path, from the members' headers alone."""
    headers = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                with archive.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                        np.lib.format.read_array_header_2_0
                    shape, _, dtype = read(f)
                headers[member[:-len(".npy")]] = (tuple(shape), dtype)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
        raise ValueError(f"{path} is not a readable .npz file (not a zip archive of .npy arrays, or damaged): "
                         f"download {RELEASE_FILE} again from https://github.com/google-deepmind/dsprites-dataset"
                         ) from None
    return headers
