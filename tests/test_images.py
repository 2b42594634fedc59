"""A folder of your own images: modes and sizes, labels from sub-folders, a stable split, a cache, bad files."""

import pytest
import torch
from PIL import Image

import vae_utils as vu
from conftest import write_image_folder
from vae_utils import images


def _load(root, split="train", **kwargs):
    return vu.load_dataset("folder", split, root=root, test_fraction=0.3, **kwargs)  # a test split even for 20 files


def test_class_sub_folders_give_labels_and_every_mode_becomes_the_asked_shape(tmp_path):
    write_image_folder(tmp_path / "pics")
    train, test = _load(tmp_path / "pics", image_size=24), _load(tmp_path / "pics", "test", image_size=24)
    assert len(train) + len(test) == 30 and len(test) >= 1
    assert train.image_shape == (3, 24, 24) and train.classes == ["cats", "dogs", "owls"] and train.has_labels
    grey = _load(tmp_path / "pics", image_size=16, channels=1)
    assert grey.image_shape == (1, 16, 16)


def test_a_flat_folder_has_no_labels(tmp_path):
    write_image_folder(tmp_path / "pics", flat=True)
    ds = _load(tmp_path / "pics", image_size=16)
    assert not ds.has_labels and ds.classes is None


def test_each_image_is_resized_on_its_short_side_and_centre_cropped(tmp_path):
    (tmp_path / "pics").mkdir()
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 6, 20))  # a red strip on the left: cropped away
    for i in range(20):
        img.save(tmp_path / "pics" / f"{i}.png")
    ds = _load(tmp_path / "pics", image_size=10)
    assert ds.image_shape == (3, 10, 10) and ds.images[:, 0].max() < 30 and ds.images[:, 2].min() > 220


def test_sixteen_bit_and_transparent_images_keep_their_range(tmp_path):
    (tmp_path / "pics").mkdir()
    import numpy as np

    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(tmp_path / "pics" / "white16.png")
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "pics" / "clear.png")  # transparent: white behind
    decoded = images.decode(tmp_path / "pics", images.list_images(tmp_path / "pics"), images.Preprocess(8, 1))
    assert decoded.images.min().item() >= 254


def test_the_split_is_stable_when_images_are_added(tmp_path):
    write_image_folder(tmp_path / "pics")
    before = set(_test_files(tmp_path / "pics"))
    Image.new("RGB", (30, 30)).save(tmp_path / "pics" / "cats" / "new-one.png")
    after = set(_test_files(tmp_path / "pics"))
    assert before <= after  # no old image moved from test to train (nor back)


def _test_files(root):
    files = [p.relative_to(root).as_posix() for p in images.list_images(root)]
    return [f for f, t in zip(files, images.test_split_mask(files, 0.1).tolist()) if t]


def test_decoding_happens_once_and_a_changed_folder_is_decoded_again(tmp_path, monkeypatch):
    write_image_folder(tmp_path / "pics")
    calls = []
    decode = images.decode
    monkeypatch.setattr(images, "decode", lambda *a, **k: (calls.append(1), decode(*a, **k))[1])
    first = _load(tmp_path / "pics", image_size=16)
    again = _load(tmp_path / "pics", image_size=16)
    assert len(calls) == 1 and torch.equal(first.images, again.images)
    _load(tmp_path / "pics", image_size=20)  # other preprocessing: another cache
    Image.new("RGB", (30, 30)).save(tmp_path / "pics" / "dogs" / "added.png")
    _load(tmp_path / "pics", image_size=16)
    assert len(calls) == 3


def test_a_corrupt_cache_is_decoded_again_not_trusted(tmp_path, capsys):
    write_image_folder(tmp_path / "pics")
    first = _load(tmp_path / "pics", image_size=16, cache_dir=tmp_path / "cache")
    (cache,) = (tmp_path / "cache").glob("*.pt")
    cache.write_bytes(cache.read_bytes()[:1000])
    again = _load(tmp_path / "pics", image_size=16, cache_dir=tmp_path / "cache")
    assert torch.equal(first.images, again.images) and "unreadable" in capsys.readouterr().err


def test_nothing_is_written_into_the_users_folder(tmp_path):
    write_image_folder(tmp_path / "pics")
    before = sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / "pics").rglob("*"))
    _load(tmp_path / "pics", image_size=16)
    assert sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / "pics").rglob("*")) == before


def test_a_truncated_image_is_named_or_skipped_and_counted(tmp_path, capsys):
    write_image_folder(tmp_path / "pics")
    bad = tmp_path / "pics" / "cats" / "img000.png"
    bad.write_bytes(bad.read_bytes()[:60])
    with pytest.raises(ValueError, match="img000.png"):
        _load(tmp_path / "pics", image_size=16)
    ds_train = _load(tmp_path / "pics", image_size=16, skip_bad_images=True)
    ds_test = _load(tmp_path / "pics", "test", image_size=16, skip_bad_images=True)
    assert len(ds_train) + len(ds_test) == 29


@pytest.mark.parametrize("setup, message", [
    (lambda p: p.mkdir(), "holds no images"),
    (lambda p: (p.mkdir(), (p / "a.txt").write_text("x")), "holds no images"),
    (lambda p: None, "is not a folder"),
])
def test_an_empty_or_missing_folder_is_a_clear_error(tmp_path, setup, message):
    setup(tmp_path / "pics")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        _load(tmp_path / "pics")


def test_the_folder_set_needs_a_root():
    with pytest.raises(ValueError, match="needs root="):
        vu.load_dataset("folder")
