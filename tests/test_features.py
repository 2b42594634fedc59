"""Sample quality features: Fréchet distance, precision/recall, and where the feature classifier comes from."""
import pytest
import torch

import vae_utils as vu
from conftest import blob_data
from vae_utils import features


def test_frechet_distance_of_a_set_to_itself_is_zero_and_grows_with_noise():
    torch.manual_seed(0)
    x = torch.randn(500, 16) @ torch.randn(16, 16)
    assert vu.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    distances = [vu.frechet_distance(x, x + s * torch.randn_like(x)) for s in (0.1, 0.5, 1, 2)]
    assert distances == sorted(distances) and distances[0] > 0


def test_frechet_distance_matches_the_closed_form_for_isotropic_gaussians():
    torch.manual_seed(0)
    a, b = torch.randn(200_000, 3), 2 * torch.randn(200_000, 3) + 1  # N(0, I) vs N(1, 4 I)
    expected = 3 * 1.0 + 3 * (1 + 4 - 2 * 2)  # |mu|^2 + tr(S_a + S_b - 2 sqrt(S_a S_b))
    assert vu.frechet_distance(a, b) == pytest.approx(expected, rel=0.02)


def test_precision_and_recall_separate_quality_from_coverage():
    torch.manual_seed(0)
    real = torch.randn(600, 2)
    collapsed = 0.05 * torch.randn(600, 2)  # good samples, one mode only
    assert vu.precision_recall(real, real.clone() + 1e-4) == pytest.approx((1.0, 1.0), abs=0.02)
    precision, recall = vu.precision_recall(real, collapsed)
    assert precision > 0.95 and recall < 0.5


def test_the_fashion_mnist_classifier_ships_with_the_package_whatever_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = features.default_classifier_path("fashion-mnist")
    assert path == features.SHIPPED_DIR / "classifier-fashion-mnist.pt" and path.is_file()
    model = vu.load_checkpoint(path, kind="feature-classifier")
    assert isinstance(model, vu.FeatureClassifier) and model.n_classes == 10
    assert vu.read_checkpoint(path)["test_accuracy"] > 0.85


def test_a_classifier_trained_by_the_user_is_cached_and_announced(idx_root, capsys):
    train, test = vu.load_dataset("mnist", "train", root=idx_root), vu.load_dataset("mnist", "test", root=idx_root)
    first, _ = vu.load_or_train_classifier(None, train, test, epochs=1)
    assert "training a feature classifier for mnist" in capsys.readouterr().err
    path = features.default_classifier_path("mnist")
    assert path == features.cache_dir() / "classifiers" / "classifier-mnist.pt" and path.is_file()
    again, _ = vu.load_or_train_classifier(None, train, test, epochs=1)
    assert capsys.readouterr().err == ""  # loaded from the cache, silently
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))


def test_an_unusable_classifier_in_the_cache_is_retrained_and_the_reason_is_said(capsys):
    train, test = blob_data(64), blob_data(32)
    train.name = "folder:blobs-0/train"  # a data set whose classifier lives in the user's cache
    cached = features.default_classifier_path("folder:blobs-0", train.image_shape)
    cached.parent.mkdir(parents=True)
    cached.write_text("not a checkpoint")
    vu.load_or_train_classifier(None, train, test, epochs=1)
    assert "unusable" in capsys.readouterr().err
    assert isinstance(vu.load_checkpoint(cached), vu.FeatureClassifier)


def test_an_unusable_file_at_a_path_you_name_is_refused_and_kept(tmp_path):
    (tmp_path / "clf.pt").write_text("not a checkpoint")
    with pytest.raises(vu.CheckpointError, match="is not a usable feature classifier"):
        vu.load_or_train_classifier(tmp_path / "clf.pt", blob_data(64), blob_data(32), epochs=1)
    assert (tmp_path / "clf.pt").read_text() == "not a checkpoint"


def test_training_a_classifier_for_zero_epochs_is_refused():
    with pytest.raises(ValueError, match="at least one epoch"):
        features.train_classifier(blob_data(64), blob_data(32), epochs=0)


def test_image_quality_puts_real_images_at_the_floor_and_blurred_ones_above_it(idx_root):
    from torchvision.transforms.functional import gaussian_blur

    test = vu.load_dataset("mnist", "test", root=idx_root)
    classifier = vu.load_checkpoint(features.default_classifier_path("fashion-mnist"), kind="feature-classifier")
    images = torch.stack([test[i][0] for i in range(len(test))])
    same = vu.image_quality(classifier, test, images)
    blurred = vu.image_quality(classifier, test, gaussian_blur(images, 5, 2.0))
    assert same["frechet_distance"] == pytest.approx(0.0, abs=1e-3) and same["precision"] == same["recall"] == 1.0
    assert blurred["frechet_distance"] > 1.0
