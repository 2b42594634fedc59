"""Training: it learns, it is reproducible, and it stops loudly on a non-finite loss."""
import math

import pytest
import torch

import vae_utils as vu
from conftest import SMALL, blob_data


def test_overfits_a_fixed_batch():
    ds = blob_data(64)
    model = vu.VAE(SMALL)
    config = vu.TrainConfig(epochs=40, batch_size=16, lr=3e-3, precision="fp32", model=SMALL, test_every_epoch=True)
    history = vu.train(model, ds, ds, config, progress=False)
    first, last = history[0]["test_neg_elbo"], history[-1]["test_neg_elbo"]
    start = vu.evaluate(vu.VAE(SMALL), ds)["neg_elbo"]
    entropy_floor = vu.reconstruction_loss(torch.logit(ds.images.float() / 255, eps=1e-6), ds.images.float() / 255).mean()
    assert last < first
    assert last - entropy_floor < 0.25 * (start - entropy_floor)  # removes most of the gap to the floor


def test_same_seed_gives_the_same_losses():
    def run():
        vu.set_seed(3)
        model = vu.VAE(SMALL)
        return vu.train(model, blob_data(), blob_data(), vu.TrainConfig(epochs=2, batch_size=16, seed=3, model=SMALL),
                        progress=False)
    a, b = run(), run()
    strip = lambda h: [{k: v for k, v in r.items() if k != "train_seconds"} for r in h]
    assert strip(a) == strip(b)


def test_a_fresh_run_does_not_depend_on_random_draws_made_before_it():
    def run(draws_before):
        vu.set_seed(0)
        model = vu.VAE(SMALL)
        torch.randn(draws_before)  # e.g. a notebook cell that ran the model once before training
        vu.train(model, blob_data(), None, vu.TrainConfig(epochs=1, batch_size=16, model=SMALL), progress=False)
        return model
    a, b = run(0), run(1000)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_history_records_train_and_validation_terms_per_epoch_and_the_test_terms_once():
    config = vu.TrainConfig(epochs=2, batch_size=16, model=SMALL, val_size=16)
    history = vu.train(vu.VAE(SMALL), blob_data(), blob_data(32), config, progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    for h in history:
        assert {"train_loss", "train_recon", "train_kl", "val_neg_elbo", "val_recon", "val_kl",
                "train_seconds"} <= set(h)
        assert h["train_loss"] == pytest.approx(h["train_recon"] + h["train_kl"])
        assert h["val_neg_elbo"] == pytest.approx(h["val_recon"] + h["val_kl"])
    chosen = history[vu.selected_epoch(history) - 1]
    assert [h for h in history if "test_neg_elbo" in h] == [chosen]  # scored once, on the chosen epoch
    assert chosen["test_neg_elbo"] == pytest.approx(chosen["test_recon"] + chosen["test_kl"])


def test_weight_decay_trains_with_adamw_and_pulls_the_weights_towards_zero():
    model = vu.VAE(SMALL)
    assert type(vu.training.make_optimizer(model, 1e-3)) is torch.optim.Adam  # 0: plain Adam, as before
    adamw = vu.training.make_optimizer(model, 1e-3, 0.1)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.1

    def weight_norm(weight_decay):
        vu.set_seed(0)
        model = vu.VAE(SMALL)
        config = vu.TrainConfig(epochs=2, batch_size=16, lr_schedule="constant", weight_decay=weight_decay, model=SMALL)
        vu.train(model, blob_data(), None, config, progress=False)
        return torch.cat([p.flatten() for p in model.parameters()]).norm()
    assert weight_norm(0.5) < weight_norm(0.0)


def test_subset_limits_the_training_images():
    model, seen = vu.VAE(SMALL), []
    loss = model.loss
    model.loss = lambda x, *args, **kwargs: (seen.append(len(x)), loss(x, *args, **kwargs))[1]
    config = vu.TrainConfig(epochs=1, batch_size=5, subset=12, model=SMALL)
    vu.train(model, blob_data(), None, config, progress=False)
    assert seen == [5, 5, 2]


def test_a_subset_larger_than_the_data_is_refused():
    with pytest.raises(ValueError, match="subset=100 but .* holds 64 images"):
        vu.train(vu.VAE(SMALL), blob_data(), None, vu.TrainConfig(subset=100, model=SMALL), progress=False)


def test_the_trainer_uses_the_models_own_loss_with_the_kl_warm_up():
    model, betas = vu.VAE(SMALL), []
    loss = model.loss

    def spy(x, config, epochs_done, **kwargs):
        betas.append(config.beta * vu.losses.kl_warmup_factor(epochs_done, config.kl_warmup_epochs))
        return loss(x, config, epochs_done, **kwargs)

    model.loss = spy
    config = vu.TrainConfig(epochs=2, batch_size=16, kl_warmup_epochs=2, beta=2.0, model=SMALL)
    vu.train(model, blob_data(), None, config, progress=False)
    assert betas == pytest.approx([2.0 * s / 8 for s in range(1, 9)])


def test_plain_torch_datasets_train_through_a_dataloader():
    ds = torch.utils.data.TensorDataset(torch.rand(20, 1, 28, 28), torch.zeros(20))
    history = vu.train(vu.VAE(SMALL), ds, ds, vu.TrainConfig(epochs=1, batch_size=8, model=SMALL), progress=False)
    assert math.isfinite(history[0]["test_neg_elbo"])


def test_data_of_the_wrong_shape_is_refused_before_training():
    with pytest.raises(ValueError, match=r"\(1, 28, 28\).*\(1, 32, 32\)"):
        vu.train(vu.VAE(SMALL, image_size=32), blob_data(), progress=False)


def test_a_non_finite_loss_stops_training_and_says_where(tmp_path):
    config = vu.TrainConfig(epochs=3, batch_size=16, lr=1e-3, model=SMALL)
    model = vu.VAE(SMALL)

    def poison(record):  # after epoch 1, break the weights as a too-high learning rate would
        with torch.no_grad():
            model.decoder.deconvs[-1].bias.fill_(float("nan"))

    with pytest.raises(vu.NonFiniteLossError, match=r"epoch 2, step 1/4.*learning rate.*last\.pt"):
        vu.train(model, blob_data(), None, config, out_dir=tmp_path, progress=False, on_epoch_end=poison)
    kept = vu.load_checkpoint(tmp_path / "last.pt")  # the last good checkpoint survives
    assert all(torch.isfinite(p).all() for p in kept.parameters())
