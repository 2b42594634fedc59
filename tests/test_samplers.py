"""Ex-post density estimation in latent space as the sampler: a Gaussian mixture (Ghosh et al., 2020), a masked
autoregressive flow (Papamakarios et al., 2017) and a second-stage VAE (Dai & Wipf, 2019)."""
import json
import math

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


COVARIANCE = torch.tensor([[1.0, 0.8], [0.8, 1.0]])


def _gaussian_codes(n: int, seed: int) -> torch.Tensor:
    """n draws of a correlated Gaussian in 2-d: its entropy, 1 + log 2 pi + 1/2 log det, is known."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) @ torch.linalg.cholesky(COVARIANCE).T + torch.tensor([2.0, -1.0])


def test_the_maf_is_a_normalised_density_whose_samples_invert_its_log_density():
    from vae_utils.samplers import MAF

    torch.manual_seed(0)
    flow = MAF(2, steps=3, hidden=16)
    for p in flow.parameters():
        torch.nn.init.normal_(p, std=0.3)
    grid = torch.linspace(-12, 12, 601)
    points = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        mass = flow.log_prob(points).exp().sum() * (grid[1] - grid[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=0.01)
    x = flow.sample(500, torch.Generator().manual_seed(0))
    with torch.no_grad():  # the flow's density of its own samples is the base density less the log-determinant
        assert torch.isfinite(flow.log_prob(x)).all()
        u, z = torch.randn(500, 2, generator=torch.Generator().manual_seed(0)), x
        for step in flow.steps:
            m, a = step(z)
            z = ((z - m) * torch.exp(-a.clamp(-8, 8))).flip(-1)
    torch.testing.assert_close(z, u, rtol=1e-4, atol=1e-4)  # sampling inverts the density's direction


def test_the_maf_fitted_to_a_gaussian_reaches_its_entropy():
    from vae_utils.samplers import MAF, _fit

    torch.manual_seed(0)
    flow = MAF(2, steps=3, hidden=32)
    codes, held_out = _gaussian_codes(4_000, 0), _gaussian_codes(4_000, 1)
    _fit(flow, lambda z: -flow.log_prob(z).mean(), codes, epochs=40, seed=0)
    entropy = 1 + math.log(2 * math.pi) + 0.5 * math.log(float(torch.linalg.det(COVARIANCE)))  # 2.33 nats
    with torch.no_grad():
        assert (-flow.log_prob(held_out).mean()).item() == pytest.approx(entropy, abs=0.05)


def test_the_second_stage_vae_learns_a_shifted_correlated_gaussian():
    from vae_utils.samplers import TwoStageVAE, _fit

    torch.manual_seed(0)
    second = TwoStageVAE(2, hidden=64, depth=2)
    curve = _fit(second, lambda z: second.neg_elbo(z).mean(), _gaussian_codes(4_000, 0), epochs=150, seed=0)
    entropy = 1 + math.log(2 * math.pi) + 0.5 * math.log(float(torch.linalg.det(COVARIANCE)))
    assert entropy < curve[-1] < entropy + 0.1  # the -ELBO bounds the entropy from above, and gets close
    draws = second.sample(4_000, torch.Generator().manual_seed(0))  # its model: decoder mean plus gamma's noise
    torch.testing.assert_close(draws.mean(0), torch.tensor([2.0, -1.0]), atol=0.1, rtol=0)
    torch.testing.assert_close(torch.cov(draws.T), COVARIANCE, atol=0.1, rtol=0)


@pytest.mark.parametrize("name", ["maf", "two-stage"])
def test_each_fitted_sampler_decodes_repeatable_images_and_the_report_scores_it(trained, name):
    from vae_utils.samplers import SAMPLERS

    model, classifier = trained
    sampler = SAMPLERS[name](model, blob_data(128), epochs=2)
    a, b = (sampler.sample(6, generator=torch.Generator().manual_seed(1)) for _ in range(2))
    assert a.shape == (6, 1, 28, 28) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    report = vu.evaluation_report(model, blob_data(64, seed=1), blob_data(128), classifier, iwae_k=2, n_samples=64,
                                  ex_post=sampler)
    assert f"{sampler.name}_frechet_distance" in report
    with pytest.raises(ValueError, match="no Gaussian posterior"):
        SAMPLERS[name](vu.VQVAE(), blob_data(16))


def test_evaluate_scores_the_flow_sampler_from_the_command_line(idx_root, tmp_path, capsys):
    main(["train", "--data-dir", str(idx_root), "--epochs", "1", "--batch-size", "16", "--out", str(tmp_path / "r"),
          "--quiet", "--latent-dim", "4", "--model-channels", "8", "16", "--hidden-dim", "32"])
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "r" / "last.pt"), "--data-dir", str(idx_root), "--sampler", "maf",
                 "--samples", "40", "--iwae-k", "2"]) == 0
    assert "maf_frechet_distance" in json.loads(capsys.readouterr().out)
