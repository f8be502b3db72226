"""CONF flows (Karami et al. 2019) for images: multiscale, each step actnorm -> invertible 1x1
-> CONF coupling (data-adaptive circular or symmetric depthwise convolution with S-Log gates).

CONF's image configuration was not published; ours: L levels of K steps, coupling net width
``width``, 3x3 adaptive kernels, ``subflows`` sub-flows per coupling; MNIST L=2 K=8 width 128,
CIFAR-10 L=3 K=8 width 256, two sub-flows.
"""

from __future__ import annotations

from models.core import Bijection, Flow, Shape
from models.flows.glow import multiscale_flow
from models.layers.fourier import CONFCoupling
from models.layers.glow import ActNorm, InvConv1x1LU


def conf(
    input_shape: Shape = (3, 32, 32),
    levels: int = 3,
    steps: int = 8,
    width: int = 256,
    conv: str = "circular",
    kernel_size: int = 3,
    subflows: int = 2,
    logit_alpha: float | None = None,
) -> Flow:
    def step(shape: Shape, level: int) -> list[Bijection]:
        c = shape[0]
        return [
            ActNorm(c),
            InvConv1x1LU(c),
            CONFCoupling(c, width, kernel_size, conv, subflows),
        ]

    return multiscale_flow(input_shape, levels, steps, step, logit_alpha=logit_alpha)
