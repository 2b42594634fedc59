"""The prior over codes: causal, trainable by vu.train, a generative model with the VQ-VAE; checkpoints and resume."""
import os
import signal

import pytest
import torch

import vae_utils as vu
from conftest import blob_data
from test_vqvae import TINY

PRIOR = dict(width=16, layers=2, heads=2, dropout=0.0)


def _prior(**overrides):
    vu.set_seed(0)
    return vu.CodePrior.for_vqvae(vu.VQVAE(TINY), **{**PRIOR, **overrides})


def test_the_prior_is_causal_position_i_sees_only_codes_before_it():
    net = _prior().eval().net
    codes = torch.randint(0, 16, (3, 49))
    logits = net(codes)
    for i in (0, 1, 24, 48):
        changed = codes.clone()
        changed[:, i:] = torch.randint(0, 16, changed[:, i:].shape)  # position i and everything after it
        torch.testing.assert_close(net(changed)[:, :i + 1], logits[:, :i + 1])
    changed = codes.clone()  # and it does look at the codes before it
    changed[:, 0] = (codes[:, 0] + 1) % 16
    assert not torch.allclose(net(changed)[:, 1:], logits[:, 1:])


def test_log_prob_sums_the_conditionals_and_normalises():
    prior = _prior(layers=1).eval()
    prior.vqvae = vu.VQVAE(TINY, image_size=8, channels=(4, 4)).eval()  # a 2x2 grid: 16**4 grids to sum over
    prior.net = type(prior.net)(16, 4, 16, 1, 2, 0.0).eval()
    grids = torch.cartesian_prod(*[torch.arange(16)] * 4).view(-1, 2, 2)
    total = torch.logsumexp(prior.log_prob(grids).double(), 0)
    assert total.item() == pytest.approx(0.0, abs=1e-4)


def test_the_vqvae_inside_is_a_frozen_copy():
    vqvae = vu.VQVAE(TINY)
    prior = vu.CodePrior.for_vqvae(vqvae, **PRIOR).train()
    assert all(torch.equal(a, b) for a, b in zip(vqvae.state_dict().values(), prior.vqvae.state_dict().values()))
    assert not any(p.requires_grad for p in prior.vqvae.parameters()) and not prior.vqvae.training
    before = {k: v.clone() for k, v in prior.vqvae.state_dict().items()}
    data = blob_data(16)
    vu.train(prior, data, data, vu.TrainConfig(model=prior.config, epochs=2, batch_size=8), progress=False)
    assert all(torch.equal(before[k], v) for k, v in prior.vqvae.state_dict().items())


def test_the_prior_overfits_the_codes_of_a_tiny_set():
    data = blob_data(16)  # four distinct images: their codes can be learnt by heart
    prior = _prior()
    start = vu.evaluate(prior, data)
    history = vu.train(prior, data, data, vu.TrainConfig(model=prior.config, epochs=150, batch_size=8, lr=3e-3),
                       progress=False)
    end = history[-1]
    assert end["test_prior_nll"] < 0.1 * start["prior_nll"]  # 132 -> 8 measured; the floor is log 4 = 1.4
    assert end["test_bound"] == pytest.approx(end["test_prior_nll"] + end["test_recon"], rel=1e-5)


def test_sampling_draws_codes_then_decodes_them():
    prior = _prior()
    g = torch.Generator().manual_seed(0)
    codes = prior.sample_codes(5, temperature=0.5, generator=g)
    assert codes.shape == (5, 7, 7) and codes.dtype == torch.long and 0 <= codes.min() and codes.max() < 16
    images = prior.sample(5, generator=torch.Generator().manual_seed(0), temperature=0.5)
    assert images.shape == (5, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    torch.testing.assert_close(images, prior.vqvae.decode(codes))  # the same generator draws: the same codes


def test_a_low_temperature_concentrates_the_samples():
    prior = _prior()
    torch.nn.init.normal_(prior.net.head.weight, std=1.0)  # peaked conditionals
    cold = prior.sample_codes(64, temperature=0.05, generator=torch.Generator().manual_seed(1))
    hot = prior.sample_codes(64, temperature=5.0, generator=torch.Generator().manual_seed(1))
    assert vu.perplexity(torch.bincount(cold.flatten(), minlength=16)) < vu.perplexity(
        torch.bincount(hot.flatten(), minlength=16))


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "hot"])
def test_a_bad_temperature_is_refused(bad):
    with pytest.raises(ValueError, match="temperature"):
        _prior().sample(2, temperature=bad)


@pytest.mark.parametrize("kind", ["vqvae", "vqvae-prior"])
def test_checkpoint_round_trip_rebuilds_the_same_model(tmp_path, kind):
    model = vu.VQVAE(TINY) if kind == "vqvae" else _prior()
    data = blob_data(16)
    vu.train(model, data, None, vu.TrainConfig(model=model.config, epochs=1, batch_size=8), progress=False)
    vu.save_checkpoint(model, tmp_path / "m.pt")
    loaded = vu.load_checkpoint(tmp_path / "m.pt")
    assert type(loaded) is type(model) and loaded.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert vu.evaluate(loaded, data) == vu.evaluate(model.eval(), data)
    with pytest.raises(vu.CheckpointError, match=f"holds a {kind} checkpoint, not a vae"):
        vu.load_checkpoint(tmp_path / "m.pt", kind="vae")


def _run(tmp_path, name, model_fn, epochs, resume=None, callback=None):
    vu.set_seed(0)
    model = model_fn()
    config = vu.TrainConfig(model=model.config, epochs=epochs, batch_size=8, val_size=8)
    history = vu.train(model, blob_data(40), blob_data(16), config, out_dir=tmp_path / name, resume=resume,
                       progress=False, on_epoch_end=callback)
    return model, [{k: v for k, v in h.items() if k != "train_seconds"} for h in history]


@pytest.mark.parametrize("model_fn", [lambda: vu.VQVAE(TINY, dead_code_steps=3), lambda: _prior(dropout=0.1)],
                         ids=["vqvae", "prior"])
def test_a_run_stopped_mid_epoch_and_resumed_is_bit_identical(tmp_path, model_fn):
    straight, h_straight = _run(tmp_path, "straight", model_fn, 3)

    def stop(record):
        os.kill(os.getpid(), signal.SIGINT)  # arrives between two steps of epoch 2

    with pytest.raises(vu.TrainingInterrupted):
        _run(tmp_path, "split", model_fn, 3, callback=stop)
    resumed, h_resumed = _run(tmp_path, "split", model_fn, 3, resume=tmp_path / "split" / "last.pt")
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))
    assert h_straight == h_resumed


def test_best_pt_follows_the_validation_bound(tmp_path):
    _, history = _run(tmp_path, "run", lambda: vu.VQVAE(TINY), 3)
    best = vu.read_checkpoint(tmp_path / "run" / "best.pt")
    assert best["history"][-1]["val_bound"] == min(h["val_bound"] for h in history)


def test_the_report_puts_the_bound_codes_and_samples_side_by_side():
    data = blob_data(16)
    prior = _prior()
    classifier = vu.FeatureClassifier()
    report = vu.vq_report(prior, data, data, classifier, n_samples=8)
    assert report["bound"] == pytest.approx(report["recon"] + report["prior_nll"], rel=1e-5)
    assert report["bound_uniform"] == pytest.approx(report["recon"] + 49 * torch.log(torch.tensor(16.0)).item(),
                                                    rel=1e-5)
    assert report["bits_per_dim"] is None and any("no bits/dim" in n for n in report["notes"])
    assert {"codes_used", "perplexity", "frechet_distance", "precision", "recall"} <= set(report)
    binary = vu.binarize(data)
    assert vu.vq_report(prior, binary)["bits_per_dim"] == pytest.approx(
        vu.vq_report(prior, binary)["bound"] / (784 * torch.log(torch.tensor(2.0)).item()), rel=1e-6)
    assert "prior NLL" not in vu.format_vq_report(report) and "bound on -log p(x)" in vu.format_vq_report(report)


def test_the_loss_curves_plot_whatever_terms_a_model_has():
    import matplotlib

    matplotlib.use("Agg")
    data = blob_data(16)
    vq = vu.train(vu.VQVAE(TINY), data, data, vu.TrainConfig(model=TINY, epochs=1, batch_size=8), progress=False)
    assert [a.get_title() for a in vu.plot_history(vq)] == ["objective", "reconstruction", "commitment", "bound"]
    vae = vu.train(vu.VAE(latent_dim=2, channels=(4,), hidden_dim=0), data, data,
                   vu.TrainConfig(epochs=1, batch_size=8), progress=False)
    assert [a.get_title() for a in vu.plot_history(vae)] == ["-ELBO", "reconstruction", "KL"]
