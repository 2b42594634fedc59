"""Ex-post density estimation: a Gaussian mixture in latent space as the sampler (Ghosh et al., 2020)."""
import pytest
import torch

import vae_utils as vu
from vae_utils.cli import main

from conftest import SMALL, blob_data


@pytest.fixture(scope="module")
def trained():
    """A small VAE trained on four blob shapes, and a feature classifier that tells them apart."""
    from vae_utils.features import train_classifier

    torch.manual_seed(0)
    model = vu.VAE(SMALL)
    vu.train(model, blob_data(256), config=vu.TrainConfig(epochs=3, batch_size=32, lr=1e-2, model=SMALL),
             progress=False)
    classifier, accuracy = train_classifier(blob_data(256), blob_data(64, seed=1), epochs=1)
    return model, classifier


def test_the_mixture_is_fitted_to_the_posterior_means_of_the_training_set(trained):
    model, _ = trained
    sampler = vu.GMMSampler(model, blob_data(128), components=4)
    means = model.posterior(torch.stack([blob_data(128)[i][0] for i in range(128)]))[0].detach().double().numpy()
    assert sampler.mixture.n_components == 4 and sampler.mixture.means_.shape == (4, SMALL.latent_dim)
    assert abs(sampler.mixture.means_.mean() - means.mean()) < 0.5  # the mixture sits where the codes are
    a = sampler.sample(6, generator=torch.Generator().manual_seed(1))
    b = sampler.sample(6, generator=torch.Generator().manual_seed(1))
    assert a.shape == (6, 1, 28, 28) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1


def test_the_report_scores_both_samplers(trained):
    model, classifier = trained
    report = vu.evaluation_report(model, blob_data(64, seed=1), blob_data(128), classifier, iwae_k=2, n_samples=64,
                                  ex_post=vu.GMMSampler(model, blob_data(128), components=4))
    assert {"frechet_distance", "gmm_frechet_distance", "gmm_precision", "gmm_recall"} <= set(report)
    assert "with the gmm sampler: Fréchet distance" in vu.format_report(report)


def test_a_model_without_a_gaussian_posterior_and_a_bad_component_count_are_refused():
    with pytest.raises(ValueError, match="no Gaussian posterior"):
        vu.GMMSampler(vu.VQVAE(), blob_data(16))
    with pytest.raises(ValueError, match="components=0"):
        vu.GMMSampler(vu.VAE(SMALL), blob_data(16), components=0)


def test_evaluate_refuses_the_gmm_sampler_for_a_vqvae_before_loading_data(tmp_path, monkeypatch, capsys):
    path = vu.save_checkpoint(vu.VQVAE(), tmp_path / "vq.pt")
    monkeypatch.setattr(vu.commands, "load_dataset", lambda *a, **k: pytest.fail("loaded data before checking"))
    with pytest.raises(SystemExit) as info:
        main(["evaluate", str(path), "--sampler", "gmm"])
    assert info.value.code == 2 and "no Gaussian posterior" in capsys.readouterr().err
