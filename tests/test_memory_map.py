"""Data larger than memory: a decoded folder or CelebA split is memory-mapped from its cache when it is large (or when
asked), gives the same pixels and the same training as the in-memory set, and is never copied whole."""
import hashlib

import pytest
import torch

import vae_utils as vu
import vae_utils.images as images

from conftest import SMALL, write_image_folder


@pytest.fixture
def folder(tmp_path):
    write_image_folder(tmp_path / "pics", n=40)
    return tmp_path / "pics"


def _load(folder, split="train", **options):
    return vu.load_dataset("folder", split, root=folder, image_size=28, channels=1, test_fraction=0.3, **options)


def test_a_mapped_split_holds_the_same_pixels_labels_and_classes_as_the_in_memory_one(folder):
    for split in ("train", "test"):
        plain, mapped = _load(folder, split, memory_map=False), _load(folder, split, memory_map=True)
        assert mapped.mapped and not plain.mapped
        assert torch.equal(plain.images, mapped.images) and torch.equal(plain.labels, mapped.labels)
        assert plain.classes == mapped.classes == ["cats", "dogs", "owls"]
    assert mapped.subset(3).mapped and not mapped.take(torch.tensor([0, 2])).mapped  # slices stay in the map


def test_each_split_is_decoded_into_a_cache_of_its_own(folder, tmp_path):
    train, test = _load(folder, "train"), _load(folder, "test")
    caches = sorted(p.name for p in (tmp_path / "cache" / "decoded").glob("folder-*.pt"))
    assert len(caches) == 2 and any("-train-" in c for c in caches) and any("-test-" in c for c in caches)
    assert len(train) + len(test) == 40


def test_a_set_larger_than_the_share_of_memory_is_mapped_without_being_asked(folder, monkeypatch):
    monkeypatch.setattr(images, "available_memory", lambda: 1000)  # bytes: every set is "too large"
    assert _load(folder).mapped
    monkeypatch.setattr(images, "available_memory", lambda: 1 << 40)
    assert not _load(folder).mapped


def test_training_on_the_map_is_training_on_the_same_images_in_memory(folder):
    config = vu.TrainConfig(epochs=1, batch_size=8, model=SMALL)
    results = []
    for memory_map in (False, True):
        model = vu.VAE(SMALL)
        torch.manual_seed(0)
        model.load_state_dict(vu.VAE(SMALL).state_dict())
        vu.train(model, _load(folder, memory_map=memory_map), None, config, progress=False)
        results.append(model.state_dict())
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_the_checksums_read_a_mapped_set_in_chunks_and_agree_with_one_pass(folder):
    mapped = _load(folder, memory_map=True)
    whole = hashlib.blake2b(mapped.images.contiguous().numpy()).hexdigest()
    assert images.pixels_digest(mapped.images, chunk_bytes=1000) == whole
    assert vu.data.dataset_checksum(mapped) == vu.data.dataset_checksum(_load(folder, memory_map=False))
