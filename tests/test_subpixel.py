"""The decoder's transposed convolutions in sub-pixel form compute the decoder's own numbers, on a smaller grid."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vae_utils as vu
from vae_utils.losses import reconstruction_loss
from vae_utils.subpixel import has_subpixel_form, unshuffled_conv, unshuffled_decoder


@pytest.mark.parametrize("c_in, c_out, r, side", [(5, 3, 1, 7), (4, 1, 2, 3), (2, 6, 2, 4), (3, 2, 4, 2)])
def test_an_unshuffled_convolution_is_the_transposed_convolution_on_unshuffled_maps(c_in, c_out, r, side):
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)
    h = torch.randn(2, c_in, side * r, side * r)
    weight, bias = unshuffled_conv(layer, r)
    with torch.no_grad():
        got = F.conv2d(F.pixel_unshuffle(h, r), weight, bias, padding=1)
        torch.testing.assert_close(got, F.pixel_unshuffle(layer(h), 2 * r), atol=1e-5, rtol=1e-5)


def test_gradients_reach_the_transposed_convolutions_own_parameters():
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(3, 2, 4, 2, 1)
    h = torch.randn(2, 3, 5, 5)
    weight, bias = unshuffled_conv(layer, 1)
    F.conv2d(h, weight, bias, padding=1).square().sum().backward()
    via_subpixel = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    layer(h).square().sum().backward()
    for got, want in zip(via_subpixel, (p.grad for p in layer.parameters())):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("layer", [nn.ConvTranspose2d(2, 2, 4, 2, 1, output_padding=1), nn.ConvTranspose2d(2, 2, 3, 2, 1),
                                   nn.Conv2d(2, 2, 3)])
def test_layers_without_a_sub_pixel_form_are_refused(layer):
    assert not has_subpixel_form(layer)
    with pytest.raises(ValueError, match="no sub-pixel form"):
        unshuffled_conv(layer, 1)


@pytest.mark.parametrize("config, factor", [
    (dict(), 4),  # 28 -> 14 -> 7: both stages run on the 7x7 grid
    (dict(res_blocks=1), 2),  # a residual block before the last stage: only the last one converts
    (dict(image_size=32, channels=(8, 8, 16)), 4),  # three stages: the last two (at most a factor of 4)
    (dict(image_size=14, channels=(8, 8)), 2),  # 14 -> 7 -> 3: the first stage pads its output (3 -> 7)
    (dict(image_size=27, channels=(8, 8)), 1),  # an odd image: the last stage pads too, nothing converts
    (dict(channels=(8,)), 2),
])
def test_an_unshuffled_decoder_is_the_decoder_followed_by_pixel_unshuffle(config, factor):
    torch.manual_seed(0)
    model = vu.VAE(latent_dim=4, hidden_dim=16, **config).eval()
    z = torch.randn(3, 4)
    decoder = unshuffled_decoder(model.decoder)
    assert decoder.factor == factor
    with torch.no_grad():
        torch.testing.assert_close(decoder.logits(z), F.pixel_unshuffle(model.decode_logits(z), factor),
                                   atol=1e-5, rtol=1e-5)


def _plain_log_weights(model, x, k, seed=1):
    """log w of k samples per image through the plain decoder and reconstruction_loss: the reference."""
    mu, logvar = model.encode(x)
    B, D = mu.shape
    eps = torch.randn((B, k, D), generator=torch.Generator().manual_seed(seed))
    z = mu.unsqueeze(1) + torch.exp(0.5 * logvar).unsqueeze(1) * eps  # (B, k, D)
    log_px = -reconstruction_loss(model.decode_logits(z.reshape(B * k, D)), x.repeat_interleave(k, 0),
                                  model.config.likelihood).view(B, k)
    return log_px - 0.5 * z.pow(2).sum(-1) + 0.5 * (eps.pow(2) + logvar.unsqueeze(1)).sum(-1)


@pytest.mark.parametrize("likelihood, channels", [("bernoulli", 1), ("continuous-bernoulli", 1), ("gaussian", 1),
                                                  ("discretized-logistic", 3)])
@pytest.mark.parametrize("res_blocks", [0, 1])
def test_importance_weights_equal_the_plain_decoders_for_every_likelihood(likelihood, channels, res_blocks):
    torch.manual_seed(0)
    model = vu.VAE(in_channels=channels, image_size=16, channels=(8, 8), latent_dim=4, hidden_dim=16,
                   likelihood=likelihood, res_blocks=res_blocks).eval()
    x = torch.randint(0, 256, (3, channels, 16, 16)).float() / 255
    with torch.no_grad():
        got = vu.log_importance_weights(model, x, 5, torch.Generator().manual_seed(1))
        torch.testing.assert_close(got, _plain_log_weights(model, x, 5), atol=1e-3, rtol=1e-5)


def test_importance_weights_stay_exact_where_bernoulli_logits_saturate():
    torch.manual_seed(0)
    model = vu.VAE(image_size=16, channels=(8, 8), latent_dim=4, hidden_dim=16).eval()
    with torch.no_grad():
        model.decoder.deconvs[-1].weight.mul_(3000)  # logits of +-100 and more
        x = (torch.rand(2, 1, 16, 16) > 0.5).float()
        assert model.decode_logits(model.encode(x)[0]).abs().max() > 100
        got = vu.log_importance_weights(model, x, 4, torch.Generator().manual_seed(1))
        torch.testing.assert_close(got, _plain_log_weights(model, x, 4), atol=1e-2, rtol=1e-5)
