"""The hierarchical VAE (NVAE/VDVAE form): its KL terms, its bound, its samples, and training that stays stable."""
import json
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import vae_utils as vu
from vae_utils.cli import main
from vae_utils.models.hvae import gaussian_kl

from conftest import blob_data, write_cifar10

TINY = vu.HVAEConfig(groups=(1, 2), widths=(8, 6), z_channels=2)  # 7x7 then 14x14: three groups


def _model(config: vu.HVAEConfig = TINY) -> vu.HVAE:
    torch.manual_seed(0)
    return vu.HVAE(config)


def _images(n: int) -> torch.Tensor:
    data = blob_data(n)
    return torch.stack([data[i][0] for i in range(n)]).round()  # binary pixels: a normalised Bernoulli


@pytest.mark.parametrize("image_size, in_channels", [(28, 1), (32, 3), (64, 3)])
def test_the_presets_build_their_resolutions_and_fit_the_image(image_size, in_channels):
    config = vu.HVAEConfig.for_images(image_size, in_channels)
    assert config.resolutions[-1] == image_size // 2 and len(config.resolutions) == len(config.groups)
    assert config.resolutions == sorted(config.resolutions)  # coarsest first
    model = vu.HVAE(config)
    x = torch.rand(2, in_channels, image_size, image_size).mul(255).round().div(255)
    with torch.no_grad():
        terms = model.loss(x)
    assert math.isfinite(terms.total.item()) and model.sample(2).shape == x.shape


def test_a_config_whose_groups_do_not_fit_the_image_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"groups=\(1, 1, 1, 1, 1, 1\) is not allowed: expected at most 4 resolutions"):
        vu.HVAEConfig(image_size=28, groups=(1,) * 6, widths=(8,) * 6)
    with pytest.raises(ValueError, match="one width per resolution"):
        vu.HVAEConfig(groups=(1, 1), widths=(8,))
    with pytest.raises(ValueError, match="free_bits"):
        vu.HVAEConfig(free_bits=-1.0)


def test_each_group_kl_is_torch_distributions_kl_and_the_loss_is_recon_plus_their_sum():
    model, x = _model(), _images(6)
    with torch.no_grad():
        logits, groups = model._posterior_pass(x, torch.Generator().manual_seed(1))
        terms = model.loss(x, generator=torch.Generator().manual_seed(1))
        per_group = model.kl_per_group(x, torch.Generator().manual_seed(1))
    assert len(groups) == model.n_groups == 3 and per_group.shape == (6, 3)
    for g, group in enumerate(groups):
        q = Normal(group.q_mu, torch.exp(0.5 * group.q_logvar))
        p = Normal(group.p_mu, torch.exp(0.5 * group.p_logvar))
        torch.testing.assert_close(per_group[:, g], kl_divergence(q, p).flatten(1).sum(1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(group.z, group.q_mu + q.scale * group.eps)
    recon = vu.reconstruction_loss(logits, x).mean()
    torch.testing.assert_close(terms.recon, recon)
    torch.testing.assert_close(terms.kl, per_group.sum(1).mean())
    torch.testing.assert_close(terms.total, recon + per_group.sum(1).mean())


def test_the_closed_form_kl_is_zero_for_equal_gaussians_and_positive_otherwise():
    mu, logvar = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(gaussian_kl(mu, logvar, mu, logvar), torch.zeros(3, 4))
    assert (gaussian_kl(mu, logvar, mu + 0.1, logvar) > 0).all()


def test_importance_weights_with_k_1_are_the_elbo_in_expectation_and_a_seed_repeats_them():
    model, x = _model(), _images(2)
    with torch.no_grad():
        log_w = model.log_importance_weights(x, 4000, torch.Generator().manual_seed(3))  # (2, 4000), k=1 draws
        elbo = -model.loss(x.repeat_interleave(4000, 0), generator=torch.Generator().manual_seed(4)).total
        chunked = model.log_importance_weights(x, 6, torch.Generator().manual_seed(5), chunk_images=4)
        again = model.log_importance_weights(x, 6, torch.Generator().manual_seed(5), chunk_images=4)
    error = log_w.std() / math.sqrt(log_w.numel())  # the single-sample bound's mean, a Monte Carlo KL
    assert abs(log_w.mean() - elbo) < 4 * error + 0.05
    assert chunked.shape == (2, 6) and torch.equal(chunked, again)
    nll = vu.iwae_nll(model, vu.ImageDataset((x * 255).to(torch.uint8)), k=1)["iwae_nll"]
    assert math.isfinite(nll)


def test_temperature_0_samples_each_groups_prior_mean():
    model = _model()
    with torch.no_grad():  # a prior that is not N(0, I), so that its mean is not zero
        for level in model.levels:
            for block in level:
                block.prior[1].weight.normal_(0, 0.3)
                block.prior[1].bias.normal_(0, 0.3)
        a = model.sample(3, torch.Generator().manual_seed(0), temperature=0.0)
        b = model.sample(3, torch.Generator().manual_seed(1), temperature=0.0)
        _, groups = model._top_down(None, 3, model._noise(3, torch.Generator().manual_seed(2)), [0.0] * 3, 0)
        warm = model.sample(3, torch.Generator().manual_seed(0), temperature=[0.0, 0.0, 1.0])
    torch.testing.assert_close(a, b)
    for group in groups:
        torch.testing.assert_close(group.z, group.p_mu)
        assert group.p_mu.abs().max() > 0
    assert not torch.allclose(warm[0], warm[1])  # the bottom group alone still varies


def test_bad_temperatures_and_group_counts_are_refused_before_any_work():
    model = _model()
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature="):
            model.sample(2, temperature=bad)
    with pytest.raises(ValueError, match="one per group"):
        model.sample(2, temperature=[1.0, 1.0])
    with pytest.raises(ValueError, match="groups=4"):
        model.reconstruct(_images(2), groups=4)


def test_reconstructions_from_no_group_are_the_prior_mean_and_from_all_groups_follow_the_image():
    model, x = _model(), _images(4)
    with torch.no_grad():
        none = model.reconstruct(x, groups=0)
        full = model.reconstruct(x)
    torch.testing.assert_close(none, model.sample(4, temperature=0.0))
    assert not torch.allclose(full[0], full[1])


def test_the_discretized_mixture_of_logistics_is_normalised_over_the_256_levels():
    for channels in (1, 3):
        params = torch.randn(1, vu.losses.decoder_channels("discretized-mix-logistic", channels), 1, 1)
        levels = torch.arange(256.0) / 255
        if channels == 1:
            grid = levels.view(256, 1, 1, 1)
        else:  # every (r, g, b) on a coarse sub-grid would be 16M values: check the marginal sums instead
            grid = torch.stack(torch.meshgrid(levels, levels[:1], levels[:1], indexing="ij"), -1).view(256, 3, 1, 1)
        log_p = vu.losses.discretized_mix_logistic_log_prob(grid, params.expand(len(grid), -1, -1, -1))
        if channels == 1:
            torch.testing.assert_close(log_p.exp().sum(), torch.tensor(1.0), rtol=1e-4, atol=1e-4)
        else:
            assert (log_p.exp().sum() <= 1.0001) and torch.isfinite(log_p).all()


def test_one_mixture_component_is_the_single_discretized_logistic():
    x = torch.randint(0, 256, (2, 1, 4, 4)) / 255.0
    mean, log_scale = torch.randn(2, 1, 4, 4) * 0.5, torch.randn(2, 1, 4, 4) * 0.5 - 2
    K = vu.losses.MIX_COMPONENTS
    logits = torch.full((2, K, 4, 4), -1e4)
    logits[:, 0] = 0  # all weight on the first component
    params = torch.cat([logits, mean.expand(2, K, 4, 4), log_scale.expand(2, K, 4, 4)], 1)
    torch.testing.assert_close(vu.losses.discretized_mix_logistic_log_prob(x, params),
                               vu.losses.discretized_logistic_log_prob(x, mean, log_scale)[:, 0])
    mean_image = vu.losses.mean_image(params, "discretized-mix-logistic")
    torch.testing.assert_close(mean_image, (mean.clamp(-1, 1) + 1) / 2)


def _config(**fields) -> vu.TrainConfig:
    defaults = dict(epochs=2, batch_size=16, lr_schedule="constant", ema_decay=0.9, grad_clip=100.0, skip_factor=10.0)
    return vu.TrainConfig(**{**defaults, **fields}, model=TINY, model_kind="hvae")


def test_it_trains_resumes_bit_exactly_with_its_moving_average_and_loads_the_average(tmp_path):
    config = _config()
    straight = _model()
    vu.train(straight, blob_data(64), blob_data(32, seed=1), config, out_dir=tmp_path / "a", progress=False)
    vu.train(_model(), blob_data(64), blob_data(32, seed=1), vu.TrainConfig(**{**config.__dict__, "epochs": 1}),
             out_dir=tmp_path / "b", progress=False)
    resumed = _model()
    history = vu.train(resumed, blob_data(64), blob_data(32, seed=1), config, out_dir=tmp_path / "b",
                       resume=tmp_path / "b" / "last.pt", progress=False)
    assert all(torch.equal(p, q) for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()))
    saved = vu.read_checkpoint(tmp_path / "b" / "last.pt")
    assert saved["ema_updates"] == 8 and {"grad_norm", "skipped_updates"} <= set(history[-1])
    averaged, raw = vu.load_checkpoint(tmp_path / "b" / "last.pt"), vu.load_checkpoint(tmp_path / "b" / "last.pt",
                                                                                       ema=False)
    assert all(torch.equal(p, q) for p, q in zip(averaged.state_dict().values(), resumed.state_dict().values()))
    assert not all(torch.equal(p, q) for p, q in zip(averaged.state_dict().values(), raw.state_dict().values()))
    # the test figures of each epoch are the average's: scoring the loaded average gives them again
    assert vu.evaluate(averaged, blob_data(32, seed=1))["neg_elbo"] == pytest.approx(history[-1]["test_neg_elbo"])


def test_the_moving_average_warms_up_so_a_short_run_is_not_its_first_weights(tmp_path):
    assert vu.training.ema_decay_at(0.999, 0) == pytest.approx(0.1) and vu.training.ema_decay_at(0.999, 10**6) == 0.999
    initial = _model().state_dict()
    vu.train(_model(), blob_data(64), None, _config(epochs=3, ema_decay=0.999), out_dir=tmp_path, progress=False)
    average = vu.load_checkpoint(tmp_path / "last.pt").state_dict()  # 12 updates
    raw = vu.load_checkpoint(tmp_path / "last.pt", ema=False).state_dict()

    def distance(a, b):
        return sum((a[k].float() - b[k].float()).norm() ** 2 for k in a) ** 0.5

    # a fixed decay of 0.999 would keep 99% of the initial weights after 12 updates; warmed up, the average
    # follows the run
    assert distance(average, raw) < distance(average, initial)


def test_updates_with_a_gradient_far_above_the_running_scale_are_skipped_and_counted(monkeypatch):
    norms = iter([1.0, 1.0, 50.0] + [1.0] * 100)
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, max_norm: (clip(params, max_norm),
                                                                                     torch.tensor(next(norms)))[1])
    history = vu.train(_model(), blob_data(64), None, _config(epochs=1), progress=False)
    assert history[0]["skipped_updates"] == 1 and history[0]["grad_norm"] == pytest.approx(1.0)


def test_a_run_whose_updates_are_all_skipped_stops_with_a_clear_message(monkeypatch, tmp_path):
    norms = iter([1.0] + [1e6] * 1000)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, max_norm: torch.tensor(next(norms)))
    with pytest.raises(vu.UpdatesSkippedError, match="100 updates in a row skipped"):
        vu.train(_model(), blob_data(128), None, _config(epochs=1, batch_size=1), progress=False)


@pytest.mark.parametrize("field, value", [("ema_decay", 1.0), ("ema_decay", -0.1), ("grad_clip", -1.0),
                                          ("skip_factor", 0.5), ("grad_clip", float("nan"))])
def test_stability_settings_out_of_range_are_refused_in_one_line(field, value):
    with pytest.raises(ValueError, match=f"{field}="):
        vu.TrainConfig(**{field: value})


def test_the_report_gives_the_kl_of_each_group_and_the_active_groups():
    model = _model()
    report = vu.evaluation_report(model, blob_data(32, seed=1), iwae_k=3)
    assert len(report["kl_per_group"]) == 3 and 0 <= report["active_groups"] <= 3
    assert sum(report["kl_per_group"]) == pytest.approx(report["kl"], rel=1e-3)
    assert "active groups" in vu.format_report(report) and "iwae_nll" in report


def test_the_command_line_trains_evaluates_and_samples_at_a_temperature(idx_root, tmp_path, capsys):
    main(["train", "--model", "hvae", "--data-dir", str(idx_root), "--epochs", "1", "--batch-size", "16",
          "--widths", "8", "8", "--z-channels", "2", "--out", str(tmp_path / "run"), "--quiet"])
    assert json.loads(capsys.readouterr().out)["model_kind"] == "hvae"
    config = json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]
    assert config["ema_decay"] == 0.999 and config["skip_factor"] == 10.0  # the family's training defaults
    checkpoint = str(tmp_path / "run" / "last.pt")
    assert main(["evaluate", checkpoint, "--data-dir", str(idx_root), "--iwae-k", "2", "--subset", "8"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["kl_per_group"]) == 4 and "iwae_nll" in result
    assert main(["sample", checkpoint, "--out", str(tmp_path / "cold.png"), "--n", "4", "--temperature", "0.5"]) == 0
    assert json.loads(capsys.readouterr().out)["temperature"] == 0.5


def test_the_colour_preset_trains_on_cifar10_files_in_their_real_format_and_scores_bits_per_dim(tmp_path, monkeypatch,
                                                                                               capsys):
    write_cifar10(tmp_path / "root", monkeypatch)  # CIFAR-10's pickled batches in miniature
    main(["train", "--model", "hvae", "--dataset", "cifar10", "--data-dir", str(tmp_path / "root"), "--epochs", "1",
          "--batch-size", "8", "--widths", "8", "8", "8", "--z-channels", "2", "--cells", "1", "--out",
          str(tmp_path / "run"), "--quiet"])
    capsys.readouterr()
    model = vu.load_checkpoint(tmp_path / "run" / "last.pt")
    assert model.likelihood == "discretized-mix-logistic" and model.config.resolutions == [4, 8, 16]
    assert main(["evaluate", str(tmp_path / "run" / "last.pt"), "--data-dir", str(tmp_path / "root"), "--iwae-k",
                 "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0 < report["bits_per_dim"] < 16 and len(report["kl_per_group"]) == model.n_groups == 8
