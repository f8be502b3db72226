"""Inverse-Flow (Inverse-Flow paper Sec. 4.1): a multiscale flow (L levels of K steps, Glow
split prior) whose step starts with the inverse convolution, solved in the density direction.
`models.registry` names the table rows with the widths that reproduce the papers' parameter
counts; the flows it is compared with have their own files under `models/flows/`.
"""

from __future__ import annotations

from models.core import Bijection, Flow, Shape
from models.flows.glow import multiscale_flow
from models.flows.linear import LINEAR_LAYERS, linear_flow  # imported from here before
from models.layers.glow import ActNorm, AffineCoupling, InvConv1x1LU
from models.layers.inverse_conv import InverseConv2d
from models.layers.spline import SplineActivation
from models.slots import SlotValue, slot_layer

__all__ = ["LINEAR_LAYERS", "inverse_flow", "linear_flow"]


def inverse_flow(
    input_shape: Shape,
    levels: int = 2,
    steps: int = 4,
    width: int = 512,
    kernel_size: int = 3,
    bins: int = 5,
    tail_bound: float = 10.0,
    solver: str = "rows",
    init: str = "authors",
    conv: SlotValue = None,
    logit_alpha: float | None = None,
) -> Flow:
    """Inverse-Flow (paper Sec. 4.1): each step is inverse conv -> spline activation -> actnorm
    -> 1x1 conv -> affine coupling with the released code's slim net 3x3 (C/2 -> width) -> 1x1
    (width -> C) -> zero 3x3. Density direction solves T^-1; sampling is one conv per layer.
    ``init`` of the splines: ``"authors"`` (the released code's SNF-derived spline init, see
    `SplineActivation`) or ``"ours"`` (exact identity). ``conv``: the slot of the inverse
    convolution (`models.slots`; default the k x k inverse conv with ``solver``), where the
    Inverse-Flow tables' reference step takes another invertible layer. ``logit_alpha``: logit
    preprocessing as the released code (None: centre to [-0.5, 0.5))."""
    make_conv = slot_layer(conv, lambda channels: InverseConv2d(channels, kernel_size, solver))

    def step(shape: Shape, level: int) -> list[Bijection]:
        c = shape[0]
        return [
            make_conv(shape),
            SplineActivation(shape, bins, tail_bound, init=init),
            ActNorm(c),
            InvConv1x1LU(c),
            AffineCoupling(c, width, mid=c),
        ]

    return multiscale_flow(input_shape, levels, steps, step, logit_alpha=logit_alpha)
