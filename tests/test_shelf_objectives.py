"""The rest of the shelf's families: WAE-MMD (Tolstikhin et al., 2018), InfoVAE (Zhao et al., 2019), DIP-VAE (Kumar
et al., 2018), FactorVAE (Kim & Mnih, 2018) and the IAF posterior (Kingma et al., 2016), each checked against a hand
computation, an exact Jacobian or the reference's formula, then trained, resumed and scored like the VAE."""
import json
import math
import os
import signal

import numpy as np
import pytest
import torch

import vae_utils as vu
from vae_utils.cli import main
from vae_utils.losses import imq_mmd
from vae_utils.models.dipvae import dip_penalty

from conftest import SMALL, blob_data

FAMILIES = {"wae": {}, "infovae": {}, "dipvae": {"dip_type": "i"},
            "factorvae": {"disc_hidden": 16, "disc_layers": 3, "gamma": 10.0},
            "iaf": {"flow_steps": 2, "flow_hidden": 16, "context_dim": 8}}


def _imq_by_loops(z: np.ndarray, w: np.ndarray, scales=(0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)) -> float:
    """Tolstikhin et al.'s estimator written out pair by pair: the kernel summed over the scales, the two
    within-sample means without the diagonal, minus twice the cross mean."""
    n, base = len(z), 2.0 * z.shape[1]
    k = lambda a, b: sum(base * s / (base * s + float(((a - b) ** 2).sum())) for s in scales)  # noqa: E731
    within = sum(k(z[i], z[j]) + k(w[i], w[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    return within - 2 * sum(k(z[i], w[j]) for i in range(n) for j in range(n)) / n ** 2


def test_the_imq_mmd_is_tolstikhins_estimator_and_near_zero_for_one_distribution():
    g = torch.Generator().manual_seed(0)
    z, w = torch.randn(6, 3, generator=g) + 1.0, torch.randn(6, 3, generator=g)
    assert imq_mmd(z, w).item() == pytest.approx(_imq_by_loops(z.double().numpy(), w.double().numpy()), rel=1e-5)
    same = imq_mmd(torch.randn(500, 8, generator=g), torch.randn(500, 8, generator=g)).item()
    shifted = imq_mmd(torch.randn(500, 8, generator=g) + 0.5, torch.randn(500, 8, generator=g)).item()
    assert abs(same) < 0.01 < shifted
    with pytest.raises(ValueError, match="at least 2 vectors"):
        imq_mmd(torch.randn(1, 3), torch.randn(4, 3))


@pytest.mark.parametrize("dip_type", ["i", "ii"])
def test_the_dip_penalty_is_disentanglement_libs_formula(dip_type):
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(32, 4, generator=g), 0.3 * torch.randn(32, 4, generator=g)
    m = mu.double().numpy()
    cov = np.mean(m[:, :, None] * m[:, None, :], 0) - np.outer(m.mean(0), m.mean(0))  # compute_covariance_z_mean
    if dip_type == "ii":
        cov = cov + np.diag(np.exp(logvar.double().numpy()).mean(0))
    off = cov - np.diag(np.diag(cov))
    expected = 10 * (off ** 2).sum() + 7 * ((np.diag(cov) - 1) ** 2).sum()  # regularize_diag_off_diag_dip
    assert dip_penalty(mu, logvar, dip_type, 10.0, 7.0).item() == pytest.approx(expected, rel=1e-5)


def test_the_dip_diagonal_weight_defaults_to_the_papers_ratio():
    assert vu.model_class("dipvae").config_class(dip_type="i", lambda_od=5.0).diagonal_weight == 50.0
    assert vu.model_class("dipvae").config_class(dip_type="ii", lambda_od=5.0).diagonal_weight == 5.0
    with pytest.raises(ValueError, match="dip_type="):
        vu.model_class("dipvae").config_class(dip_type="iii")


def _model(kind, **fields):
    torch.manual_seed(0)
    family = vu.model_class(kind)
    return family(family.config_class(**{**SMALL.to_dict(), **FAMILIES[kind], **fields}))


def test_each_objective_is_its_parts_and_with_no_penalty_the_vae_or_an_autoencoder():
    x = torch.stack([blob_data(16)[i][0] for i in range(16)])
    for kind, penalty in (("infovae", "mmd"), ("dipvae", "dip")):
        terms = _model(kind).loss(x, generator=torch.Generator().manual_seed(0))
        weight = 1000.0 if kind == "infovae" else 1.0
        assert terms.total.item() == pytest.approx((terms.neg_elbo + weight * getattr(terms, penalty)).item(),
                                                   rel=1e-5)
    unweighted = _model("infovae", mmd_weight=0.0)
    info = unweighted.loss(x, generator=torch.Generator().manual_seed(0))
    vae_terms = vu.VAE.loss(unweighted, x, generator=torch.Generator().manual_seed(0))  # the same weights and noise
    assert info.total.item() == pytest.approx(vae_terms.total.item(), rel=1e-6)  # the VAE's -ELBO
    wae = _model("wae")
    terms = wae.loss(x, generator=torch.Generator().manual_seed(0))
    codes, _ = wae.encode(x)
    assert terms.total.item() == pytest.approx((terms.recon + 10.0 * terms.mmd).item(), rel=1e-5)
    assert torch.equal(wae.reconstruct(x), wae.decode(codes))  # deterministic: the code is the mean head


def test_the_wae_offers_no_density_and_its_report_says_so():
    wae = _model("wae")
    assert vu.offers(wae) == ["Sampler"]
    report = vu.evaluation_report(wae, blob_data(32), iwae_k=2)
    assert {"objective", "recon", "mmd"} <= set(report) and "neg_elbo" not in report and "iwae_nll" not in report
    assert any("deterministic autoencoder" in note for note in report["notes"])
    loss_line = next(line for line in vu.format_report(report).splitlines() if "objective" in line)
    assert f"recon {report['recon']:.2f}" in loss_line and "MMD²" in loss_line
    with pytest.raises(ValueError, match="a WAE has no KL term"):
        vu.TrainConfig(beta=2.0, model=wae.config, model_kind="wae")


def _train(kind, tmp_path, name, epochs, resume=None, callback=None):
    model = _model(kind)
    config = vu.TrainConfig(epochs=epochs, batch_size=16, model=model.config, model_kind=kind, val_size=16)
    vu.set_seed(0)
    model = vu.model_class(kind)(model.config)
    history = vu.train(model, blob_data(), blob_data(32), config, out_dir=tmp_path / name, resume=resume,
                       progress=False, on_epoch_end=callback)
    return model, history


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_a_run_stopped_mid_way_and_resumed_is_bit_identical_and_loads_back(kind, tmp_path):
    straight, h_straight = _train(kind, tmp_path, "straight", 2)

    def stop(record):
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(vu.TrainingInterrupted):
        _train(kind, tmp_path, "split", 2, callback=stop)
    resumed, h_resumed = _train(kind, tmp_path, "split", 2, resume=tmp_path / "split" / "last.pt")
    assert all(torch.equal(p, q) for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()))
    strip = lambda h: [{k: v for k, v in r.items() if k != "train_seconds"} for r in h]  # noqa: E731
    assert strip(h_straight) == strip(h_resumed)
    loaded = vu.load_checkpoint(tmp_path / "split" / "last.pt")
    assert type(loaded) is type(straight) and loaded.config == straight.config
    assert vu.evaluate(loaded, blob_data(32)) == vu.evaluate(resumed.eval(), blob_data(32))


@pytest.mark.parametrize("kind, flags, terms", [
    ("wae", ["--mmd-weight", "3"], {"test_objective", "test_recon", "test_mmd"}),
    ("infovae", ["--mmd-weight", "100", "--beta", "0"], {"test_objective", "test_neg_elbo", "test_mmd"}),
    ("dipvae", ["--dip-type", "ii", "--lambda-od", "2"], {"test_objective", "test_neg_elbo", "test_dip"}),
    ("iaf", ["--flow-steps", "2", "--flow-hidden", "16"], {"test_neg_elbo", "test_recon", "test_kl"}),
    ("factorvae", ["--gamma", "10", "--disc-hidden", "16", "--disc-layers", "3"],
     {"test_objective", "test_neg_elbo", "test_tc", "test_disc_accuracy"}),
])
def test_the_command_line_trains_and_evaluates_each(kind, flags, terms, idx_root, tmp_path, capsys):
    main(["train", "--model", kind, *flags, "--data-dir", str(idx_root), "--epochs", "1", "--batch-size", "16",
          "--val-size", "16", "--out", str(tmp_path / "run"), "--quiet"])
    assert terms <= set(json.loads(capsys.readouterr().out))
    assert main(["evaluate", str(tmp_path / "run" / "last.pt"), "--subset", "32", "--iwae-k", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert ("iwae_nll" in report) == (kind != "wae")


def test_shuffling_permutes_each_dimension_on_its_own():
    from vae_utils.models.factorvae import shuffle_dimensions

    z = torch.arange(40.0).view(20, 2) * torch.tensor([1.0, -1.0])
    shuffled = shuffle_dimensions(z, torch.Generator().manual_seed(0))
    assert all(torch.equal(shuffled[:, d].sort().values, z[:, d].sort().values) for d in range(2))
    assert not torch.equal(shuffled[:, 0] + shuffled[:, 1], z[:, 0] + z[:, 1])  # the pairs are broken up


def test_one_backward_gives_the_discriminator_its_loss_and_the_vae_its_objective():
    import torch.nn.functional as F

    from vae_utils.losses import kl_divergence, reconstruction_loss
    from vae_utils.models.factorvae import shuffle_dimensions

    x = torch.stack([blob_data(16)[i][0] for i in range(16)])
    model = _model("factorvae")
    model.loss(x, generator=torch.Generator().manual_seed(0)).total.backward()
    together = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    g = torch.Generator().manual_seed(0)  # the same draws, in the same order: z, then the shuffle
    mu, logvar = model.encode(x)
    z = model.reparameterize(mu.float(), logvar.float(), g)
    vae = (reconstruction_loss(model.decoder(z), x).mean() + kl_divergence(mu, logvar).mean()
           + model.config.gamma * model.discriminator(z).mean())  # the VAE's objective, its own gradient
    real, fake = model.discriminator(z.detach()), model.discriminator(shuffle_dimensions(z.detach(), g))
    disc = 0.5 * (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                  + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    vae_grads = torch.autograd.grad(vae, [p for n, p in model.named_parameters() if not n.startswith("disc")])
    disc_grads = torch.autograd.grad(disc, list(model.discriminator.parameters()))
    apart = dict(zip([n for n, _ in model.named_parameters() if not n.startswith("disc")], vae_grads))
    apart |= dict(zip([f"discriminator.{n}" for n, _ in model.discriminator.named_parameters()], disc_grads))
    for name, grad in together.items():
        torch.testing.assert_close(grad, apart[name], rtol=1e-4, atol=1e-6, msg=name)


def test_the_discriminators_estimate_of_the_total_correlation_matches_a_gaussians():
    """Trained alone on codes of a correlated Gaussian, D's mean logit approaches TC = -1/2 log det(correlation)."""
    from vae_utils.models.factorvae import shuffle_dimensions

    torch.manual_seed(0)
    model = _model("factorvae", disc_hidden=64)
    rho = 0.8
    scale = torch.linalg.cholesky(torch.tensor([[1.0, rho], [rho, 1.0]]))
    disc = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.LeakyReLU(0.2), torch.nn.Linear(64, 64),
                               torch.nn.LeakyReLU(0.2), torch.nn.Linear(64, 1))
    model.discriminator = disc  # the family's discriminator shape, on a 2-d code
    optimizer = torch.optim.Adam(disc.parameters(), lr=1e-3, betas=(0.5, 0.9))
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    for _ in range(1500):
        z = torch.randn(512, 2) @ scale.T
        real, fake = disc(z), disc(shuffle_dimensions(z))
        loss = 0.5 * (bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        estimate = disc(torch.randn(100_000, 2) @ scale.T).mean().item()
    assert estimate == pytest.approx(-0.5 * math.log(1 - rho ** 2), abs=0.08)  # 0.511 nats


def test_made_is_autoregressive():
    from vae_utils.models.iaf import MADE

    torch.manual_seed(0)
    made = MADE(5, 16, 3)
    z, h = torch.randn(5), torch.randn(3)
    for part in (0, 1):  # m, then s: output d depends on z_1 .. z_{d-1} alone
        jacobian = torch.autograd.functional.jacobian(lambda v: made(v, h)[part], z)  # (5, 5)
        assert torch.equal(jacobian.triu() != 0, torch.zeros(5, 5, dtype=torch.bool))
        assert (jacobian.tril(-1) != 0).any()


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_the_flows_log_determinant_is_the_exact_jacobians(steps):
    model = _model("iaf", flow_steps=steps, latent_dim=5)
    h = torch.randn(model.config.context_dim)
    for layer in model.steps.parameters():  # away from the identity, so that the test has something to find
        torch.nn.init.normal_(layer, std=0.5)
    z0 = torch.randn(5, dtype=torch.float32)
    z, log_det = model.flow(z0, h)
    jacobian = torch.autograd.functional.jacobian(lambda v: model.flow(v, h)[0], z0)
    assert log_det.item() == pytest.approx(torch.linalg.slogdet(jacobian.double())[1].item(), abs=1e-4)


def test_the_iaf_without_steps_is_the_vae_and_its_weights_match_its_loss():
    x = torch.stack([blob_data(8)[i][0] for i in range(8)])
    flat = _model("iaf", flow_steps=0)
    terms = flat.loss(x, generator=torch.Generator().manual_seed(0))
    vae_terms = vu.VAE.loss(flat, x, generator=torch.Generator().manual_seed(0))  # the same networks and noise
    assert terms.recon.item() == pytest.approx(vae_terms.recon.item(), rel=1e-6)
    mu, logvar = flat.encode(x)  # the KL by Monte Carlo at the same z: log q(z|x) - log p(z), torch.distributions
    z = flat.reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    kl = (q.log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z)).sum(1).mean()
    assert terms.kl.item() == pytest.approx(kl.item(), rel=1e-5)
    model = _model("iaf")
    terms = model.loss(x, generator=torch.Generator().manual_seed(0))
    log_w = model.log_importance_weights(x, 1, torch.Generator().manual_seed(0))  # (8, 1): the same z_K
    assert (-log_w.mean()).item() == pytest.approx(terms.total.item(), rel=1e-4)
    assert vu.offers(model) == ["ImportanceWeighted", "Sampler"]
