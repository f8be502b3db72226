"""Emerging Glow (Hoogeboom et al. 2019; Inverse-Flow Tables 2-3, CDFlow Table 2): the Glow
step with the emerging convolution in the slot of the 1x1."""

from __future__ import annotations

from functools import partial

from models.core import Flow, Shape
from models.flows.glow import glow
from models.layers.emerging import emerging_conv


def emerging_glow(
    input_shape: Shape,
    levels: int = 2,
    steps: int = 4,
    width: int = 512,
    solver: str = "wavefront",
    logit_alpha: float | None = None,
) -> Flow:
    """Emerging Glow: the Glow step with the emerging conv (1x1, two 2x2 autoregressive convs)
    in the slot of the 1x1: actnorm -> emerging conv -> affine coupling. Sampling inverts the
    autoregressive convs sequentially (``wavefront``)."""
    mix = partial(emerging_conv, kernel_size=2, solver=solver)
    return glow(input_shape, levels, steps, width, logit_alpha=logit_alpha, mix=mix)
