"""Estimators checked on cases whose answer is known: IWAE, KL/active units, Fréchet distance, slerp."""
import math

import pytest
import torch

import vae_utils as vu
from test_training import SMALL, _data


def _prior_model(seed=0):
    """Encoder outputs the prior (mu=0, logvar=0) and the decoder ignores z: log p(x) is known exactly."""
    torch.manual_seed(seed)
    model = vu.VAE(SMALL)
    with torch.no_grad():
        last = model.encoder.head[-1]
        last.weight.zero_()
        last.bias.zero_()
        model.decoder.head[0].weight.zero_()  # z no longer reaches the decoder
    return model.eval()


def test_iwae_equals_the_exact_log_likelihood_when_the_decoder_ignores_z():
    model, ds = _prior_model(), _data(8)
    x = ds.images.float() / 255
    exact = vu.reconstruction_loss(model.decode_logits(torch.zeros(8, SMALL.latent_dim)), x).mean().item()
    for k in (1, 7, 50):
        assert vu.iwae_nll(model, ds, k=k)["iwae_nll"] == pytest.approx(exact, rel=1e-5)


def test_iwae_with_one_sample_is_the_elbo_in_expectation():
    model, ds = vu.VAE(SMALL).eval(), _data(16)
    iwae1 = sum(vu.iwae_nll(model, ds, k=1, seed=s)["iwae_nll"] for s in range(40)) / 40
    elbo = sum(vu.evaluate(model, ds, seed=s)["neg_elbo"] for s in range(40)) / 40
    assert iwae1 == pytest.approx(elbo, rel=2e-3)


def test_more_importance_samples_never_raise_the_estimate_above_the_elbo():
    torch.manual_seed(0)
    model, ds = vu.VAE(SMALL).eval(), _data(16)
    elbo = vu.iwae_nll(model, ds, k=1)["iwae_nll"]
    nll = [vu.iwae_nll(model, ds, k=k)["iwae_nll"] for k in (10, 100, 1000)]
    assert nll[0] <= elbo and nll[1] <= nll[0] + 0.05 and nll[2] <= nll[1] + 0.05


def test_iwae_is_the_same_however_the_samples_are_chunked():
    model, x = vu.VAE(SMALL).eval(), _data(4).images.float() / 255
    a = vu.log_importance_weights(model, x, 64, torch.Generator().manual_seed(1), chunk_images=4 * 64)
    b = vu.log_importance_weights(model, x, 64, torch.Generator().manual_seed(1), chunk_images=4 * 64)
    torch.testing.assert_close(a, b)
    assert a.shape == (4, 64)


def test_bits_per_dim_is_nats_over_pixels_and_ln2():
    result = vu.iwae_nll(vu.VAE(SMALL), _data(4), k=3)
    assert result["bits_per_dim"] == pytest.approx(result["iwae_nll"] / (784 * math.log(2)))


def test_posterior_equal_to_prior_has_zero_kl_and_no_active_unit():
    stats = vu.latent_stats(_prior_model(), _data(16))
    assert torch.equal(stats.kl_per_dim, torch.zeros(SMALL.latent_dim, dtype=torch.float64))
    assert stats.active.sum() == 0 and vu.active_units(_prior_model(), _data(16)) == 0


def test_active_units_count_dimensions_whose_mean_varies_over_the_data():
    model = _prior_model()
    with torch.no_grad():  # let latent 0's mean follow the image brightness strongly
        model.encoder.head[-1].weight[0] = 100.0
    stats = vu.latent_stats(model, _data(16))
    assert stats.active.tolist() == [True] + [False] * (SMALL.latent_dim - 1)
    assert stats.kl_per_dim[0] > 0 and torch.all(stats.kl_per_dim[1:] == 0)


def test_frechet_distance_of_a_set_to_itself_is_zero_and_grows_with_noise():
    torch.manual_seed(0)
    features = torch.randn(500, 16) @ torch.randn(16, 16)
    assert vu.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    distances = [vu.frechet_distance(features, features + s * torch.randn_like(features)) for s in (0.1, 0.5, 1, 2)]
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


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_slerp_keeps_the_norm_between_equal_norm_vectors(scale):
    a, b = torch.randn(16), torch.randn(16)
    a, b = scale * a / a.norm(), scale * b / b.norm()
    path = vu.slerp(a, b, torch.linspace(0, 1, 11))
    torch.testing.assert_close(path.norm(dim=1), torch.full((11,), scale), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)


def test_slerp_interpolation_and_traversals_decode_images():
    model = vu.VAE(SMALL).eval()
    x = _data(2)
    assert vu.interpolate(model, x[0][0], x[1][0], steps=5, method="slerp").shape == (5, 1, 28, 28)
    assert vu.traverse(model, x[0][0], dims=[0, 2], values=torch.linspace(-2, 2, 5)).shape == (10, 1, 28, 28)
    with pytest.raises(ValueError, match="out of range"):
        vu.traverse(model, x[0][0], dims=[9])
    with pytest.raises(ValueError, match="method"):
        vu.interpolate(model, x[0][0], x[1][0], method="cubic")


def test_pca_projects_onto_the_directions_of_largest_variance():
    torch.manual_seed(0)
    points = torch.randn(300, 5) * torch.tensor([10.0, 0.1, 3.0, 0.1, 0.1])
    projected = vu.pca_2d(points)
    assert projected.shape == (300, 2)
    assert projected[:, 0].var() > projected[:, 1].var() > 5


def test_manifold_grid_needs_a_two_dimensional_latent():
    model = vu.VAE(SMALL, latent_dim=2)
    assert vu.manifold_grid(model, n=4).shape == (16, 1, 28, 28)
    with pytest.raises(ValueError, match="latent_dim=2"):
        vu.manifold_grid(vu.VAE(SMALL))


def test_binarize_draws_fixed_binary_images_with_the_grey_level_as_probability():
    ds = vu.ImageDataset(torch.full((2000, 1, 2, 2), 64, dtype=torch.uint8), torch.zeros(2000))
    a, b = vu.binarize(ds, seed=0), vu.binarize(ds, seed=0)
    assert torch.equal(a.images, b.images) and set(a.images.unique().tolist()) <= {0, 255}
    assert (a.images == 255).float().mean().item() == pytest.approx(64 / 255, abs=0.02)


def test_kl_warmup_rises_linearly_from_zero():
    from vae_utils.training import kl_warmup_factor

    assert [kl_warmup_factor(e, 0, 10, 2) for e in (1, 2, 3, 4)] == [0.0, 0.5, 1.0, 1.0]
    assert kl_warmup_factor(1, 5, 10, 2) == 0.25 and kl_warmup_factor(1, 0, 10, 0) == 1.0


def test_evaluation_report_has_the_keys_papers_need():
    train, test = _data(64), _data(32, seed=1)
    from vae_utils.classifier import train_classifier

    classifier, accuracy = train_classifier(train, test, epochs=1)
    report = vu.evaluation_report(vu.VAE(SMALL), test, train, classifier, iwae_k=4, n_samples=40)
    assert {"neg_elbo", "iwae_nll", "iwae_k", "bits_per_dim", "kl", "active_units", "kl_per_dim",
            "frechet_distance", "frechet_distance_reconstructions", "frechet_distance_floor", "precision", "recall",
            "sample_class_histogram"} <= set(report)
    assert sum(report["sample_class_histogram"]) == pytest.approx(1.0)
    assert 0 <= accuracy <= 1


def test_binarized_scores_compare_samples_with_the_grey_images():
    from vae_utils.classifier import train_classifier

    train, grey = _data(64), _data(32, seed=1)
    classifier, _ = train_classifier(train, grey, epochs=1)
    model = vu.VAE(SMALL)
    binary = vu.report.evaluation_report(model, vu.binarize(grey), train, classifier, iwae_k=2, n_samples=40,
                                         real_test=grey)
    plain = vu.report.evaluation_report(model, grey, train, classifier, iwae_k=2, n_samples=40)
    assert binary["frechet_distance_floor"] == plain["frechet_distance_floor"]
    assert binary["frechet_distance"] == plain["frechet_distance"]
    assert binary["iwae_nll"] != plain["iwae_nll"]  # the likelihood is of the binarized images
