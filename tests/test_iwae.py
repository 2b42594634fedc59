"""The IWAE family (Burda et al., 2016): the k-sample bound as the objective, on the VAE's networks."""
import json
import math

import pytest
import torch
from torch.distributions import Bernoulli, Normal

import vae_utils as vu
from vae_utils.cli import main

from conftest import SMALL, blob_data


def _model(k: int) -> vu.models.iwae.IWAE:
    torch.manual_seed(0)
    return vu.model_class("iwae")(vu.models.iwae.IWAEConfig(**SMALL.to_dict(), k=k))


def _by_hand(model, x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """-L_k per image from torch.distributions, with the noise the model draws for the same seed."""
    mu, logvar = model.encode(x)
    eps = torch.randn((len(x), k, mu.shape[1]), generator=torch.Generator().manual_seed(seed))
    q = Normal(mu.unsqueeze(1), torch.exp(0.5 * logvar).unsqueeze(1))
    z = q.loc + q.scale * eps
    logits = model.decoder(z.reshape(-1, mu.shape[1])).view(len(x), k, *x.shape[1:])
    log_w = (Bernoulli(logits=logits).log_prob(x.unsqueeze(1).expand_as(logits)).flatten(2).sum(-1)
             + Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1))
    return -(torch.logsumexp(log_w, 1) - math.log(k))


@pytest.mark.parametrize("k", [1, 5])
def test_the_objective_is_the_importance_weighted_bound(k):
    model, x = _model(k), torch.stack([blob_data(8)[i][0] for i in range(8)]).round()  # binary pixels
    with torch.no_grad():
        terms = model.loss(x, generator=torch.Generator().manual_seed(3))
        expected = _by_hand(model, x, k, seed=3).mean()
    torch.testing.assert_close(terms.total, expected, rtol=1e-5, atol=1e-4)
    assert terms.neg_elbo == pytest.approx((terms.recon + terms.kl).item())


def test_with_k_1_the_bound_is_the_elbo_and_more_samples_tighten_it():
    data = blob_data(200)
    x = torch.stack([data[i][0] for i in range(200)])
    one, many = _model(1), _model(50)
    vu.train(one, blob_data(256), config=vu.TrainConfig(epochs=3, batch_size=32, lr=1e-2, lr_schedule="constant",
                                                         model=one.config), progress=False)
    many.load_state_dict(one.state_dict())  # the same trained networks: a posterior that carries information
    with torch.no_grad():
        one, many = (m.loss(x, generator=torch.Generator().manual_seed(0)) for m in (one, many))
    # -L_1 estimates the -ELBO (its KL by Monte Carlo, the reported one in closed form), -L_50 lies below it
    assert one.total.item() == pytest.approx(one.neg_elbo.item(), rel=2e-2)
    assert many.total < one.total - 0.1


def test_skip_noise_draws_what_the_loss_draws():
    model, x = _model(4), torch.stack([blob_data(6)[i][0] for i in range(6)])
    a, b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.loss(x, generator=a)
    model.skip_noise(6, generator=b)
    assert torch.equal(a.get_state(), b.get_state())


def test_k_must_be_a_positive_integer():
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k="):
            vu.models.iwae.IWAEConfig(k=k)


def test_it_trains_resumes_bit_exactly_and_reports_both_bounds(tmp_path):
    config = vu.TrainConfig(epochs=2, batch_size=16, lr_schedule="constant", model=_model(3).config)
    straight = _model(3)
    vu.train(straight, blob_data(64), blob_data(32, seed=1), config, out_dir=tmp_path / "a", progress=False)
    first = _model(3)
    vu.train(first, blob_data(64), blob_data(32, seed=1), vu.TrainConfig(**{**config.__dict__, "epochs": 1}),
             out_dir=tmp_path / "b", progress=False)
    resumed = _model(3)
    history = vu.train(resumed, blob_data(64), blob_data(32, seed=1), config, out_dir=tmp_path / "b",
                       resume=tmp_path / "b" / "last.pt", progress=False)
    assert all(torch.equal(p, q) for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()))
    assert {"test_neg_iwae_bound", "test_neg_elbo", "test_recon", "test_kl"} <= set(history[-1])
    assert history[-1]["test_neg_iwae_bound"] <= history[-1]["test_neg_elbo"] + 0.5
    report = vu.evaluation_report(vu.load_checkpoint(tmp_path / "b" / "best.pt"), blob_data(32, seed=1), iwae_k=8)
    assert report["model_kind"] == "iwae" and "iwae_nll" in report and "active_units" in report
    assert "-L_k (training)" in vu.format_report(report) and "-ELBO (k=1)" in vu.format_report(report)


def test_the_command_line_trains_it_with_the_vae_presets_networks(idx_root, tmp_path, capsys):
    main(["train", "--model", "iwae", "--k", "3", "--data-dir", str(idx_root), "--epochs", "1", "--batch-size", "16",
          "--out", str(tmp_path / "run"), "--quiet"])
    metrics = json.loads(capsys.readouterr().out)
    model = vu.load_checkpoint(tmp_path / "run" / "last.pt")
    assert metrics["model_kind"] == "iwae" and model.config.k == 3
    assert model.config.channels == vu.VAEConfig().channels  # the VAE preset's networks, not for_images'
    assert "test_neg_iwae_bound" in metrics and "test_neg_elbo" in metrics
