"""Evaluation checked on cases whose answer is known: -ELBO, IWAE, KL per dimension, active units, the report."""
import math

import pytest
import torch

import vae_utils as vu
from conftest import SMALL, blob_data
from vae_utils.features import train_classifier


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


def test_evaluate_is_deterministic_and_consistent():
    model, ds = vu.VAE(SMALL), blob_data()
    a, b = vu.evaluate(model, ds, batch_size=7), vu.evaluate(model, ds, batch_size=7)
    assert a == b
    assert a["neg_elbo"] == pytest.approx(a["recon"] + a["kl"])
    assert model.training  # evaluate leaves the mode as it found it


def test_evaluate_scores_the_plain_elbo_whatever_beta_training_used():
    model, ds = vu.VAE(SMALL).eval(), blob_data(16)
    x = ds.images.float() / 255
    terms = model.loss(x, generator=torch.Generator().manual_seed(0))
    result = vu.evaluate(model, ds, batch_size=16)
    assert result["neg_elbo"] == pytest.approx(terms.total.item(), rel=1e-6)
    assert result["neg_elbo"] == pytest.approx(result["recon"] + result["kl"])


def test_evaluating_an_empty_data_set_is_a_value_error():
    with pytest.raises(ValueError, match="empty"):
        vu.evaluate(vu.VAE(SMALL), vu.ImageDataset(torch.zeros(0, 1, 28, 28, dtype=torch.uint8), torch.zeros(0)))


def test_iwae_equals_the_exact_log_likelihood_when_the_decoder_ignores_z():
    model, ds = _prior_model(), blob_data(8)
    x = ds.images.float() / 255
    exact = vu.reconstruction_loss(model.decode_logits(torch.zeros(8, SMALL.latent_dim)), x).mean().item()
    for k in (1, 7, 50):
        assert vu.iwae_nll(model, ds, k=k)["iwae_nll"] == pytest.approx(exact, rel=1e-5)


def test_iwae_with_one_sample_is_the_elbo_in_expectation():
    model, ds = vu.VAE(SMALL).eval(), blob_data(16)
    iwae1 = sum(vu.iwae_nll(model, ds, k=1, seed=s)["iwae_nll"] for s in range(40)) / 40
    elbo = sum(vu.evaluate(model, ds, seed=s)["neg_elbo"] for s in range(40)) / 40
    assert iwae1 == pytest.approx(elbo, rel=2e-3)


def test_more_importance_samples_never_raise_the_estimate_above_the_elbo():
    torch.manual_seed(0)
    model, ds = vu.VAE(SMALL).eval(), blob_data(16)
    elbo = vu.iwae_nll(model, ds, k=1)["iwae_nll"]
    nll = [vu.iwae_nll(model, ds, k=k)["iwae_nll"] for k in (10, 100, 1000)]
    assert nll[0] <= elbo and nll[1] <= nll[0] + 0.05 and nll[2] <= nll[1] + 0.05


def test_iwae_is_the_same_however_the_samples_are_chunked():
    model, x = vu.VAE(SMALL).eval(), blob_data(4).images.float() / 255
    with torch.no_grad():
        one_pass = vu.log_importance_weights(model, x, 64, torch.Generator().manual_seed(1), chunk_images=4 * 64)
        per_sample = vu.log_importance_weights(model, x, 64, torch.Generator().manual_seed(1), chunk_images=4)
        ragged = vu.log_importance_weights(model, x, 64, torch.Generator().manual_seed(1), chunk_images=4 * 7)
    assert one_pass.shape == (4, 64)
    torch.testing.assert_close(per_sample, one_pass)
    torch.testing.assert_close(ragged, one_pass)


def test_iwae_sample_counts_are_bounded_before_any_work():
    for k in (0, 10**9):
        with pytest.raises(ValueError, match="k="):
            vu.iwae_nll(vu.VAE(SMALL), blob_data(4), k=k)


@pytest.mark.parametrize("likelihood, binarized", [("bernoulli", True), ("discretized-logistic", False)])
def test_bits_per_dim_is_nats_over_pixels_and_ln2_where_the_likelihood_is_discrete(likelihood, binarized):
    data = vu.binarize(blob_data(4)) if binarized else blob_data(4)
    result = vu.iwae_nll(vu.VAE(SMALL, likelihood=likelihood), data, k=3)
    assert result["bits_per_dim"] == pytest.approx(result["iwae_nll"] / (784 * math.log(2)))


@pytest.mark.parametrize("likelihood, reason", [("bernoulli", "not a normalised likelihood"),
                                                ("continuous-bernoulli", "density"), ("gaussian", "density")])
def test_bits_per_dim_is_not_given_where_it_is_not_defined_and_the_report_says_why(likelihood, reason):
    result = vu.iwae_nll(vu.VAE(SMALL, likelihood=likelihood), blob_data(4), k=2)
    assert result["bits_per_dim"] is None and reason in result["bits_per_dim_note"]
    report = vu.evaluation_report(vu.VAE(SMALL, likelihood=likelihood), blob_data(8), iwae_k=2)
    assert any(reason in note for note in report["notes"]) and "bits/dim" not in vu.format_report(report).split(
        "note:")[0]


def test_posterior_equal_to_prior_has_zero_kl_and_no_active_unit():
    stats = vu.latent_stats(_prior_model(), blob_data(16))
    assert torch.equal(stats.kl_per_dim, torch.zeros(SMALL.latent_dim, dtype=torch.float64))
    assert stats.active.sum() == 0 and vu.active_units(_prior_model(), blob_data(16)) == 0


def test_active_units_count_dimensions_whose_mean_varies_over_the_data():
    model = _prior_model()
    with torch.no_grad():  # let latent 0's mean follow the image brightness strongly
        model.encoder.head[-1].weight[0] = 100.0
    stats = vu.latent_stats(model, blob_data(16))
    assert stats.active.tolist() == [True] + [False] * (SMALL.latent_dim - 1)
    assert stats.kl_per_dim[0] > 0 and torch.all(stats.kl_per_dim[1:] == 0)


def test_evaluation_report_has_the_keys_papers_need():
    train, test = blob_data(64), blob_data(32, seed=1)
    classifier, accuracy = train_classifier(train, test, epochs=1)
    report = vu.evaluation_report(vu.VAE(SMALL), test, train, classifier, iwae_k=4, n_samples=40)
    assert {"neg_elbo", "iwae_nll", "iwae_k", "bits_per_dim", "kl", "active_units", "kl_per_dim",
            "frechet_distance", "frechet_distance_reconstructions", "frechet_distance_floor", "precision", "recall",
            "sample_class_histogram", "n_test", "notes"} <= set(report)
    assert sum(report["sample_class_histogram"]) == pytest.approx(1.0)
    assert 0 <= accuracy <= 1


def test_small_evaluations_say_their_sample_quality_figures_are_noisy():
    train, test = blob_data(64), blob_data(32, seed=1)
    classifier, _ = train_classifier(train, test, epochs=1)
    report = vu.evaluation_report(vu.VAE(SMALL), test, train, classifier, iwae_k=2, n_samples=40)
    noisy = [note for note in report["notes"] if "noisy" in note]
    assert len(noisy) == 1 and "32 images are noisy" in noisy[0]
    assert "note: Fréchet distance and precision/recall from 32 images" in vu.format_report(report)


@pytest.mark.parametrize("n_test, n_samples", [(3, 40), (32, 3), (32, 10**9)])
def test_evaluations_too_small_or_too_large_for_precision_recall_fail_before_the_work(n_test, n_samples, monkeypatch):
    train = blob_data(64)
    classifier, _ = train_classifier(train, blob_data(32), epochs=1)
    monkeypatch.setattr(vu.metrics, "evaluate", lambda *a, **k: pytest.fail("did the work before checking"))
    with pytest.raises(ValueError, match="expected"):
        vu.evaluation_report(vu.VAE(SMALL), blob_data(n_test), train, classifier, iwae_k=2, n_samples=n_samples)


def test_binarized_scores_compare_samples_with_the_grey_images():
    train, grey = blob_data(64), blob_data(32, seed=1)
    classifier, _ = train_classifier(train, grey, epochs=1)
    model = vu.VAE(SMALL)
    binary = vu.evaluation_report(model, vu.binarize(grey), train, classifier, iwae_k=2, n_samples=40,
                                  real_test=grey)
    plain = vu.evaluation_report(model, grey, train, classifier, iwae_k=2, n_samples=40)
    assert binary["frechet_distance_floor"] == plain["frechet_distance_floor"]
    assert binary["frechet_distance"] == plain["frechet_distance"]
    assert binary["iwae_nll"] != plain["iwae_nll"]  # the likelihood is of the binarized images


def test_format_report_prints_the_bounds_and_skips_absent_sample_figures():
    report = vu.evaluation_report(vu.VAE(SMALL), blob_data(8), iwae_k=2)
    text = vu.format_report(report)
    assert "-ELBO (k=1)" in text and "IWAE NLL (k=2)" in text and "bits/dim" in text and "active units" in text
    assert "Fréchet" not in text


def test_iwae_in_bf16_stays_close_to_fp32_and_leaves_the_model_as_it_was():
    model, data = vu.VAE(SMALL).eval(), blob_data(8)
    exact = vu.iwae_nll(model, data, k=20, precision="fp32")
    fast = vu.iwae_nll(model, data, k=20, precision="bf16")
    assert fast["iwae_precision"] == "bf16" and fast["iwae_nll"] == pytest.approx(exact["iwae_nll"], abs=0.5)
    assert model.decoder.deconvs[0].weight.is_contiguous()  # channels_last only while scoring
