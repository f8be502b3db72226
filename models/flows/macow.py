"""MaCow (Ma et al. 2019; Inverse-Flow Table 6) as a multiscale flow of L levels of K steps."""

from __future__ import annotations

from models.core import Bijection, Flow, Shape
from models.flows.glow import multiscale_flow
from models.layers.glow import ActNorm, InvConv1x1LU


def macow(
    input_shape: Shape,
    levels: int = 2,
    steps: int = 16,
    hidden: int = 64,
    kernel: tuple[int, int] = (2, 3),
    logit_alpha: float | None = None,
) -> Flow:
    """MaCow: each step is actnorm -> 1x1 conv -> MaCow unit (masked-conv affine autoregressive
    flows down, up, right and left). Sampling inverts each flow one row or column at a time."""
    from models.layers.autoregressive import macow_unit

    def step(shape: Shape, level: int) -> list[Bijection]:
        c = shape[0]
        return [ActNorm(c), InvConv1x1LU(c), *macow_unit(c, hidden, tuple(kernel))]

    return multiscale_flow(input_shape, levels, steps, step, logit_alpha=logit_alpha)
