"""MintNet (Song et al. 2019; Inverse-Flow Tables 3 and 6) as a multiscale flow of L levels
of K steps."""

from __future__ import annotations

from models.core import Bijection, Flow, Shape
from models.flows.glow import multiscale_flow
from models.layers.glow import ActNorm


def mintnet(
    input_shape: Shape,
    levels: int = 2,
    steps: int = 16,
    multiplier: int = 8,
    max_iter: int = 100,
    tol: float = 1e-5,
    damping: float = 1.0,
    logit_alpha: float | None = None,
) -> Flow:
    """MintNet: each step is actnorm -> masked invertible layer (hidden = C x multiplier);
    sampling by damped fixed-point iteration (``max_iter``, ``tol`` and ``damping`` recorded in
    each layer's ``last_inverse``). Our L x K multiscale arrangement sizes the Inverse-Flow rows."""
    from models.layers.autoregressive import MintNetLayer

    def step(shape: Shape, level: int) -> list[Bijection]:
        c = shape[0]
        return [ActNorm(c), MintNetLayer(c, multiplier, 3, max_iter, tol, damping)]

    return multiscale_flow(input_shape, levels, steps, step, logit_alpha=logit_alpha)
