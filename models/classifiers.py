"""Classifiers of the classification tables: i-ConvNet's path to invertibility (Table 1) and
Inverse-Flow's MNIST classifier built from inverse convolutions.

i-ConvNet Table 1 changes one component at a time of a 9-conv network (3 stages of 3 convs with
batch norm, global average pooling, a linear head): zero -> circular padding, ReLU ->
SneakyReLU, MaxPool -> checkerboard downsampling, nearest-neighbour invertible downsampling
(space-to-depth) or invertible average pooling (Haar). Invertible downsampling multiplies the
channels by 4, so the stage widths are fixed at (w, 4w, 16w) for every variant (MaxPool variants
widen in the first conv of a stage instead): with w = 24 that is 3.2M (MaxPool) to 4.3M
(invertible) parameters, about the poster's 4M, 9 layers. The three invertible variants are
exactly invertible up to the head: channel zero padding (dropped on inversion), circular convs
(inverted per frequency), batch norm (affine in evaluation), SneakyReLU and the invertible
downsampling.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from models.layers.fourier import (
    CheckerboardDownsample,
    HaarDownsample,
    SneakyReLU,
    periodic_conv_inverse,
)
from models.layers.inverse_conv import InverseConv2d
from models.multiscale import Squeeze
from models.names import register

ICONVNET_VARIANTS = {
    # name: (padding, activation, downsampling)
    "base": ("zeros", "relu", "maxpool"),
    "circular": ("circular", "relu", "maxpool"),
    "sneaky": ("circular", "sneaky", "maxpool"),
    "checkerboard": ("circular", "sneaky", "checkerboard"),
    "nearest": ("circular", "sneaky", "nearest"),
    "avgpool": ("circular", "sneaky", "haar"),
}
INVERTIBLE_DOWNSAMPLING = {
    "checkerboard": CheckerboardDownsample,
    "nearest": Squeeze,
    "haar": HaarDownsample,
}


class ChannelPad(nn.Module):
    """x [B,C,H,W] -> [B,C',H,W] with zero channels appended (injective; inverse drops them)."""

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        if out_channels < channels:
            raise ValueError(f"ChannelPad cannot pad {channels} channels down to {out_channels}")
        self.channels, self.out_channels = channels, out_channels

    def forward(self, x: Tensor) -> Tensor:
        pad = x.new_zeros(x.shape[0], self.out_channels - self.channels, *x.shape[2:])
        return torch.cat([x, pad], dim=1)

    def inverse(self, z: Tensor) -> Tensor:
        return z[:, : self.channels]


class SneakyReLUModule(nn.Module):
    """SneakyReLU as a plain activation module (forward value only)."""

    def __init__(self, slope: float = 0.1):
        super().__init__()
        self.bijection = SneakyReLU(slope)

    def forward(self, x: Tensor) -> Tensor:
        return self.bijection(x)[0]

    def inverse(self, z: Tensor) -> Tensor:
        return self.bijection.inverse(z)


class Downsample(nn.Module):
    """An invertible 2x2 downsampling (x4 channels) as a plain module with ``inverse``."""

    def __init__(self, kind: str):
        super().__init__()
        self.bijection = INVERTIBLE_DOWNSAMPLING[kind]()

    def forward(self, x: Tensor) -> Tensor:
        return self.bijection(x)[0]

    def inverse(self, z: Tensor) -> Tensor:
        return self.bijection.inverse(z)


def invert_module(module: nn.Module, z: Tensor) -> Tensor:
    """Inverse of one feature layer (evaluation mode)."""
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "circular":
            raise ValueError("only circularly padded convolutions are inverted here")
        return periodic_conv_inverse(z, module.weight)
    if isinstance(module, nn.BatchNorm2d):
        scale = module.weight / torch.sqrt(module.running_var + module.eps)
        return (z - module.bias[:, None, None]) / scale[:, None, None] + module.running_mean[
            :, None, None
        ]
    if hasattr(module, "inverse"):
        return module.inverse(z)
    raise ValueError(f"{type(module).__name__} is not invertible")


class IConvNetClassifier(nn.Module):
    """One variant of i-ConvNet's Table 1 network. x [B,3,32,32] (0..255) -> logits [B, 10]."""

    def __init__(
        self, variant: str = "base", width: int = 24, num_classes: int = 10, in_channels: int = 3
    ):
        super().__init__()
        if variant not in ICONVNET_VARIANTS:
            raise ValueError(f"variant must be one of {sorted(ICONVNET_VARIANTS)}, got {variant!r}")
        padding, activation, down = ICONVNET_VARIANTS[variant]
        self.variant = variant
        self.invertible = down in INVERTIBLE_DOWNSAMPLING
        act: Callable[[], nn.Module] = nn.ReLU if activation == "relu" else SneakyReLUModule
        widths = (width, 4 * width, 16 * width)
        layers: list[nn.Module] = [ChannelPad(in_channels, width)]
        channels = width
        for stage, stage_width in enumerate(widths):
            if stage > 0:
                if down == "maxpool":
                    layers.append(nn.MaxPool2d(2))
                else:
                    layers.append(Downsample(down))
                    channels *= 4
            for _ in range(3):
                layers += [
                    nn.Conv2d(
                        channels, stage_width, 3, padding=1, padding_mode=padding, bias=False
                    ),
                    nn.BatchNorm2d(stage_width),
                    act(),
                ]
                channels = stage_width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x / 255.0 - 0.5)
        return self.head(h.mean(dim=(2, 3)))

    @torch.no_grad()
    def invert_features(self, h: Tensor) -> Tensor:
        """x (0..255) from the features before pooling; only for the invertible variants."""
        if not self.invertible:
            raise ValueError(f"variant {self.variant!r} is not invertible (MaxPool)")
        for module in reversed(self.features):
            h = invert_module(module, h)
        return (h + 0.5) * 255.0


class InverseConvClassifier(nn.Module):
    """Inverse-Flow's MNIST classifier: two 3x3 inverse convolutions (8 free taps each, 16 conv
    parameters in total) and one linear layer. x [B,1,28,28] (0..255) -> logits [B, 10]."""

    def __init__(self, input_shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        c = input_shape[0]
        self.convs = nn.ModuleList([InverseConv2d(c, 3), InverseConv2d(c, 3)])
        self.head = nn.Linear(c * input_shape[1] * input_shape[2], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = x / 255.0 - 0.5
        for conv in self.convs:
            h, _ = conv(h)
        return self.head(h.flatten(1))


CLASSIFIERS: dict[str, Callable[..., nn.Module]] = register(
    {},
    "classifier",
    **{f"iconvnet_classifier_{v}": partial(IConvNetClassifier, v) for v in ICONVNET_VARIANTS},
    inverse_conv_classifier_mnist=InverseConvClassifier,
)
