"""The loss: closed-form KL, per-image summed reconstruction, beta weighting, and input checks."""
import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence as torch_kl

import vae_utils as vu


@pytest.mark.parametrize("latent_dim", [1, 2, 16])
def test_kl_matches_torch_distributions(latent_dim):
    mu, logvar = torch.randn(5, latent_dim), torch.randn(5, latent_dim)
    posterior = Normal(mu, torch.exp(0.5 * logvar))
    prior = Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch_kl(posterior, prior).sum(dim=1)
    torch.testing.assert_close(vu.kl_divergence(mu, logvar), expected)


def test_kl_is_zero_when_the_posterior_is_the_prior():
    assert torch.equal(vu.kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3))


def test_bernoulli_reconstruction_is_bce_summed_over_pixels_per_image():
    logits = torch.randn(2, 1, 3, 3)
    x = torch.rand(2, 1, 3, 3)
    p = torch.sigmoid(logits)
    by_hand = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(dim=(1, 2, 3))
    torch.testing.assert_close(vu.reconstruction_loss(logits, x), by_hand)


def test_bernoulli_reconstruction_equals_the_bernoulli_log_likelihood_on_binary_images():
    logits, x = torch.randn(4, 1, 5, 5), torch.randint(0, 2, (4, 1, 5, 5)).float()
    expected = -Bernoulli(logits=logits).log_prob(x).sum(dim=(1, 2, 3))
    torch.testing.assert_close(vu.reconstruction_loss(logits, x), expected)


def test_bernoulli_reconstruction_is_stable_for_extreme_logits():
    logits = torch.tensor([-200.0, 200.0]).view(1, 1, 1, 2)
    x = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    assert vu.reconstruction_loss(logits, x).item() == pytest.approx(0.0, abs=1e-6)
    assert math.isfinite(vu.reconstruction_loss(logits, 1 - x).item())


def test_gaussian_reconstruction_is_the_gaussian_negative_log_likelihood():
    logits, x = torch.randn(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    std = 0.2
    expected = -Normal(torch.sigmoid(logits), std).log_prob(x).sum(dim=(1, 2, 3))
    torch.testing.assert_close(vu.reconstruction_loss(logits, x, "gaussian", std), expected)


def test_vae_loss_reports_batch_means_of_per_image_nats():
    model = vu.VAE(latent_dim=4)
    x = torch.rand(6, 1, 28, 28)
    out = model(x)
    terms = vu.vae_loss(out, x)
    torch.testing.assert_close(terms.recon, vu.reconstruction_loss(out.x_logits, x).mean())
    torch.testing.assert_close(terms.kl, vu.kl_divergence(out.mu, out.logvar).mean())
    torch.testing.assert_close(terms.total, terms.recon + terms.kl)
    # per image: doubling the batch by repetition leaves every term unchanged
    doubled = out._replace(x_logits=out.x_logits.repeat(2, 1, 1, 1), mu=out.mu.repeat(2, 1), logvar=out.logvar.repeat(2, 1))
    torch.testing.assert_close(vu.vae_loss(doubled, x.repeat(2, 1, 1, 1)).total, terms.total)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 4.0])
def test_beta_weights_only_the_kl(beta):
    model = vu.VAE(latent_dim=4)
    x = torch.rand(4, 1, 28, 28)
    out = model(x)
    terms = vu.vae_loss(out, x, beta=beta)
    torch.testing.assert_close(terms.total, terms.recon + beta * terms.kl)
    torch.testing.assert_close(terms.recon, vu.vae_loss(out, x, beta=1.0).recon)


def test_the_models_loss_scores_with_its_own_likelihood():
    model = vu.VAE(latent_dim=4, likelihood="gaussian", gaussian_std=0.3)
    x = torch.rand(2, 1, 28, 28)
    terms = model.loss(x, generator=torch.Generator().manual_seed(0))
    out = model(x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(terms.recon, vu.reconstruction_loss(out.x_logits, x, "gaussian", 0.3).mean())
    torch.testing.assert_close(terms.total, terms.recon + terms.kl)


def test_the_models_training_loss_weights_the_kl_by_beta_and_the_warm_up():
    model, x = vu.VAE(latent_dim=4), torch.rand(2, 1, 28, 28)
    config = vu.TrainConfig(beta=4.0, kl_warmup_epochs=2, model=model.config)
    terms = model.loss(x, config, epochs_done=0.5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(terms.total, terms.recon + 4.0 * 0.25 * terms.kl)


def test_kl_warmup_rises_linearly_from_zero():
    from vae_utils.losses import kl_warmup_factor

    assert [kl_warmup_factor(e, 2) for e in (0, 1, 2, 3)] == [0.0, 0.5, 1.0, 1.0]
    assert kl_warmup_factor(0.5, 2) == 0.25 and kl_warmup_factor(0, 0) == 1.0


@pytest.mark.parametrize("beta", [float("nan"), float("inf"), -1.0])
def test_a_beta_that_is_not_a_finite_non_negative_number_is_refused(beta):
    model, x = vu.VAE(latent_dim=4), torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match="beta="):
        vu.vae_loss(model(x), x, beta=beta)


def test_vae_loss_of_something_else_than_a_model_output_says_what_it_expects():
    with pytest.raises(ValueError, match="VAEOutput"):
        vu.vae_loss((torch.zeros(1), torch.zeros(1)), torch.zeros(1))


@pytest.mark.parametrize("bad", [-0.1, 1.5, 255.0, float("nan")])
def test_images_outside_unit_range_are_refused_for_bernoulli(bad):
    model = vu.VAE(latent_dim=4)
    x = torch.rand(2, 1, 28, 28)
    x[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vu.vae_loss(model(x), x)


def test_mismatched_logits_and_images_are_a_value_error():
    with pytest.raises(ValueError, match="shape"):
        vu.reconstruction_loss(torch.zeros(2, 1, 28, 28), torch.zeros(2, 1, 32, 32))


def _cb_log_prob_by_hand(x, lam):
    """Loaiza-Ganem & Cunningham (2019), Eq. 7: x log l + (1-x) log(1-l) + log C(l), C(l) = 2 atanh(1-2l)/(1-2l)."""
    c = 2 * torch.atanh(1 - 2 * lam) / (1 - 2 * lam)
    return x * torch.log(lam) + (1 - x) * torch.log(1 - lam) + torch.log(c)


def test_continuous_bernoulli_matches_the_papers_formula_and_integrates_to_one():
    lam = torch.tensor([0.05, 0.3, 0.8, 0.97]).view(4, 1, 1, 1)
    x = torch.rand(4, 1, 3, 3)
    nll = vu.reconstruction_loss(torch.logit(lam).expand(4, 1, 3, 3), x, "continuous-bernoulli")
    torch.testing.assert_close(nll, -_cb_log_prob_by_hand(x, lam).flatten(1).sum(1), rtol=1e-4, atol=1e-4)
    grid = torch.linspace(0, 1, 20001).view(1, 1, 1, -1)
    for logit in (-3.0, 0.0, 0.4, 5.0):
        logits = torch.full_like(grid, logit)
        density = torch.exp(-vu.reconstruction_loss(logits.view(-1, 1, 1, 1), grid.view(-1, 1, 1, 1),
                                                     "continuous-bernoulli"))
        assert torch.trapezoid(density, dx=1 / 20000).item() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("mean, log_scale", [(0.0, -2.0), (0.3, -4.0), (-0.9, -1.0), (0.99, -6.0), (0.0, -9.0)])
def test_discretized_logistic_gives_probabilities_of_the_256_levels(mean, log_scale):
    from vae_utils.losses import discretized_logistic_log_prob

    x = torch.arange(256, dtype=torch.float32) / 255
    m, s = torch.full_like(x, mean), torch.full_like(x, log_scale)
    p = discretized_logistic_log_prob(x, m, s).double().exp()
    assert p.sum().item() == pytest.approx(1.0, abs=5e-5)  # a distribution over the 256 values (fp32 sums)
    scale = math.exp(max(log_scale, -7.0))
    cdf = lambda y: torch.sigmoid(torch.tensor((y - mean) / scale, dtype=torch.float64))
    y = 2 * x[100].item() - 1
    assert p[100].item() == pytest.approx((cdf(y + 1 / 255) - cdf(y - 1 / 255)).item(), abs=1e-6)  # by hand
    assert p[0].item() == pytest.approx(cdf(-1 + 1 / 255).item(), abs=1e-6)  # the lowest bin takes the tail
    assert p[255].item() == pytest.approx(1 - cdf(1 - 1 / 255).item(), abs=1e-6)


def test_the_logistic_decoder_has_a_mean_and_a_scale_per_sub_pixel_and_its_mean_image_is_in_range():
    model = vu.VAE(in_channels=3, image_size=32, channels=(8, 16), hidden_dim=0, likelihood="discretized-logistic")
    x = torch.randint(0, 256, (2, 3, 32, 32)).float() / 255
    assert model(x).x_logits.shape == (2, 6, 32, 32)
    assert torch.isfinite(model.loss(x).total)
    images = model.sample(3)
    assert images.shape == (3, 3, 32, 32) and images.min() >= 0 and images.max() <= 1


def test_the_continuous_bernoulli_mean_image_is_the_distributions_mean():
    model = vu.VAE(latent_dim=4, likelihood="continuous-bernoulli")
    z = torch.randn(2, 4)
    expected = torch.distributions.ContinuousBernoulli(logits=model.decode_logits(z)).mean
    torch.testing.assert_close(model.decode(z), expected)
