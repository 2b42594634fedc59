"""The decoder's last transposed convolutions in sub-pixel form: the same numbers, faster, for the IWAE evaluation.

A ConvTranspose2d(kernel 4, stride 2, padding 1) equals a 3x3 convolution with 4x the output channels followed by
pixel_shuffle(2) (Shi et al., 2016). Keeping the feature maps pixel-unshuffled ("space to depth") lets the last
stages of a decoder run as plain convolutions at a lower resolution, without the transposed convolution's scatter
and without any shuffle: the likelihood summed over an image is the same once the image is unshuffled too.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAX_FACTOR = 4  # unshuffled stages cost 2.25 r^2 times the transposed convolution's multiply-adds: stop at r = 2
# Taps of a ConvTranspose2d(4, 2, 1) that reach output row 2m + phase, by the input row they read (m - 1, m, m + 1
# -> taps 0, 1, 2 of a 3x3 convolution with padding 1).
_TAPS = {0: {0: 3, 1: 1}, 1: {1: 2, 2: 0}}  # phase -> {3x3 tap: 4x4 kernel tap}


class UnshuffledDecoder(NamedTuple):
    """logits(z) = pixel_unshuffle(decoder(z), factor); images go through pixel_unshuffle(x, factor) to match."""

    logits: Callable[[Tensor], Tensor]
    factor: int


def has_subpixel_form(layer: nn.Module) -> bool:
    """True for a ConvTranspose2d(kernel 4, stride 2, padding 1) with no output padding (even sizes double)."""
    return (isinstance(layer, nn.ConvTranspose2d) and layer.kernel_size == (4, 4) and layer.stride == (2, 2)
            and layer.padding == (1, 1) and layer.output_padding == (0, 0) and layer.dilation == (1, 1)
            and layer.groups == 1)


def unshuffled_conv(layer: nn.ConvTranspose2d, r: int) -> tuple[Tensor, Optional[Tensor]]:
    """(weight, bias) of the 3x3 convolution that maps pixel_unshuffle(h, r) to pixel_unshuffle(layer(h), 2r).

    A gather from the layer's own parameters, so gradients flow back to them: training can run this form too.
    """
    if not has_subpixel_form(layer):
        raise ValueError(f"{layer} has no sub-pixel form: expected kernel 4, stride 2, padding 1, no output padding")
    c_in, c_out = layer.weight.shape[:2]  # (C_in, C_out, 4, 4)
    index = _unshuffled_index(c_in, c_out, r).to(layer.weight.device)
    weight = torch.cat([layer.weight.flatten(), layer.weight.new_zeros(1)])[index]  # the last entry: no tap
    bias = None if layer.bias is None else layer.bias.repeat_interleave(4 * r * r)
    return weight, bias


@functools.lru_cache(maxsize=64)
def _unshuffled_index(c_in: int, c_out: int, r: int) -> Tensor:
    """For each weight of the unshuffled 3x3 convolution, its entry in the flattened (C_in, C_out, 4, 4) kernel.

    Output row Y = 2y + a of the layer reads input rows y - 1, y, y + 1 through the taps of phase a; with input and
    output unshuffled, row y + d lies in block row (Y // 2 + d) // r at sub-row (Y // 2 + d) % r. Channels follow
    pixel_unshuffle's order (c * r^2 + sub_row * r + sub_col); entries no tap reaches point at the zero appended
    after the kernel.
    """
    R = 2 * r
    kernel = torch.arange(c_in * c_out * 16).view(c_in, c_out, 4, 4)
    index = torch.full((c_out, R, R, c_in, r, r, 3, 3), c_in * c_out * 16)
    for Y in range(R):
        for t, ky in _TAPS[Y % 2].items():
            block_y, sub_y = divmod(Y // 2 + t - 1, r)
            for X in range(R):
                for u, kx in _TAPS[X % 2].items():
                    block_x, sub_x = divmod(X // 2 + u - 1, r)
                    index[:, Y, X, :, sub_y, sub_x, block_y + 1, block_x + 1] = kernel[:, :, ky, kx].T
    return index.reshape(c_out * R * R, c_in * r * r, 3, 3)


def unshuffled_decoder(decoder: nn.Module) -> UnshuffledDecoder:
    """The decoder with its trailing transposed convolutions in sub-pixel form (weights taken now: rebuild after
    training). Stages convert from the last one back while only an activation separates them, up to MAX_FACTOR;
    a decoder whose last layer has no sub-pixel form comes back as it is, with factor 1."""
    if not isinstance(getattr(decoder, "deconvs", None), nn.Sequential):  # not a transposed-conv decoder (an MLP)
        return UnshuffledDecoder(decoder, 1)
    layers = list(decoder.deconvs)
    convs: list[nn.Module] = []  # the transposed convolutions to convert, first to last
    factor, i = 1, len(layers) - 1
    while i >= 0 and has_subpixel_form(layers[i]) and 2 * factor <= MAX_FACTOR:
        convs.insert(0, layers[i])
        factor, i = 2 * factor, i - 1
        if i < 1 or not isinstance(layers[i], (nn.SiLU, nn.ReLU)) or not has_subpixel_form(layers[i - 1]):
            break  # a residual block or the head comes first: stop here
        i -= 1  # skip the activation, keep it in the middle
    if not convs:
        return UnshuffledDecoder(decoder, 1)
    prefix = nn.Sequential(*layers[:len(layers) - 2 * len(convs) + 1])  # everything before the first converted one
    r, steps = 1, []
    for layer in convs:
        steps.append(unshuffled_conv(layer, r))
        r *= 2
    activation = layers[-2] if len(convs) > 1 else None

    def logits(z: Tensor) -> Tensor:
        h = decoder.head(z).view(-1, decoder.channels, decoder.side, decoder.side)  # (B, C_last, s, s)
        h = prefix(h)
        for j, (weight, bias) in enumerate(steps):
            h = F.conv2d(activation(h) if j else h, weight, bias, padding=1)
        return h  # (B, C * factor^2, H / factor, W / factor)

    return UnshuffledDecoder(logits, factor)
