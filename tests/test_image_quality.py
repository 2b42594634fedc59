"""The figures image papers print: FID and KID on the standard Inception's features (torch-fidelity), PSNR and SSIM
of reconstructions (torchmetrics). The Inception itself is not downloaded here: a small stand-in network with the
same interface carries the plumbing, and torch-fidelity's own functions are the reference for the arithmetic."""
import json
import urllib.error

import numpy as np
import pytest
import torch
from torch import nn
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from PIL import Image
from torchvision.utils import save_image

import vae_utils as vu
from vae_utils.inception import INCEPTION_FILE
from conftest import blob_data, cli_exit_code


class StandIn(nn.Module):
    """Reads 8-bit RGB images as the Inception does and returns a tuple of (N, 6) features: each channel's mean and
    standard deviation; it remembers the last batch it was given."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, pixels):
        assert pixels.dtype == torch.uint8 and pixels.shape[1] == 3
        self.seen = pixels
        x = pixels.float() / 255
        return (torch.cat([x.mean((2, 3)), x.std((2, 3))], 1) * self.scale,)


def correlated_features(n, d=16, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g)
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed + 1)) @ mix + shift


def test_our_frechet_distance_equals_torch_fidelitys_on_the_same_features():
    a, b = correlated_features(400), correlated_features(300, shift=0.3, seed=5)
    reference = fid_statistics_to_metric(fid_features_to_statistics(a.double()), fid_features_to_statistics(b.double()),
                                         verbose=False)["frechet_inception_distance"]
    assert vu.frechet_distance(a, b) == pytest.approx(reference, rel=1e-9)


def test_the_network_sees_the_eight_bit_rgb_image_a_saved_png_holds(tmp_path):
    images = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    network = StandIn()
    features = vu.InceptionFeatures(network=network, batch_size=2)(images)
    save_image(images[-1:], tmp_path / "last.png")
    png = torch.from_numpy(np.array(Image.open(tmp_path / "last.png"))).permute(2, 0, 1)  # what a reader gets
    assert torch.equal(network.seen[-1], png)  # grey repeated to RGB, quantised as save_image does
    assert features.shape == (5, 6) and features.dtype == torch.float64


def test_inception_features_of_a_data_set_and_of_its_tensor_agree():
    data = blob_data(12)
    features = vu.InceptionFeatures(network=StandIn(), batch_size=5)
    assert torch.equal(features(data), features(data.images.float() / 255))


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel():
    real = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    fake = torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(1)) ** 2
    features = vu.InceptionFeatures(network=StandIn())
    scores = vu.inception_scores(features, real, fake, kid_subsets=1, kid_subset_size=30)
    # one subset of 30 of each, drawn as torch-fidelity draws them (real first, one seeded generator); by hand:
    rng = np.random.RandomState(0)
    x = features(real).numpy()[rng.choice(40, 30, replace=False)]
    y = features(fake).numpy()[rng.choice(30, 30, replace=False)]
    kernel = lambda a, b: (a @ b.T / a.shape[1] + 1) ** 3  # noqa: E731
    off = lambda k: (k.sum() - np.trace(k)) / (len(k) * (len(k) - 1))  # noqa: E731
    by_hand = off(kernel(x, x)) + off(kernel(y, y)) - 2 * kernel(x, y).mean()
    assert scores["kid"] == pytest.approx(by_hand, rel=1e-6, abs=1e-12)
    assert scores["fid"] == pytest.approx(vu.frechet_distance(features(fake), features(real)))
    assert scores["kid_sd"] == 0.0 and scores["kid_subset_size"] == 30


def test_the_same_images_score_zero_and_a_brighter_copy_does_not():
    images = torch.rand(60, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.8
    features = vu.InceptionFeatures(network=StandIn())
    same = vu.inception_scores(features, images, images.clone())
    brighter = vu.inception_scores(features, images, images + 0.2)
    assert same["fid"] == pytest.approx(0, abs=1e-6) and brighter["fid"] > 0.1  # the 3 means alone: 3 x 0.2^2
    assert brighter["kid"] > 100 * abs(same["kid"])  # the unbiased estimate of a zero MMD is near, not at, 0


def test_the_report_adds_fid_and_kid_of_the_samples_when_given_the_network():
    data = blob_data(64)
    model = vu.VAE(vu.VAEConfig(latent_dim=3, channels=(4, 8), hidden_dim=16))
    report = vu.evaluation_report(model, data, n_samples=50, inception=vu.InceptionFeatures(network=StandIn()))
    assert {"inception_fid", "inception_kid", "inception_kid_sd"} <= set(report) and report["inception_samples"] == 50
    assert "Inception FID / KID" in vu.format_report(report)
    assert "inception_fid" not in vu.evaluation_report(model, data)  # only when asked: the network is large


def test_weights_given_by_path_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"--inception-weights {tmp_path / 'nope.pth'}: no such file"):
        vu.inception_weights(tmp_path / "nope.pth")
    (tmp_path / "w.pth").write_bytes(b"weights")
    assert vu.inception_weights(tmp_path / "w.pth") == tmp_path / "w.pth"


def test_weights_come_from_torchs_hub_cache_and_offline_their_absence_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    def offline(url, dst, progress=True):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(FileNotFoundError) as info:
        vu.inception_weights()
    message = str(info.value)
    assert INCEPTION_FILE in message and str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "--inception-weights FILE" in message and "name resolution" in message and "\n" not in message
    cached = tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_FILE
    cached.write_bytes(b"weights")
    assert vu.inception_weights() == cached  # no download once it is there


def test_evaluate_fid_offline_stops_in_one_line_before_any_work(idx_root, tmp_path, monkeypatch, capsys):
    from vae_utils.cli import main

    main(["train", "--data-dir", str(idx_root), "--epochs", "1", "--batch-size", "16", "--latent-dim", "3",
          "--out", str(tmp_path / "run"), "--quiet"])
    capsys.readouterr()
    monkeypatch.setattr(vu.commands, "load_dataset", lambda *a, **k: pytest.fail("loaded data before the weights"))
    missing = tmp_path / "inception.pth"
    assert cli_exit_code(["evaluate", str(tmp_path / "run" / "last.pt"), "--fid", "--inception-weights",
                          str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"--inception-weights {missing}: no such file" in err and err.count("\n") == 1
    assert cli_exit_code(["evaluate", str(tmp_path / "run" / "last.pt"), "--inception-weights", str(missing)]) == 2
    assert "add --fid" in capsys.readouterr().err


class Halves(nn.Module):
    """A 'model' whose reconstruction is the image times a known factor (or a constant grey)."""

    def __init__(self, factor=0.5, constant=None):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))
        self.factor, self.constant = factor, constant

    def reconstruct(self, x):
        return torch.full_like(x, self.constant) if self.constant is not None else x * self.factor


def test_psnr_is_ten_log10_of_one_over_each_images_mse_averaged():
    data = blob_data(20)
    x = data.images.float() / 255
    mse = ((x * 0.5 - x) ** 2).mean((1, 2, 3))
    by_hand = (10 * torch.log10(1 / mse)).double().mean().item()
    assert vu.reconstruction_fidelity(Halves(0.5), data, batch_size=7)["psnr"] == pytest.approx(by_hand, rel=1e-5)


def test_ssim_of_a_perfect_reconstruction_is_one_and_of_constants_is_the_luminance_term():
    data = blob_data(8)
    assert vu.reconstruction_fidelity(Halves(1.0), data)["ssim"] == pytest.approx(1.0, abs=1e-6)
    grey = vu.ImageDataset(torch.full((6, 1, 28, 28), 153, dtype=torch.uint8))  # 0.6 everywhere
    a, b, c1 = 0.6, 0.2, 0.01 ** 2  # no variance, no covariance: SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    assert vu.reconstruction_fidelity(Halves(constant=b), grey)["ssim"] == pytest.approx(
        (2 * a * b + c1) / (a * a + b * b + c1), rel=1e-4)


def test_the_report_gives_psnr_and_ssim_for_every_model_that_reconstructs():
    data = blob_data(32)
    report = vu.evaluation_report(vu.VAE(vu.VAEConfig(latent_dim=3, channels=(4, 8), hidden_dim=16)), data)
    assert 0 < report["ssim"] <= 1 and report["psnr"] > 0
    assert "PSNR" in vu.format_report(report)


def test_evaluate_fid_works_end_to_end_with_a_given_weights_file(idx_root, tmp_path, monkeypatch, capsys):
    """torch-fidelity's own Inception, built from a file of weights (randomly initialised here: the real ones cannot
    be downloaded in the test), scores a checkpoint's samples through the command line."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from vae_utils.cli import main

    with monkeypatch.context() as patch:  # build the network once without weights, to write a file of its shape
        patch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        patch.setattr("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", lambda *a, **k: {})
        torch.save(FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict(), tmp_path / "w.pth")
    main(["train", "--data-dir", str(idx_root), "--epochs", "1", "--batch-size", "16", "--latent-dim", "3",
          "--out", str(tmp_path / "run"), "--quiet"])
    capsys.readouterr()
    main(["evaluate", str(tmp_path / "run" / "last.pt"), "--data-dir", str(idx_root), "--iwae-k", "2", "--samples",
          "20", "--classifier", str(tmp_path / "clf.pt"), "--fid", "--inception-weights", str(tmp_path / "w.pth")])
    report = json.loads(capsys.readouterr().out)
    assert report["inception_fid"] >= 0 and report["inception_samples"] == 20 and "inception_kid" in report
