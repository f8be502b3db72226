"""FInC Flow and CInC Flow (Inverse-Flow Tables 2-6): the Glow step with a causal k x k
convolution before the 1x1, actnorm -> causal conv -> 1x1 -> affine coupling. The two differ only
in that convolution: FInC's four corner-oriented causal convs with a fixed unit diagonal, or
CInC's one causal conv over all channels with a learnable diagonal. Density direction is one
convolution per layer; sampling solves.
"""

from __future__ import annotations

from collections.abc import Callable

from models.core import Bijection, Flow, Shape
from models.flows.glow import multiscale_flow
from models.layers.glow import ActNorm, AffineCoupling, InvConv1x1LU
from models.layers.inverse_conv import CausalConv2d, FInCConv2d


def causal_conv_glow(
    input_shape: Shape,
    levels: int,
    steps: int,
    width: int,
    make_conv: Callable[[int], Bijection],
    logit_alpha: float | None = None,
) -> Flow:
    """L levels of K steps actnorm -> ``make_conv(channels)`` -> LU 1x1 -> affine coupling
    (hidden ``width``); ``logit_alpha``: logit preprocessing (None: centre to [-0.5, 0.5))."""

    def step(shape: Shape, level: int) -> list[Bijection]:
        c = shape[0]
        return [ActNorm(c), make_conv(c), InvConv1x1LU(c), AffineCoupling(c, width)]

    return multiscale_flow(input_shape, levels, steps, step, logit_alpha=logit_alpha)


def finc_flow(
    input_shape: Shape,
    levels: int = 2,
    steps: int = 4,
    width: int = 512,
    kernel_size: int = 3,
    solver: str = "rows",
    logit_alpha: float | None = None,
) -> Flow:
    """FInC Flow: `causal_conv_glow` with the FInC conv (4 corner-oriented causal convs).
    ``logit_alpha``: logit preprocessing as the authors' code (None: centre to [-0.5, 0.5))."""
    return causal_conv_glow(
        input_shape,
        levels,
        steps,
        width,
        lambda c: FInCConv2d(c, kernel_size, solver),
        logit_alpha,
    )


def cinc_flow(
    input_shape: Shape,
    levels: int = 2,
    steps: int = 16,
    width: int = 512,
    kernel_size: int = 3,
    solver: str = "wavefront",
    logit_alpha: float | None = None,
) -> Flow:
    """CInC Flow: `causal_conv_glow` with one causal k x k conv (learnable diagonal).
    ``logit_alpha``: logit preprocessing as the authors' code (None: centre to [-0.5, 0.5))."""
    return causal_conv_glow(
        input_shape,
        levels,
        steps,
        width,
        lambda c: CausalConv2d(c, kernel_size, solver=solver),
        logit_alpha,
    )
