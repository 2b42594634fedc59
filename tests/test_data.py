"""Data loading through torchvision's real IDX reader, on small IDX files written here."""
import gzip

import numpy as np
import pytest
import torch

import vae_utils as vu
import vae_utils.data as data
from conftest import IDX_NAMES, write_idx, write_mnist_like


@pytest.mark.parametrize("compress", [True, False])
def test_loads_idx_files_kept_in_the_given_root(tmp_path, compress):
    arrays = write_mnist_like(tmp_path / "root", compress=compress)
    ds = vu.load_dataset("fashion-mnist", "train", root=tmp_path / "root")
    assert len(ds) == 64
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    torch.testing.assert_close(x[0], torch.from_numpy(arrays["train-images-idx3-ubyte"][3]).float() / 255)
    assert y == int(arrays["train-labels-idx1-ubyte"][3])
    assert len(vu.load_dataset("fashion-mnist", "test", root=tmp_path / "root")) == 32


def test_falls_back_to_the_system_location(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "usr-share", n_train=10)
    monkeypatch.setitem(data.DATASETS, "fashion-mnist", (data.datasets.FashionMNIST, (str(tmp_path / "usr-share"),)))
    ds = vu.load_dataset("fashion-mnist", "train", root=tmp_path / "empty-root")
    assert len(ds) == 10
    # the files were unpacked into torchvision's layout under the root, so the next load reads them there
    assert sorted(p.name for p in (tmp_path / "empty-root" / "FashionMNIST" / "raw").iterdir()) == sorted(IDX_NAMES)


def test_the_users_root_wins_over_the_system_location(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "usr-share", n_train=10)
    write_mnist_like(tmp_path / "mine", n_train=20)
    monkeypatch.setitem(data.DATASETS, "fashion-mnist", (data.datasets.FashionMNIST, (str(tmp_path / "usr-share"),)))
    assert len(vu.load_dataset("fashion-mnist", root=tmp_path / "mine")) == 20


def test_mnist_is_supported_too(idx_root):
    assert len(vu.load_dataset("mnist", "test", root=idx_root)) == 32


@pytest.mark.parametrize("alias", ["FashionMNIST", "fashion_mnist", "Fashion-MNIST"])
def test_dataset_name_aliases(alias, idx_root):
    assert len(vu.load_dataset(alias, root=idx_root)) == 64


def test_subset_takes_the_first_images(idx_root):
    full, sub = vu.load_dataset(root=idx_root), vu.load_dataset(root=idx_root, subset=5)
    assert len(sub) == 5 and torch.equal(sub.images, full.images[:5])


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"cifar.*\['fashion-mnist', 'mnist'\]"):
        vu.load_dataset("cifar")


def test_unknown_split_is_a_value_error(idx_root):
    with pytest.raises(ValueError, match="split='val'"):
        vu.load_dataset(root=idx_root, split="val")


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        vu.load_dataset("fashion-mnist", root=tmp_path / "nothing-here", download=False)


def _corrupt(root, name, content: bytes):
    (root / f"{name}.gz").write_bytes(gzip.compress(content))


@pytest.mark.parametrize("name, content, message", [
    ("train-images-idx3-ubyte", b"\x00\x00\x08\x01" + b"\x00" * 100, "magic bytes"),
    ("train-images-idx3-ubyte", b"GIF89a" + b"\x00" * 100, "magic bytes"),
    ("train-images-idx3-ubyte", b"\x00\x00\x08\x03\x00\x00\x00\x40\x00\x00\x00\x1c\x00\x00\x00\x1c" + b"\x00" * 100,
     "truncated"),
    ("train-labels-idx1-ubyte", b"\x00\x00\x08\x01\x00", "truncated"),
    ("train-labels-idx1-ubyte", b"", "magic bytes"),
])
def test_corrupt_idx_files_are_clear_errors_naming_the_file(idx_root, name, content, message):
    _corrupt(idx_root, name, content)
    with pytest.raises(ValueError, match=rf"{name}.*{message}"):
        vu.load_dataset(root=idx_root)


def test_a_truncated_gzip_is_a_clear_error(idx_root):
    path = idx_root / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*corrupt or truncated"):
        vu.load_dataset(root=idx_root)


def test_images_and_labels_of_different_lengths_are_refused(idx_root):
    write_idx(idx_root / "train-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8), compress=True)
    with pytest.raises(ValueError, match="64 images but 7 labels"):
        vu.load_dataset(root=idx_root)
