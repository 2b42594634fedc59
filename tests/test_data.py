"""Data loading through torchvision's real IDX reader, on small IDX files written here."""
import gzip
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import vae_utils as vu
import vae_utils.data as data
from conftest import IDX_NAMES, write_celeba, write_cifar10, write_idx, write_mnist_like, write_svhn


def _system_copy_at(monkeypatch, folder):
    source = data.DATASETS["fashion-mnist"]
    monkeypatch.setitem(data.DATASETS, "fashion-mnist", data.Source(source.tv_class, 28, 1, (str(folder),)))


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


def test_without_a_root_the_system_copy_is_found_and_unpacked_into_the_cache(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "usr-share", n_train=10)
    _system_copy_at(monkeypatch, tmp_path / "usr-share")
    ds = vu.load_dataset("fashion-mnist", "train")
    assert len(ds) == 10
    # unpacked once into torchvision's layout under $VAE_DATA_DIR, each file stamped with its source
    raw = data.default_root() / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir() if not p.name.endswith(".source")) == sorted(IDX_NAMES)


def test_a_named_root_is_used_or_the_load_fails_without_falling_back(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "usr-share", n_train=10)
    _system_copy_at(monkeypatch, tmp_path / "usr-share")
    with pytest.raises(FileNotFoundError, match="empty-root"):
        vu.load_dataset("fashion-mnist", "train", root=tmp_path / "empty-root", download=False)


def test_a_named_root_missing_one_file_names_it_instead_of_using_another_copy(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "usr-share", n_train=10)
    write_mnist_like(tmp_path / "mine", n_train=12)
    (tmp_path / "mine" / "t10k-labels-idx1-ubyte.gz").unlink()
    _system_copy_at(monkeypatch, tmp_path / "usr-share")
    with pytest.raises(FileNotFoundError, match=r"only part of fashion-mnist: \['t10k-labels-idx1-ubyte'\] missing"):
        vu.load_dataset("fashion-mnist", "train", root=tmp_path / "mine")


def test_changed_source_files_are_unpacked_again(tmp_path):
    write_mnist_like(tmp_path / "mine", n_train=12, seed=0)
    first = vu.load_dataset("fashion-mnist", root=tmp_path / "mine")
    write_mnist_like(tmp_path / "mine", n_train=20, seed=1)  # the user replaces the files
    second = vu.load_dataset("fashion-mnist", root=tmp_path / "mine")
    assert len(first) == 12 and len(second) == 20


def test_a_read_only_data_folder_is_usable(tmp_path):
    write_mnist_like(tmp_path / "ro", n_train=10)
    os.chmod(tmp_path / "ro", 0o555)
    try:
        if os.access(tmp_path / "ro", os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        assert len(vu.load_dataset("fashion-mnist", root=tmp_path / "ro")) == 10
    finally:
        os.chmod(tmp_path / "ro", 0o755)


def test_a_named_data_folder_is_never_written(tmp_path):
    write_mnist_like(tmp_path / "mine", n_train=10)
    before = sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / "mine").rglob("*"))
    assert len(vu.load_dataset("fashion-mnist", root=tmp_path / "mine")) == 10
    assert sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / "mine").rglob("*")) == before


def test_a_read_only_data_folder_is_unpacked_into_the_cache(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "ro", n_train=10)
    monkeypatch.setattr(data, "_writable", lambda folder: False)  # as for /usr/share without root rights
    assert len(vu.load_dataset("fashion-mnist", root=tmp_path / "ro")) == 10
    assert not (tmp_path / "ro" / "FashionMNIST").exists()
    assert list((data.default_root() / "unpacked").glob("*/train-images-idx3-ubyte"))


TWO_LOADERS = r"""
import hashlib, sys, vae_utils as vu
ds = vu.load_dataset("fashion-mnist", "train", root=sys.argv[1])
print(hashlib.sha256(ds.images.numpy().tobytes()).hexdigest())
"""


def test_processes_unpacking_the_same_fresh_folder_at_once_all_get_whole_data(tmp_path):
    arrays = write_mnist_like(tmp_path / "root", n_train=6000, n_test=10)
    expected = hashlib.sha256(arrays["train-images-idx3-ubyte"][:, None].tobytes()).hexdigest()
    cache = data.default_root() / "unpacked"
    for trial in range(2):
        for p in cache.glob("*/*"):
            p.unlink()
        procs = [subprocess.Popen([sys.executable, "-c", TWO_LOADERS, str(tmp_path / "root")], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
        results = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0] * 3, [err for _, err in results]
        assert {out.strip() for out, _ in results} == {expected}
        assert not list(cache.glob("*/.*.tmp"))


def test_the_users_root_wins_over_the_system_location(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "usr-share", n_train=10)
    write_mnist_like(tmp_path / "mine", n_train=20)
    _system_copy_at(monkeypatch, tmp_path / "usr-share")
    assert len(vu.load_dataset("fashion-mnist", root=tmp_path / "mine")) == 20


def test_mnist_is_supported_too(idx_root):
    assert len(vu.load_dataset("mnist", "test", root=idx_root)) == 32


@pytest.mark.parametrize("alias", ["FashionMNIST", "fashion_mnist", "Fashion-MNIST"])
def test_dataset_name_aliases(alias, idx_root):
    assert len(vu.load_dataset(alias, root=idx_root)) == 64


def test_subset_takes_the_first_images(idx_root):
    full, sub = vu.load_dataset(root=idx_root), vu.load_dataset(root=idx_root, subset=5)
    assert len(sub) == 5 and torch.equal(sub.images, full.images[:5])


def test_unknown_dataset_lists_the_known_ones_and_suggests_the_closest():
    with pytest.raises(ValueError, match=r"'imagenet': known data sets are \['celeba', 'cifar10', 'dsprites', "
                                         r"'dsprites-generated', 'fashion-mnist'"):
        vu.load_dataset("imagenet")
    with pytest.raises(ValueError, match=r"did you mean 'fashion-mnist'\?"):
        vu.load_dataset("fashon-mnist")


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


@pytest.mark.parametrize("damage", [lambda b: b[:500], lambda b: b[:10] + bytes(len(b) - 10)])
def test_a_truncated_or_corrupt_gzip_is_a_clear_error_naming_the_file_and_leaves_nothing_behind(idx_root, damage):
    path = idx_root / "train-images-idx3-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*corrupt or truncated"):
        vu.load_dataset(root=idx_root)
    assert not list(idx_root.rglob("*.tmp"))


def test_an_empty_split_is_a_clear_error(tmp_path):
    write_mnist_like(tmp_path / "root", n_train=0)
    with pytest.raises(ValueError, match="holds no images"):
        vu.load_dataset(root=tmp_path / "root")


def test_an_empty_root_string_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="empty string"):
        vu.load_dataset(root="")
    monkeypatch.setenv("VAE_DATA_DIR", "")
    assert data.default_root() != data.Path("")


def test_images_and_labels_of_different_lengths_are_refused(idx_root):
    write_idx(idx_root / "train-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8), compress=True)
    with pytest.raises(ValueError, match="64 images but 7 labels"):
        vu.load_dataset(root=idx_root)


def test_cifar10_loads_through_torchvisions_class_as_rgb_uint8(tmp_path, monkeypatch):
    written = write_cifar10(tmp_path / "root", monkeypatch)
    train = vu.load_dataset("cifar10", "train", root=tmp_path / "root")
    test = vu.load_dataset("CIFAR-10", "test", root=tmp_path / "root")
    assert len(train) == 40 and len(test) == 8 and train.image_shape == (3, 32, 32)
    data, labels = written["data_batch_1"]
    assert torch.equal(train.images[0], torch.from_numpy(data[0]).view(3, 32, 32))  # the CHW layout of a row
    assert train.labels[:8].tolist() == labels and train.classes[0] == "airplane"


def test_a_corrupt_cifar10_batch_is_refused_by_the_checksum_with_what_to_do(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "root", monkeypatch)
    (tmp_path / "root" / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(FileNotFoundError, match="cifar10 train not found or corrupt.*cifar-10-batches-py/"):
        vu.load_dataset("cifar10", root=tmp_path / "root", download=False)


def test_svhn_loads_its_mat_files_with_digit_zero_as_label_zero(tmp_path, monkeypatch):
    written = write_svhn(tmp_path / "root", monkeypatch)
    ds = vu.load_dataset("svhn", "test", root=tmp_path / "root")
    x, y = written["test"]
    assert ds.image_shape == (3, 32, 32) and len(ds) == 12
    assert torch.equal(ds.images[0], torch.from_numpy(x[..., 0]).permute(2, 0, 1))
    assert ds.labels.tolist() == [int(v) % 10 for v in y[:, 0]]


def test_celeba_takes_its_splits_from_the_partition_file_and_crops_as_the_papers_do(tmp_path, monkeypatch):
    names = write_celeba(tmp_path / "root", monkeypatch)
    train = vu.load_dataset("celeba", "train", root=tmp_path / "root", cache_dir=tmp_path / "cache")
    test = vu.load_dataset("celeba", "test", root=tmp_path / "root", cache_dir=tmp_path / "cache")
    assert len(train) == len(names) - 6 and len(test) == 4 and train.image_shape == (3, 64, 64)
    assert not train.has_labels and train.classes is None
    from PIL import Image
    from torchvision.transforms import functional as TF

    img = Image.open(tmp_path / "root" / "celeba" / "img_align_celeba" / names[0]).convert("RGB")
    expected = TF.pil_to_tensor(TF.center_crop(TF.resize(TF.center_crop(img, [148, 148]), 64, antialias=True), [64, 64]))
    assert torch.equal(train.images[0], expected)


def test_celeba_without_its_partition_file_says_so(tmp_path, monkeypatch):
    write_celeba(tmp_path / "root", monkeypatch)
    (tmp_path / "root" / "celeba" / "list_eval_partition.txt").unlink()
    with pytest.raises(FileNotFoundError, match="list_eval_partition.txt is missing"):
        vu.load_dataset("celeba", root=tmp_path / "root", download=False)


def test_a_missing_data_set_says_which_files_to_put_where(tmp_path):
    for name, files in (("cifar10", "cifar-10-batches-py/"), ("svhn", "train_32x32.mat"),
                        ("celeba", "img_align_celeba/")):
        with pytest.raises(FileNotFoundError, match=files):
            vu.load_dataset(name, root=tmp_path / "empty", download=False)


@pytest.mark.parametrize("image_size, channels", [(32, 3), (16, 1), (64, 1)])
def test_image_size_and_channels_convert_any_set(idx_root, image_size, channels):
    ds = vu.load_dataset("fashion-mnist", root=idx_root, image_size=image_size, channels=channels)
    assert ds.image_shape == (channels, image_size, image_size) and ds.images.dtype == torch.uint8
    assert len(ds) == 64 and ds.has_labels


@pytest.mark.parametrize("kwargs, message", [({"image_size": 4}, "image_size=4"), ({"channels": 2}, "channels=2")])
def test_bad_sizes_and_channels_are_refused(idx_root, kwargs, message):
    with pytest.raises(ValueError, match=message):
        vu.load_dataset("fashion-mnist", root=idx_root, **kwargs)
