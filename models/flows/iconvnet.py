"""i-ConvNet's fully convolutional flow (Finzi, Izmailov, Maddox, Kirichenko, Wilson 2019).

Single scale, no coupling: blocks of 3x3 periodic (circular) convolutions each followed by
SneakyReLU, nearest-neighbour invertible downsampling between blocks, a final conv, Gaussian
prior, logit dequantization (alpha 0.05). CIFAR-10: 3 convs at 3x32x32, 12x16x16, 48x8x8 and
192x4x4, plus the final conv: 13 convolutions, 1.4M parameters.
"""

from __future__ import annotations

from models.core import Bijection, Compose, Flow, image_preprocessing
from models.layers.fourier import PeriodicConv2d, SneakyReLU
from models.multiscale import FlattenLatent, Squeeze, squeezed_shape


def iconvnet(
    input_shape: tuple[int, int, int] = (3, 32, 32),
    blocks: int = 4,
    convs_per_block: int = 3,
    kernel_size: int = 3,
    slope: float = 0.1,
    logit_alpha: float | None = 0.05,
) -> Flow:
    """x [B,C,H,W] -> flat latent; ``blocks`` blocks, a downsample between consecutive ones."""
    shape = tuple(input_shape)
    layers: list[Bijection] = []
    for block in range(blocks):
        if block > 0:
            shape = squeezed_shape(shape)
            layers.append(Squeeze())
        for _ in range(convs_per_block):
            layers += [PeriodicConv2d(shape[0], kernel_size), SneakyReLU(slope)]
    layers += [PeriodicConv2d(shape[0], kernel_size), FlattenLatent(shape)]
    return Flow(Compose(layers), input_shape, image_preprocessing(logit_alpha))
