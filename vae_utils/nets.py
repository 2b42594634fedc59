"""Building blocks that model families share: residual blocks, gated dense layers, stride-2 feature sizes, the
input check."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn


def feature_sizes(image_size: int, n_layers: int) -> list[int]:
    """Spatial size after each stride-2 conv (kernel 4, padding 1 floors n/2), input size first."""
    sizes = [image_size]
    for _ in range(n_layers):
        sizes.append(sizes[-1] // 2)
    return sizes


class ResBlock(nn.Module):
    """x + conv3x3(SiLU(conv3x3(SiLU(x)))): depth at one resolution, the shape unchanged."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.SiLU(), nn.Conv2d(channels, channels, 3, 1, 1),
                                  nn.SiLU(), nn.Conv2d(channels, channels, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class DenseResBlock(nn.Module):
    """x + linear(dropout(SiLU(linear(SiLU(x))))): ResBlock's form for vectors (the ladder's top-down cells), with
    dropout (off at p=0, and in eval mode) between its two layers, as in wide ResNets."""

    def __init__(self, width: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(OrderedDict([  # "1" and "3": the weights' names of older checkpoints
            ("0", nn.SiLU()), ("1", nn.Linear(width, width)), ("2", nn.SiLU()), ("drop", dropout_layer(dropout)),
            ("3", nn.Linear(width, width))]))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def dropout_layer(p: float) -> nn.Module:
    """nn.Dropout(p), or nn.Identity() for p=0: no dropout kernel on the training step when there is nothing to drop."""
    return nn.Dropout(p) if p else nn.Identity()


class GatedDense(nn.Module):
    """(W x + b) * sigmoid(V x + c): the gated dense layer of the VampPrior's and Exemplar VAE's MLPs (after
    Dauphin et al., 2017)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.value, self.gate = nn.Linear(n_in, n_out), nn.Linear(n_in, n_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.value(x) * torch.sigmoid(self.gate(x))


def check_images(model: nn.Module, x: Tensor) -> None:
    """Raise ValueError unless x is a float batch of shape (B, C, H, W) that matches model.image_shape."""
    if not isinstance(x, Tensor):
        raise ValueError(f"expected a torch.Tensor of images, got {type(x).__name__}")
    if x.dim() != 4 or tuple(x.shape[1:]) != model.image_shape:
        want = "(B, {}, {}, {})".format(*model.image_shape)
        raise ValueError(f"expected images of shape {want}, got {tuple(x.shape)}; "
                         f"build the {type(model).__name__} with matching in_channels/image_size or resize the data")
    want = next(model.parameters()).dtype
    if x.dtype != want:
        hint = "divide uint8 images by 255" if not x.is_floating_point() else f"convert them with x.to({want})"
        raise ValueError(f"expected {want} images in [0, 1] (the model's dtype), got dtype {x.dtype}; {hint}")

