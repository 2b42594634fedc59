"""The model's contract: shapes, value ranges, sampling, gradients and clear errors on bad input."""
import pytest
import torch

import vae_utils as vu


@pytest.mark.parametrize("image_size", [28, 32, 64])
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("latent_dim", [2, 16])
def test_shapes_for_every_supported_size_and_channel_count(image_size, in_channels, latent_dim):
    model = vu.VAE(in_channels=in_channels, image_size=image_size, latent_dim=latent_dim)
    x = torch.rand(3, in_channels, image_size, image_size)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, latent_dim)
    z = model.reparameterize(mu, logvar)
    assert z.shape == (3, latent_dim)
    x_hat = model.decode(z)
    assert x_hat.shape == x.shape
    assert model(x).x_logits.shape == x.shape
    assert model.sample(5).shape == (5, in_channels, image_size, image_size)


@pytest.mark.parametrize("channels", [(8,), (8, 16), (8, 16, 32), (8, 16, 32, 64)])
@pytest.mark.parametrize("hidden_dim", [0, 32])
def test_any_depth_and_head_restores_the_image_size(channels, hidden_dim):
    model = vu.VAE(image_size=28, channels=channels, hidden_dim=hidden_dim, latent_dim=4)
    assert model.decode(torch.randn(2, 4)).shape == (2, 1, 28, 28)


def test_decoded_images_and_samples_lie_in_unit_range():
    model = vu.VAE(latent_dim=4)
    assert 0 <= model.decode(10 * torch.randn(16, 4)).min() and model.decode(10 * torch.randn(16, 4)).max() <= 1
    samples = model.sample(16)
    assert samples.min() >= 0 and samples.max() <= 1


def test_reparameterize_has_the_posterior_moments():
    model = vu.VAE(latent_dim=3)
    mu = torch.tensor([[1.0, -2.0, 0.5]]).expand(200_000, 3)
    logvar = torch.log(torch.tensor([[0.25, 1.0, 4.0]])).expand(200_000, 3)
    z = model.reparameterize(mu, logvar)
    torch.testing.assert_close(z.mean(0), mu[0], atol=0.02, rtol=0)
    torch.testing.assert_close(z.var(0), logvar[0].exp(), atol=0.03, rtol=0.02)


def test_sampling_with_a_seeded_generator_is_repeatable():
    model = vu.VAE(latent_dim=4)
    a = model.sample(4, generator=torch.Generator().manual_seed(1))
    b = model.sample(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_gradients_reach_every_parameter():
    model = vu.VAE(latent_dim=4, channels=(8, 16), hidden_dim=32)
    x = torch.rand(4, 1, 28, 28)
    vu.vae_loss(model(x), x).total.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (2, 1, 32, 32), (1, 28, 28), (2, 1, 28, 27)])
def test_wrong_image_shape_is_a_value_error_naming_both_shapes(shape):
    model = vu.VAE(in_channels=1, image_size=28)
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\).*" + str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")):
        model.encode(torch.rand(*shape))


def test_integer_images_are_refused_with_a_hint():
    with pytest.raises(ValueError, match="255"):
        vu.VAE().encode(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))


def test_wrong_latent_shape_is_a_value_error():
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        vu.VAE(latent_dim=16).decode(torch.randn(2, 8))


def test_config_overrides_and_parameter_count_are_deterministic():
    a, b = vu.VAE(vu.VAEConfig(latent_dim=8)), vu.VAE(latent_dim=8)
    assert a.config == b.config
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    assert vu.VAE(a.config, latent_dim=4).latent_dim == 4


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_images_of_another_float_type_are_refused_with_a_hint(dtype):
    with pytest.raises(ValueError, match=r"float32 .*x\.to\(torch\.float32\)"):
        vu.VAE().encode(torch.zeros(1, 1, 28, 28, dtype=dtype))


def test_a_model_too_large_for_memory_is_a_value_error_with_its_size():
    config = vu.VAEConfig(image_size=512, channels=(4096,), hidden_dim=65536, latent_dim=4096)  # ~17 TiB of weights
    with pytest.raises(ValueError, match=r"needs [\d,]+ parameters \([\d.]+ GiB in fp32\)"):
        vu.VAE(config)


@pytest.mark.parametrize("name, side", [("cifar10", 4), ("svhn", 4), ("celeba", 4), ("fashion-mnist", 7)])
def test_presets_scale_the_architecture_with_the_image(name, side):
    config = vu.VAEConfig.for_dataset(name)
    model = vu.VAE(config)
    assert model.decoder.side == side
    x = torch.rand(2, *model.image_shape)
    assert model(x).x_logits.shape[2:] == x.shape[2:] and torch.isfinite(model.loss(x).total)
    assert vu.TrainConfig.for_dataset(name).model == config


def test_residual_blocks_add_depth_and_round_trip_through_a_checkpoint(tmp_path):
    plain, deep = vu.VAE(latent_dim=4), vu.VAE(latent_dim=4, res_blocks=2)
    assert sum(p.numel() for p in deep.parameters()) > sum(p.numel() for p in plain.parameters())
    path = vu.save_checkpoint(deep, tmp_path / "deep.pt")
    assert vu.load_checkpoint(path).config.res_blocks == 2


def test_a_checkpoint_written_before_residual_blocks_existed_still_loads(tmp_path):
    path = vu.save_checkpoint(vu.VAE(latent_dim=4), tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    del payload["model_config"]["res_blocks"]
    torch.save(payload, path)
    assert vu.load_checkpoint(path).config.res_blocks == 0


def test_an_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match=r"presets exist for \['celeba', 'cifar10'"):
        vu.VAEConfig.for_dataset("imagenet")
