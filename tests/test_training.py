"""Training: it learns, it is reproducible, and it stops loudly on a non-finite loss."""
import math

import pytest
import torch

import vae_utils as vu

SMALL = vu.VAEConfig(latent_dim=4, channels=(8, 16), hidden_dim=32)


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth blobs rather than noise, so that there is something to learn
    base = torch.rand(4, 1, 7, 7, generator=g)
    imgs = torch.nn.functional.interpolate(base, size=28, mode="bilinear")[torch.arange(n) % 4]
    return vu.ImageDataset((imgs * 255).round().to(torch.uint8), torch.arange(n) % 4)


def test_overfits_a_fixed_batch():
    ds = _data(64)
    model = vu.VAE(SMALL)
    config = vu.TrainConfig(epochs=40, batch_size=16, lr=3e-3, precision="fp32", model=SMALL)
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
        return vu.train(model, _data(), _data(), vu.TrainConfig(epochs=2, batch_size=16, seed=3, model=SMALL),
                        progress=False)
    a, b = run(), run()
    strip = lambda h: [{k: v for k, v in r.items() if k != "train_seconds"} for r in h]
    assert strip(a) == strip(b)


def test_history_records_train_and_test_terms_per_epoch():
    history = vu.train(vu.VAE(SMALL), _data(), _data(32), vu.TrainConfig(epochs=2, batch_size=16, model=SMALL),
                       progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    for h in history:
        assert {"train_loss", "train_recon", "train_kl", "test_neg_elbo", "test_recon", "test_kl",
                "train_seconds"} <= set(h)
        assert h["train_loss"] == pytest.approx(h["train_recon"] + h["train_kl"])
        assert h["test_neg_elbo"] == pytest.approx(h["test_recon"] + h["test_kl"])


def test_subset_limits_the_training_images():
    seen = []
    config = vu.TrainConfig(epochs=1, batch_size=5, subset=12, model=SMALL)
    vu.train(vu.VAE(SMALL), _data(), None, config, progress=False, on_epoch_end=seen.append)
    assert len(seen) == 1


def test_plain_torch_datasets_train_through_a_dataloader():
    ds = torch.utils.data.TensorDataset(torch.rand(20, 1, 28, 28), torch.zeros(20))
    history = vu.train(vu.VAE(SMALL), ds, ds, vu.TrainConfig(epochs=1, batch_size=8, model=SMALL), progress=False)
    assert math.isfinite(history[0]["test_neg_elbo"])


def test_data_of_the_wrong_shape_is_refused_before_training():
    with pytest.raises(ValueError, match=r"\(1, 28, 28\).*\(1, 32, 32\)"):
        vu.train(vu.VAE(SMALL, image_size=32), _data(), progress=False)


def test_a_non_finite_loss_stops_training_and_says_where(tmp_path):
    config = vu.TrainConfig(epochs=3, batch_size=16, lr=1e-3, model=SMALL)
    model = vu.VAE(SMALL)

    def poison(record):  # after epoch 1, break the weights as a too-high learning rate would
        with torch.no_grad():
            model.decoder.deconvs[-1].bias.fill_(float("nan"))

    with pytest.raises(vu.NonFiniteLossError, match=r"epoch 2, step 1/4.*learning rate.*last\.pt"):
        vu.train(model, _data(), None, config, out_dir=tmp_path, progress=False, on_epoch_end=poison)
    kept = vu.load_checkpoint(tmp_path / "last.pt")  # the last good checkpoint survives
    assert all(torch.isfinite(p).all() for p in kept.parameters())


def test_evaluate_is_deterministic_and_consistent():
    model, ds = vu.VAE(SMALL), _data()
    a, b = vu.evaluate(model, ds, batch_size=7), vu.evaluate(model, ds, batch_size=7)
    assert a == b
    assert a["neg_elbo"] == pytest.approx(a["recon"] + a["kl"])
    assert model.training  # evaluate leaves the mode as it found it


def test_interpolation_starts_and_ends_at_the_reconstructions():
    model = vu.VAE(SMALL).eval()
    x = _data(2)[0][0], _data(2)[1][0]
    frames = vu.interpolate(model, x[0], x[1], steps=7)
    assert frames.shape == (7, 1, 28, 28)
    torch.testing.assert_close(frames[0], model.reconstruct(x[0][None])[0])
    torch.testing.assert_close(frames[-1], model.reconstruct(x[1][None])[0])


def test_interpolation_needs_two_steps_and_single_images():
    model, x = vu.VAE(SMALL), torch.rand(1, 28, 28)
    with pytest.raises(ValueError, match="steps"):
        vu.interpolate(model, x, x, steps=1)
    with pytest.raises(ValueError, match="one image"):
        vu.interpolate(model, torch.rand(2, 1, 28, 28), x)
