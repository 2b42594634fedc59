"""The VampPrior family (Tomczak & Welling, 2018): a mixture of posteriors at learned pseudo-inputs as the prior."""
import json

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Independent, MixtureSameFamily, Normal

import vae_utils as vu
from vae_utils.cli import main

from conftest import SMALL, blob_data

VampConfig = vu.model_class("vamp").config_class


def _model(k: int):
    torch.manual_seed(0)
    return vu.model_class("vamp")(VampConfig(**SMALL.to_dict(), pseudo_inputs=k))


def _images(n: int) -> torch.Tensor:
    data = blob_data(n)
    return torch.stack([data[i][0] for i in range(n)]).round()  # binary pixels: a normalised Bernoulli


def _mixture(model) -> MixtureSameFamily:
    mu, logvar = model.pseudo_posteriors()
    return MixtureSameFamily(Categorical(logits=torch.zeros(len(mu))),
                             Independent(Normal(mu, torch.exp(0.5 * logvar)), 1))


def test_the_prior_is_the_mixture_of_the_pseudo_inputs_posteriors():
    model, z = _model(7), torch.randn(5, SMALL.latent_dim)
    with torch.no_grad():
        torch.testing.assert_close(model.log_prior(z), _mixture(model).log_prob(z), rtol=1e-5, atol=1e-4)


def test_one_pseudo_input_is_a_gaussian_prior_at_its_posterior():
    model, z = _model(1), torch.randn(5, SMALL.latent_dim)
    with torch.no_grad():
        mu, logvar = model.encode(torch.sigmoid(model.pseudo_logits))
        expected = Normal(mu[0], torch.exp(0.5 * logvar[0])).log_prob(z).sum(-1)
        torch.testing.assert_close(model.log_prior(z), expected, rtol=1e-5, atol=1e-4)


def test_the_loss_is_recon_plus_a_monte_carlo_kl_against_the_mixture():
    model, x = _model(6), _images(8)
    with torch.no_grad():
        terms = model.loss(x, generator=torch.Generator().manual_seed(2))
        mu, logvar = model.encode(x)
        eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(2))
        q = Normal(mu, torch.exp(0.5 * logvar))
        z = q.loc + q.scale * eps
        recon = -Bernoulli(logits=model.decoder(z)).log_prob(x).flatten(1).sum(1).mean()
        kl = (q.log_prob(z).sum(-1) - _mixture(model).log_prob(z)).mean()
    torch.testing.assert_close(terms.recon, recon, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(terms.kl, kl, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(terms.total, recon + kl, rtol=1e-5, atol=1e-3)


def test_importance_weights_use_the_mixture_as_the_prior():
    model, x = _model(4), _images(3)
    with torch.no_grad():
        log_w = vu.log_importance_weights(model, x, 6, torch.Generator().manual_seed(5), subpixel=False)
        mu, logvar = model.encode(x)
        eps = torch.randn((3, 6, mu.shape[1]), generator=torch.Generator().manual_seed(5))
        q = Normal(mu.unsqueeze(1), torch.exp(0.5 * logvar).unsqueeze(1))
        z = q.loc + q.scale * eps
        logits = model.decoder(z.reshape(-1, mu.shape[1])).view(3, 6, *x.shape[1:])
        expected = (Bernoulli(logits=logits).log_prob(x.unsqueeze(1).expand_as(logits)).flatten(2).sum(-1)
                    + _mixture(model).log_prob(z) - q.log_prob(z).sum(-1))
    torch.testing.assert_close(log_w, expected, rtol=1e-5, atol=1e-3)


def test_samples_come_from_the_pseudo_inputs_posteriors_repeatably():
    model = _model(5)
    a = model.sample(4, generator=torch.Generator().manual_seed(1))
    b = model.sample(4, generator=torch.Generator().manual_seed(1))
    assert a.shape == (4, *model.image_shape) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1


@pytest.mark.parametrize("k", [0, -3, 2.5])
def test_the_number_of_pseudo_inputs_must_be_a_positive_integer(k):
    with pytest.raises(ValueError, match="pseudo_inputs="):
        VampConfig(pseudo_inputs=k)


def test_it_trains_from_the_command_line_and_is_scored(idx_root, tmp_path, capsys):
    main(["train", "--model", "vamp", "--pseudo-inputs", "10", "--data-dir", str(idx_root), "--epochs", "1",
          "--batch-size", "16", "--out", str(tmp_path / "run"), "--quiet"])
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["model_kind"] == "vamp" and {"test_neg_elbo", "test_recon", "test_kl"} <= set(metrics)
    model = vu.load_checkpoint(tmp_path / "run" / "last.pt")
    assert model.config.pseudo_inputs == 10 and model.pseudo_logits.shape == (10, 1, 28, 28)
    report = vu.evaluation_report(model, blob_data(16), iwae_k=4)
    assert report["iwae_nll"] < report["neg_elbo"] + 1.0 and report["model_kind"] == "vamp"


def test_training_resumes_bit_exactly_pseudo_inputs_included(tmp_path):
    config = vu.TrainConfig(epochs=2, batch_size=16, lr_schedule="constant", model=_model(4).config)
    straight, first, resumed = _model(4), _model(4), _model(4)
    vu.train(straight, blob_data(64), blob_data(32, seed=1), config, out_dir=tmp_path / "a", progress=False)
    vu.train(first, blob_data(64), blob_data(32, seed=1), vu.TrainConfig(**{**config.__dict__, "epochs": 1}),
             out_dir=tmp_path / "b", progress=False)
    vu.train(resumed, blob_data(64), blob_data(32, seed=1), config, out_dir=tmp_path / "b",
             resume=tmp_path / "b" / "last.pt", progress=False)
    assert all(torch.equal(p, q) for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()))
    assert not torch.equal(straight.pseudo_logits, _model(4).pseudo_logits)  # the pseudo-inputs were learned


def test_more_pseudo_inputs_than_training_images_are_refused_before_training(idx_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--model", "vamp", "--pseudo-inputs", "65", "--data-dir", str(idx_root), "--out",
              str(tmp_path / "run"), "--quiet"])
    assert info.value.code == 2 and "more than the 64 training images" in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_the_mixture_by_matrix_products_is_the_mixture_by_differences():
    g = torch.Generator().manual_seed(0)
    z, mu = 3 * torch.randn(4, 7, 5, generator=g), torch.randn(9, 5, generator=g)
    logvar = torch.linspace(-9, 3, 45).view(9, 5)  # variances from 1e-4 to 20
    direct = vu.models.vamp.diagonal_normal_log_prob(z.unsqueeze(-2), mu, logvar)  # (4, 7, 9)
    torch.testing.assert_close(vu.models.vamp.mixture_log_probs(z, mu, logvar), direct, rtol=1e-5, atol=1e-3)
