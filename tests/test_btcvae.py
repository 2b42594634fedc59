"""β-TCVAE (Chen et al., 2018): the KL term split into mutual information, total correlation and dimension-wise KL."""
import json
import math

import pytest
import torch
from torch.distributions import Normal

import vae_utils as vu
from vae_utils.cli import main
from vae_utils.models.btcvae import BetaTCVAEConfig, kl_decomposition, stratified_log_weights

from conftest import SMALL, blob_data


def _model(**fields):
    torch.manual_seed(0)
    return vu.model_class("btcvae")(BetaTCVAEConfig(**SMALL.to_dict(), **fields))


def test_the_three_terms_sum_to_the_sampled_kl():
    mu, logvar = torch.randn(16, 5), torch.randn(16, 5) * 0.3
    z = mu + torch.exp(0.5 * logvar) * torch.randn(16, 5)
    mi, tc, dwkl = kl_decomposition(z, mu, logvar, dataset_size=1000)
    kl = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(1) - Normal(0.0, 1.0).log_prob(z).sum(1)
    torch.testing.assert_close(mi + tc + dwkl, kl, rtol=1e-5, atol=1e-4)


def test_the_aggregate_posterior_is_the_minibatch_weighted_estimate():
    mu, logvar = torch.randn(6, 3), torch.zeros(6, 3)
    z = torch.randn(6, 3)
    mi, tc, dwkl = kl_decomposition(z, mu, logvar, dataset_size=50)
    q = Normal(mu.unsqueeze(0), 1.0)  # q(z_i | x_j) for all i, j
    log_qz = torch.logsumexp(q.log_prob(z.unsqueeze(1)).sum(2), 1) - math.log(50 * 6)
    log_prod = (torch.logsumexp(q.log_prob(z.unsqueeze(1)), 1) - math.log(50 * 6)).sum(1)
    torch.testing.assert_close(tc, log_qz - log_prod, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(dwkl, log_prod - Normal(0.0, 1.0).log_prob(z).sum(1), rtol=1e-5, atol=1e-4)


def test_stratified_weights_are_the_appendixs_and_each_row_sums_to_1():
    w = stratified_log_weights(4, dataset_size=10).exp()  # Chen et al., App. C.2, with N = 10, M = 3
    strat = (10 - 3) / (10 * 3)
    expected = torch.tensor([[0.1, strat, 1 / 3, 1 / 3], [1 / 3, 0.1, strat, 1 / 3], [1 / 3, 1 / 3, 0.1, strat],
                             [strat, 1 / 3, 1 / 3, 0.1]])
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(stratified_log_weights(50, 60_000).exp().sum(1), torch.ones(50))


def test_stratified_sampling_recovers_the_closed_form_where_minibatch_weighting_is_far_off():
    # x's codes mu ~ N(0, 0.25 I), q(z|x) = N(mu, I): the aggregate posterior is N(0, 1.25 I), which factorises, so
    # TC = 0, MI = D/2 log 1.25 and dwKL = D/2 (0.25 - log 1.25); a batch of 1,000 of N = 50,000 images
    torch.manual_seed(0)
    mu, logvar = 0.5 * torch.randn(1000, 10), torch.zeros(1000, 10)
    z = mu + torch.randn(1000, 10)
    mi, tc, dwkl = (t.mean().item() for t in kl_decomposition(z, mu, logvar, 50_000, estimator="mss"))
    assert mi == pytest.approx(5 * math.log(1.25), abs=0.15) and tc == pytest.approx(0.0, abs=0.05)
    assert dwkl == pytest.approx(5 * (0.25 - math.log(1.25)), abs=0.1)
    _, mws_tc, _ = kl_decomposition(z, mu, logvar, 50_000, estimator="mws")
    assert mws_tc.mean().item() > 50  # (D - 1) log N too high: why evaluation does not use it


def test_training_uses_minibatch_weighting_and_evaluation_stratified_sampling():
    model, x = _model(), torch.stack([blob_data(8)[i][0] for i in range(8)])
    trained = model.loss(x, generator=torch.Generator().manual_seed(0))  # gradients on: the reference's objective
    with torch.no_grad():
        evaluated = model.loss(x, generator=torch.Generator().manual_seed(0))
        mu, logvar = model.encode(x)
        z = model.reparameterize(mu.float(), logvar.float(), torch.Generator().manual_seed(0), None)
        for terms, estimator in ((trained, "mws"), (evaluated, "mss")):
            mi, tc, _ = kl_decomposition(z, mu, logvar, model.config.dataset_size, estimator)
            assert terms.mi.item() == pytest.approx(mi.mean().item(), rel=1e-5)
            assert terms.tc.item() == pytest.approx(tc.mean().item(), rel=1e-5, abs=1e-5)
    assert trained.neg_elbo.item() == pytest.approx(evaluated.neg_elbo.item(), rel=1e-5)  # the same bound


def test_with_every_weight_1_the_objective_is_the_elbo():
    model, x = _model(beta_tc=1.0), torch.stack([blob_data(8)[i][0] for i in range(8)])
    terms = model.loss(x, generator=torch.Generator().manual_seed(0))
    assert terms.total.item() == pytest.approx(terms.neg_elbo.item(), rel=1e-6)
    heavier = _model(beta_tc=6.0).loss(x, generator=torch.Generator().manual_seed(0))
    assert heavier.total.item() == pytest.approx((heavier.neg_elbo + 5 * heavier.tc).item(), rel=1e-5)


@pytest.mark.parametrize("field, value", [("beta_tc", -1.0), ("beta_tc", float("nan")), ("gamma", -0.5),
                                          ("dataset_size", 0)])
def test_bad_weights_and_sizes_are_refused(field, value):
    with pytest.raises(ValueError, match=f"{field}="):
        BetaTCVAEConfig(**{field: value})


def test_the_command_line_sets_n_from_the_training_set_and_reports_the_three_terms(idx_root, tmp_path, capsys):
    main(["train", "--model", "btcvae", "--beta-tc", "4", "--data-dir", str(idx_root), "--epochs", "1",
          "--batch-size", "16", "--out", str(tmp_path / "run"), "--quiet"])
    metrics = json.loads(capsys.readouterr().out)
    model = vu.load_checkpoint(tmp_path / "run" / "last.pt")
    assert model.config.dataset_size == 64 and model.config.beta_tc == 4.0  # idx_root holds 64 training images
    assert {"test_objective", "test_neg_elbo", "test_mi", "test_tc", "test_dwkl"} <= set(metrics)
    history = vu.read_checkpoint(tmp_path / "run" / "last.pt")["history"]
    assert {"train_mi", "train_tc", "train_dwkl"} <= set(history[0])
