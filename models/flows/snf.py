"""SNF Glow (Keller et al. 2021; Inverse-Flow Tables 2-6): the Glow step with a
self-normalizing 1x1 convolution. SNF's 9-layer linear flows are in `models.flows.linear`."""

from __future__ import annotations

from models.core import Bijection, Flow, Shape
from models.flows.glow import multiscale_flow
from models.layers.glow import ActNorm, AffineCoupling
from models.layers.snf import SelfNormConv2d


def snf_glow(
    input_shape: Shape,
    levels: int = 2,
    steps: int = 4,
    width: int = 512,
    recon_weight: float = 100.0,
    gradient_rule: str = "authors",
    init: str = "authors",
    logit_alpha: float | None = None,
) -> Flow:
    """SNF Glow (SNF's selfnorm_glow experiments): actnorm -> self-normalizing 1x1 conv ->
    affine coupling, split prior, reconstruction loss weight 100. ``gradient_rule`` and ``init``
    of the 1x1 convs as in `SelfNormConv2d` (defaults: the released code's).
    ``logit_alpha``: logit preprocessing as the authors' code (None: centre to [-0.5, 0.5))."""

    def step(shape: Shape, level: int) -> list[Bijection]:
        c = shape[0]
        return [
            ActNorm(c),
            SelfNormConv2d(c, 1, recon_weight=recon_weight, gradient_rule=gradient_rule, init=init),
            AffineCoupling(c, width),
        ]

    return multiscale_flow(input_shape, levels, steps, step, logit_alpha=logit_alpha)
