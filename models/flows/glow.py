"""Glow-style multiscale flows: L levels of K steps, with a step made of any layers.

A step is a list of bijections built from the channel count; `multiscale_flow` assembles the
levels (squeeze, K steps, split) and the preprocessing (dequantize, scale 1/256, centre/logit).
"""

from __future__ import annotations

from collections.abc import Callable

from models.core import Bijection, Flow, Shape, image_preprocessing
from models.layers.glow import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ChannelCoupling,
    CheckerboardCoupling,
    InvConv1x1,
    InvConv1x1LU,
)
from models.multiscale import multiscale
from models.slots import SlotValue, slot_layer

StepFactory = Callable[[Shape, int], list[Bijection]]


def multiscale_flow(
    input_shape: tuple[int, int, int],
    levels: int,
    steps: int,
    make_step: StepFactory,
    logit_alpha: float | None = None,
) -> Flow:
    """Flow over images [B,C,H,W]: preprocessing, then L levels of K steps.

    ``make_step((C, H, W), level)`` returns the layers of one step at that level's shape.
    """

    def level_steps(shape: Shape, level: int) -> list[Bijection]:
        return [layer for _ in range(steps) for layer in make_step(shape, level)]

    transform = multiscale(input_shape, levels, level_steps)
    return Flow(transform, input_shape, image_preprocessing(logit_alpha))


def glow_step(
    width: int = 512,
    coupling: str = "affine",
    lu: bool = True,
    mix: SlotValue = None,
) -> StepFactory:
    """Glow step: ActNorm -> invertible linear layer -> affine or additive coupling.

    Args:
        width: hidden channels of the coupling network.
        coupling: ``"affine"`` or ``"additive"``.
        lu: the linear layer is the LU-parameterised 1x1 convolution (else the plain one).
        mix: the slot of the linear layer (`models.slots`): a built-in name, a layer spec or a
            factory ``mix(channels[, spatial_shape])`` of any channel-preserving bijection in
            place of the 1x1 convolution (a new layer enters where Glow's sits).
    """
    couplings = {"affine": AffineCoupling, "additive": AdditiveCoupling}
    if coupling not in couplings:
        raise ValueError(f"coupling must be one of {sorted(couplings)}, got {coupling!r}")
    make_mix = slot_layer(mix, InvConv1x1LU if lu else InvConv1x1)

    def make(shape: Shape, level: int) -> list[Bijection]:
        channels = shape[0]
        return [ActNorm(channels), make_mix(shape), couplings[coupling](channels, width)]

    return make


def glow(
    input_shape: tuple[int, int, int] = (3, 32, 32),
    levels: int = 3,
    steps: int = 32,
    width: int = 512,
    coupling: str = "affine",
    lu: bool = True,
    logit_alpha: float | None = None,
    mix: SlotValue = None,
) -> Flow:
    """Glow (Kingma & Dhariwal 2018): CIFAR-10 config L=3, K=32, width 512, affine, LU 1x1.
    Data centred to [-0.5, 0.5) as in Glow, or RealNVP's logit when ``logit_alpha`` is given;
    ``mix`` replaces the 1x1 convolution (`glow_step`)."""
    step = glow_step(width, coupling, lu, mix)
    return multiscale_flow(input_shape, levels, steps, step, logit_alpha=logit_alpha)


def realnvp(
    input_shape: tuple[int, int, int] = (3, 32, 32),
    levels: int = 3,
    width: int = 64,
    blocks: int = 8,
    logit_alpha: float | None = 0.05,
) -> Flow:
    """RealNVP (Dinh et al. 2017) multiscale flow with logit preprocessing (alpha 0.05).

    Each level (after its squeeze): 3 checkerboard couplings (alternating parity), 3 channel
    couplings (alternating halves), each preceded by ActNorm (in place of RealNVP's batch norm
    layers); the last level has 4 checkerboard couplings. Known difference: RealNVP runs the
    checkerboard couplings before the squeeze; here they run on the squeezed tensor of the level.
    """

    def make_steps(shape: Shape, level: int) -> list[Bijection]:
        channels = shape[0]
        n_checker = 4 if level == levels - 1 else 3
        layers: list[Bijection] = []
        for i in range(n_checker):
            layers += [ActNorm(channels), CheckerboardCoupling(channels, i % 2, width, blocks)]
        if level < levels - 1:
            for i in range(3):
                layers += [ActNorm(channels), ChannelCoupling(channels, i % 2 == 1, width, blocks)]
        return layers

    transform = multiscale(input_shape, levels, make_steps)
    return Flow(transform, input_shape, image_preprocessing(logit_alpha))


__all__ = ["glow", "glow_step", "multiscale_flow", "realnvp"]
