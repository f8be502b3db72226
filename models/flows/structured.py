"""Glow-style flows whose channel mixing is a structured invertible layer: CDFlow (circulant-
diagonal), Woodbury Glow and ButterflyFlow (the CDFlow and Inverse-Flow tables' baselines)."""

from __future__ import annotations

from functools import partial

from models.core import Bijection, Flow, Shape
from models.flows.glow import glow, multiscale_flow
from models.layers.butterfly import ButterflyLayer
from models.layers.circulant import CirculantDiagonal
from models.layers.glow import ActNorm, AffineCoupling, InvConv1x1LU
from models.layers.woodbury import Woodbury


def cdflow(
    input_shape: Shape = (3, 32, 32),
    levels: int = 3,
    steps: int = 32,
    width: int = 512,
    m: int = 2,
    logit_alpha: float | None = None,
) -> Flow:
    """CDFlow: Glow with the circulant-diagonal layer (m diagonals, m - 1 circulants) in the
    slot of the 1x1 convolution: actnorm -> CD layer -> affine coupling (Glow's net)."""
    mix = partial(CirculantDiagonal, m=m)
    return glow(input_shape, levels, steps, width, logit_alpha=logit_alpha, mix=mix)


def woodbury_glow(
    input_shape: Shape = (3, 32, 32),
    levels: int = 3,
    steps: int = 32,
    width: int = 512,
    rank: int = 16,
    logit_alpha: float | None = None,
) -> Flow:
    """Woodbury Glow (Lu & Huang 2020): the Glow step with the channel + spatial Woodbury
    layer (rank d = 16) in the slot of the 1x1: actnorm -> Woodbury -> affine coupling."""

    def mix(channels: int, spatial_shape: tuple[int, int]) -> Woodbury:
        return Woodbury((channels, *spatial_shape), rank)

    return glow(input_shape, levels, steps, width, logit_alpha=logit_alpha, mix=mix)


def butterflyflow(
    input_shape: Shape = (3, 32, 32),
    levels: int = 3,
    steps: int = 32,
    width: int = 512,
    logit_alpha: float | None = None,
) -> Flow:
    """ButterflyFlow (Meng et al. 2022): actnorm -> 1x1 -> one butterfly level -> affine
    coupling; step k of a level uses butterfly level k (modulo the levels its size admits)."""

    def make_steps(shape: Shape, level: int) -> list[Bijection]:
        c = shape[0]
        return [
            layer
            for k in range(steps)
            for layer in (
                ActNorm(c),
                InvConv1x1LU(c),
                ButterflyLayer.for_shape(shape, k),
                AffineCoupling(c, width),
            )
        ]

    return multiscale_flow(input_shape, levels, 1, make_steps, logit_alpha=logit_alpha)
