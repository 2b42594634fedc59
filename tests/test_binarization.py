"""Dynamic binarization: every training batch's pixels drawn afresh as Bernoulli(grey level)."""
import pytest
import torch

import vae_utils as vu
from vae_utils.data import bernoulli_pixels


def test_pixels_come_out_as_zeros_and_ones_in_the_input_shape_and_dtype():
    x = torch.rand(3, 1, 5, 5)  # 75 pixels: an odd count, half of one 64-bit word left over
    bits = bernoulli_pixels(x)
    assert bits.shape == x.shape and bits.dtype == x.dtype
    assert set(bits.unique().tolist()) <= {0.0, 1.0}


def test_black_stays_black_and_white_stays_white():
    torch.manual_seed(0)
    x = torch.cat([torch.zeros(500, 784), torch.ones(500, 784)])
    assert torch.equal(bernoulli_pixels(x), x)


def test_each_grey_level_turns_white_as_often_as_its_brightness():
    torch.manual_seed(0)
    p = torch.arange(256).float().div(255).repeat(4000, 1)  # 4,000 draws of every 8-bit grey level
    frequency = bernoulli_pixels(p).mean(0)
    error = (p[0] * (1 - p[0]) / len(p)).sqrt()
    assert ((frequency - p[0]).abs() <= 5 * error + 1e-9).all()


def test_neighbouring_pixels_are_independent():
    """The two halves of each 64-bit random word are neighbouring pixels; neither they nor pixels a word apart may
    be correlated."""
    torch.manual_seed(0)
    bits = bernoulli_pixels(torch.full((4000, 784), 0.5))
    for lag in (1, 2, 3):
        pairs = torch.stack([bits[:, :-lag].flatten(), bits[:, lag:].flatten()])
        correlation = torch.corrcoef(pairs)[0, 1]
        assert correlation.abs() < 5 / pairs.shape[1] ** 0.5, lag


def test_draws_follow_the_global_seed_and_differ_from_draw_to_draw():
    x = torch.rand(8, 1, 28, 28)
    torch.manual_seed(3)
    first, second = bernoulli_pixels(x), bernoulli_pixels(x)
    torch.manual_seed(3)
    assert torch.equal(bernoulli_pixels(x), first)
    assert not torch.equal(first, second)


def test_a_binarized_training_run_shows_the_model_binary_pixels_only(monkeypatch):
    seen = []
    loss = vu.VAE.loss

    def recording_loss(self, x, *args, **kwargs):
        seen.append(x.detach().clone())
        return loss(self, x, *args, **kwargs)

    monkeypatch.setattr(vu.VAE, "loss", recording_loss)
    grey = vu.ImageDataset(torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8), name="grey")
    config = vu.TrainConfig(epochs=1, batch_size=16, binarize=True, precision="fp32",
                            model=vu.VAEConfig(channels=(4, 8), hidden_dim=16, latent_dim=2))
    vu.train(vu.VAE(config.model), grey, None, config, progress=False)
    training = seen[:3]  # the three training batches; evaluation may follow
    assert len(training) == 3 and all(set(x.unique().tolist()) == {0.0, 1.0} for x in training)


@pytest.mark.parametrize("level", [0.1, 0.5, 0.9])
def test_a_batch_of_one_grey_level_is_white_in_that_share(level):
    torch.manual_seed(1)
    share = bernoulli_pixels(torch.full((256, 1, 28, 28), level)).mean().item()
    assert abs(share - level) < 5 * (level * (1 - level) / (256 * 784)) ** 0.5
