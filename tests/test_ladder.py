"""The dense ladder VAE: the hierarchical VAE's bound over groups of latent vectors, scored at the decoder's speed."""
import json
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import vae_utils as vu
from vae_utils.cli import main
from vae_utils.subpixel import UnshuffledDecoder

from conftest import blob_data

TINY = vu.LadderConfig(channels=(4, 8), hidden_dim=16, width=12, latent_dims=(2, 3, 4))


def _model(config: vu.LadderConfig = TINY) -> vu.LadderVAE:
    torch.manual_seed(0)
    return vu.LadderVAE(config)


def _images(n: int) -> torch.Tensor:
    data = blob_data(n)
    return torch.stack([data[i][0] for i in range(n)]).round()  # binary pixels: a normalised Bernoulli


@pytest.mark.parametrize("image_size, in_channels", [(28, 1), (32, 3), (64, 3)])
def test_the_presets_build_for_each_image_shape(image_size, in_channels):
    model = vu.LadderVAE(vu.LadderConfig.for_images(image_size, in_channels))
    x = torch.rand(2, in_channels, image_size, image_size).mul(255).round().div(255)
    with torch.no_grad():
        terms = model.loss(x)
    assert math.isfinite(terms.total.item()) and model.sample(2).shape == x.shape
    assert model.n_groups == len(model.config.latent_dims)


def test_configs_that_cannot_be_built_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"latent_dims=\(\) is not allowed"):
        vu.LadderConfig(latent_dims=())
    with pytest.raises(ValueError, match="latent_dims=0 is not allowed"):
        vu.LadderConfig(latent_dims=(4, 0))
    with pytest.raises(ValueError, match="at most 4 stride-2 convolutions"):
        vu.LadderConfig(channels=(4,) * 5)
    with pytest.raises(ValueError, match="free_bits"):
        vu.LadderConfig(free_bits=float("nan"))
    with pytest.raises(ValueError, match=r"dropout=1\.0 is not allowed.*\[0, 1\)"):
        vu.LadderConfig(dropout=1.0)


def test_dropout_acts_in_training_only_and_keeps_the_weights_names():
    plain, dropped = _model(), _model(vu.LadderConfig(**{**TINY.to_dict(), "dropout": 0.5}))
    assert plain.state_dict().keys() == dropped.state_dict().keys()  # older checkpoints load into either
    dropped.load_state_dict(plain.state_dict())
    x = _images(8)

    def loss(model):
        return model.loss(x, generator=torch.Generator().manual_seed(1)).total
    with torch.no_grad():
        assert torch.equal(loss(plain.eval()), loss(dropped.eval()))  # evaluation, IWAE and sampling: no dropout
        assert not torch.equal(loss(plain.train()), loss(dropped.train()))


def test_a_checkpoint_written_before_dropout_existed_loads_without_it(tmp_path):
    path = vu.save_checkpoint(_model(), tmp_path / "ladder.pt")
    payload = torch.load(path, weights_only=True)
    del payload["model_config"]["dropout"]
    torch.save(payload, path)
    assert vu.load_checkpoint(path).config == TINY


def test_each_group_kl_is_torch_distributions_kl_and_the_loss_is_recon_plus_their_sum():
    model, x = _model(), _images(6)
    with torch.no_grad():
        for block in model.blocks:  # a prior that is not N(0, I), so that each group depends on those above
            block.prior[1].weight.normal_(0, 0.3)
        logits, groups = model._posterior_pass(x, torch.Generator().manual_seed(1))
        terms = model.loss(x, generator=torch.Generator().manual_seed(1))
        per_group = model.kl_per_group(x, torch.Generator().manual_seed(1))
    assert [g.z.shape for g in groups] == [(6, 2), (6, 3), (6, 4)] and per_group.shape == (6, 3)
    for g, group in enumerate(groups):
        q = Normal(group.q_mu, torch.exp(0.5 * group.q_logvar))
        p = Normal(group.p_mu, torch.exp(0.5 * group.p_logvar))
        torch.testing.assert_close(per_group[:, g], kl_divergence(q, p).sum(1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(group.z, group.q_mu + q.scale * group.eps)
    recon = vu.reconstruction_loss(logits, x).mean()
    torch.testing.assert_close(terms.total, recon + per_group.sum(1).mean())
    assert (per_group[:, 1:] > 0).all()


def test_importance_weights_with_k_1_are_the_elbo_in_expectation():
    model, x = _model(), _images(2)
    with torch.no_grad():
        log_w = model.log_importance_weights(x, 4000, torch.Generator().manual_seed(3))  # (2, 4000), k=1 draws
        elbo = -model.loss(x.repeat_interleave(4000, 0), generator=torch.Generator().manual_seed(4)).total
    error = log_w.std() / math.sqrt(log_w.numel())
    assert abs(log_w.mean() - elbo) < 4 * error + 0.05


def test_the_sub_pixel_decoder_of_the_evaluation_gives_the_plain_decoders_weights(monkeypatch):
    model, x = _model(), _images(3)
    with torch.no_grad():
        fast = model.log_importance_weights(x, 5, torch.Generator().manual_seed(7))
        assert model._iwae_output().factor == 4  # both transposed convolutions in sub-pixel form
        monkeypatch.setattr(model, "_iwae_output", lambda: UnshuffledDecoder(model.out, 1))
        plain = model.log_importance_weights(x, 5, torch.Generator().manual_seed(7))
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-3)


def test_temperature_0_samples_each_groups_prior_mean_and_no_groups_reconstruct_it():
    model, x = _model(), _images(3)
    with torch.no_grad():
        for block in model.blocks:
            block.prior[1].weight.normal_(0, 0.3)
            block.prior[1].bias.normal_(0, 0.3)
        _, groups = model._top_down(None, 3, model._noise(3, torch.Generator().manual_seed(2)), [0.0] * 3, 0)
        cold = model.sample(3, torch.Generator().manual_seed(0), temperature=0.0)
        none = model.reconstruct(x, groups=0)
        top = model.reconstruct(x, groups=1)
    for group in groups:
        torch.testing.assert_close(group.z, group.p_mu)
        assert group.p_mu.abs().max() > 0
    torch.testing.assert_close(none, cold)
    assert not torch.equal(top[0], top[1])  # the top group alone already follows the image (a little, untrained)


def test_training_resumes_bit_exactly_with_its_moving_average_and_the_checkpoint_loads_as_a_ladder(tmp_path):
    config = vu.TrainConfig(model=TINY, model_kind="ladder", epochs=2, batch_size=16, lr_schedule="constant",
                            ema_decay=0.999, grad_clip=200.0, skip_factor=10.0)
    straight = _model()
    vu.train(straight, blob_data(32), blob_data(16, seed=1), config, out_dir=tmp_path / "a", progress=False)
    vu.train(_model(), blob_data(32), blob_data(16, seed=1), vu.TrainConfig(**{**config.__dict__, "epochs": 1}),
             out_dir=tmp_path / "b", progress=False)
    resumed = _model()
    vu.train(resumed, blob_data(32), blob_data(16, seed=1), config, out_dir=tmp_path / "b",
             resume=tmp_path / "b" / "last.pt", progress=False)
    assert all(torch.equal(p, q) for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()))
    loaded = vu.load_checkpoint(tmp_path / "b" / "last.pt")
    assert isinstance(loaded, vu.LadderVAE) and loaded.config == TINY


def test_the_command_line_trains_the_binarized_recipe_and_scores_each_group(idx_root, tmp_path, capsys):
    main(["train", "--recipe", "ladder-binarized", "--data-dir", str(idx_root), "--epochs", "1", "--batch-size", "16",
          "--val-size", "16",
          "--latent-dims", "2", "3", "--width", "8", "--hidden-dim", "16", "--out", str(tmp_path / "run"), "--quiet"])
    assert json.loads(capsys.readouterr().out)["model_kind"] == "ladder"
    config = json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]
    assert config["binarize"] and config["ema_decay"] == 0.999
    checkpoint = str(tmp_path / "run" / "last.pt")
    assert main(["evaluate", checkpoint, "--data-dir", str(idx_root), "--iwae-k", "2", "--subset", "8"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["kl_per_group"]) == 2 and math.isfinite(result["iwae_nll"])
    assert main(["sample", checkpoint, "--out", str(tmp_path / "cold.png"), "--n", "4", "--temperature", "0.5"]) == 0


# ---- the ladder with a VampPrior on its top group -----------------------------------------------------------------

VAMP_TINY = vu.model_class("ladder-vamp").config_class(**TINY.to_dict(), pseudo_inputs=5)


def _vamp_model(config=VAMP_TINY):
    torch.manual_seed(0)
    return vu.model_class("ladder-vamp")(config)


def test_the_top_prior_is_the_mixture_of_the_pseudo_inputs_top_posteriors():
    from torch.distributions import Categorical, Independent, MixtureSameFamily

    model = _vamp_model()
    with torch.no_grad():
        mu, logvar = model.pseudo_posteriors()  # (5, 2)
        z = torch.randn(7, 2)
        mixture = MixtureSameFamily(Categorical(torch.ones(5)), Independent(Normal(mu, torch.exp(0.5 * logvar)), 1))
        torch.testing.assert_close(model.log_top_prior(z), mixture.log_prob(z), rtol=1e-5, atol=1e-5)
        features = model.bottom_up(torch.sigmoid(model.pseudo_logits))[0]  # the top block's posterior of each u_k
        _, group = model.blocks[0](model.top.expand(5, -1), features, torch.zeros(5, 2), posterior_mean=True)
    torch.testing.assert_close(mu, group.q_mu)


def test_the_top_groups_kl_is_the_one_sample_estimate_against_the_mixture_and_the_rest_stay_analytic():
    model, x = _vamp_model(), _images(4)
    ladder = vu.LadderVAE(TINY)
    ladder.load_state_dict({k: v for k, v in model.state_dict().items() if k != "pseudo_logits"})
    with torch.no_grad():
        _, groups = model._posterior_pass(x, torch.Generator().manual_seed(0))
        kls, plain = model._group_kls(groups), ladder._group_kls(groups)
        top = groups[0]
        q = Normal(top.q_mu, torch.exp(0.5 * top.q_logvar)).log_prob(top.z).sum(1)
    torch.testing.assert_close(kls[:, 1:], plain[:, 1:])
    torch.testing.assert_close(kls[:, 0], q - model.log_top_prior(top.z), rtol=1e-4, atol=1e-4)


def test_the_vamp_ladder_samples_and_resumes_bit_exactly(tmp_path):
    model = _vamp_model()
    a, b = (model.sample(3, torch.Generator().manual_seed(0), temperature=0.5) for _ in range(2))
    assert a.shape == (3, 1, 28, 28) and torch.equal(a, b)
    config = vu.TrainConfig(model=VAMP_TINY, model_kind="ladder-vamp", epochs=2, batch_size=16,
                            lr_schedule="constant", ema_decay=0.999, grad_clip=200.0, skip_factor=10.0)
    straight = _vamp_model()
    vu.train(straight, blob_data(32), None, config, out_dir=tmp_path / "a", progress=False)
    vu.train(_vamp_model(), blob_data(32), None, vu.TrainConfig(**{**config.__dict__, "epochs": 1}),
             out_dir=tmp_path / "b", progress=False)
    resumed = _vamp_model()
    vu.train(resumed, blob_data(32), None, config, out_dir=tmp_path / "b", resume=tmp_path / "b" / "last.pt",
             progress=False)
    assert all(torch.equal(p, q) for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()))
    loaded = vu.load_checkpoint(tmp_path / "b" / "last.pt")
    assert type(loaded).__name__ == "LadderVampVAE" and loaded.config == VAMP_TINY


def test_the_vamp_ladder_recipe_trains_and_scores_from_the_command_line(idx_root, tmp_path, capsys):
    main(["train", "--recipe", "ladder-vamp-binarized", "--data-dir", str(idx_root), "--epochs", "1",
          "--batch-size", "16", "--val-size", "16", "--latent-dims", "2", "3", "--width", "8", "--hidden-dim", "16",
          "--pseudo-inputs", "4", "--out", str(tmp_path / "run"), "--quiet"])
    assert json.loads(capsys.readouterr().out)["model_kind"] == "ladder-vamp"
    assert main(["evaluate", str(tmp_path / "run" / "last.pt"), "--data-dir", str(idx_root), "--iwae-k", "2",
                 "--subset", "8"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model_kind"] == "ladder-vamp" and len(result["kl_per_group"]) == 2
    assert math.isfinite(result["iwae_nll"])
