"""Inverse-Flow and the architectures it is compared with (Inverse-Flow Tables 2-6).

Multiscale flows (L levels of K steps, Glow split prior) whose steps differ in the invertible
convolution, and the 9-layer linear MNIST flows of SNF (Table 4). Each builder takes the sizes as
arguments; `models.registry` names the table rows with the widths that reproduce the papers'
parameter counts.
"""

from __future__ import annotations

from functools import partial

from models.core import Bijection, Compose, ElementwiseShift, Flow, Shape, image_preprocessing
from models.flows.glow import glow, multiscale_flow
from models.layers.emerging import ConvExponential, emerging_conv
from models.layers.glow import ActNorm, AffineCoupling, InvConv1x1, InvConv1x1LU
from models.layers.inverse_conv import CausalConv2d, FInCConv2d, InverseConv2d
from models.layers.snf import ExactConv2d, SelfNormConv2d
from models.layers.spline import SplineActivation
from models.multiscale import FlattenLatent, Squeeze, squeezed_shape
from models.slots import SlotValue, slot_layer


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


def finc_flow(
    input_shape: Shape,
    levels: int = 2,
    steps: int = 4,
    width: int = 512,
    kernel_size: int = 3,
    solver: str = "rows",
    logit_alpha: float | None = None,
) -> Flow:
    """FInC Flow: Glow step with the FInC conv (4 corner-oriented causal convs) before the 1x1:
    actnorm -> FInC k x k -> 1x1 -> affine coupling. Density direction is one conv per layer;
    sampling solves.
    ``logit_alpha``: logit preprocessing as the authors' code (None: centre to [-0.5, 0.5))."""

    def step(shape: Shape, level: int) -> list[Bijection]:
        c = shape[0]
        return [
            ActNorm(c),
            FInCConv2d(c, kernel_size, solver),
            InvConv1x1LU(c),
            AffineCoupling(c, width),
        ]

    return multiscale_flow(input_shape, levels, steps, step, logit_alpha=logit_alpha)


def cinc_flow(
    input_shape: Shape,
    levels: int = 2,
    steps: int = 16,
    width: int = 512,
    kernel_size: int = 3,
    solver: str = "wavefront",
    logit_alpha: float | None = None,
) -> Flow:
    """CInC Flow: Glow step with one causal k x k conv (learnable diagonal) before the 1x1.
    ``logit_alpha``: logit preprocessing as the authors' code (None: centre to [-0.5, 0.5))."""

    def step(shape: Shape, level: int) -> list[Bijection]:
        c = shape[0]
        return [
            ActNorm(c),
            CausalConv2d(c, kernel_size, solver=solver),
            InvConv1x1LU(c),
            AffineCoupling(c, width),
        ]

    return multiscale_flow(input_shape, levels, steps, step, logit_alpha=logit_alpha)


def emerging_glow(
    input_shape: Shape,
    levels: int = 2,
    steps: int = 4,
    width: int = 512,
    solver: str = "wavefront",
) -> Flow:
    """Emerging Glow: the Glow step with the emerging conv (1x1, two 2x2 autoregressive convs)
    in the slot of the 1x1: actnorm -> emerging conv -> affine coupling. Sampling inverts the
    autoregressive convs sequentially (``wavefront``)."""
    mix = partial(emerging_conv, kernel_size=2, solver=solver)
    return glow(input_shape, levels, steps, width, mix=mix)


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


LINEAR_LAYERS = ("exact", "exponential", "emerging", "snf", "inverse_conv")


def linear_layer(
    kind: str, shape: Shape, init: str = "authors", gradient_rule: str = "authors"
) -> Bijection:
    """One invertible conv of the SNF 9-layer flows (Inverse-Flow Table 4). ``init`` (exact and
    SNF convs) and ``gradient_rule`` (SNF) as in `SelfNormConv2d`; the other kinds ignore them."""
    c = shape[0]
    if kind == "exact":
        return ExactConv2d(c, 3, init=init)
    if kind == "snf":
        return SelfNormConv2d(c, 3, init=init, gradient_rule=gradient_rule)
    if kind == "emerging":
        return emerging_conv(c, 2)
    if kind == "exponential":  # SNF's ConvExp: per-element biases around exp(M), then a 1x1
        return Compose(
            [ElementwiseShift(shape), ConvExponential(c, 3), ElementwiseShift(shape), InvConv1x1(c)]
        )
    if kind == "inverse_conv":
        return InverseConv2d(c, 3)
    raise ValueError(f"unknown linear layer {kind!r}; choose from {LINEAR_LAYERS}")


def linear_flow(
    kind: SlotValue,
    input_shape: Shape = (1, 28, 28),
    layers: int = 9,
    blocks: int = 3,
    bins: int = 5,
    tail_bound: float = 10.0,
    init: str = "authors",
    gradient_rule: str = "authors",
) -> Flow:
    """SNF's 9-layer CNN flow: ``blocks`` blocks of layers/blocks convs at 1x28x28, 4x14x14,
    16x7x7 (squeeze between blocks), each conv followed by a per-element RQ spline activation
    except the last; no coupling, no split. Logit preprocessing with alpha 1e-6 (as SNF).

    ``kind``: the slot of the convolutions (Inverse-Flow Table 4's reference step): one of
    `LINEAR_LAYERS`, or any `models.slots` value (a built-in slot name, a layer spec, a factory).
    ``init``: ``"authors"`` (default) is the SNF code base's for the splines and the exact and
    SNF convs (`SplineActivation`, `ExactConv2d`); ``"ours"`` the earlier identity-start init.
    ``gradient_rule`` of the SNF convs: ``"authors"`` (default) or ``"paper"``."""
    if layers % blocks:
        raise ValueError(f"layers ({layers}) must be a multiple of blocks ({blocks})")
    if isinstance(kind, str) and kind in LINEAR_LAYERS:
        make_layer = partial(linear_layer, kind, init=init, gradient_rule=gradient_rule)
    else:
        make_layer = slot_layer(kind, kind)
    shape = tuple(input_shape)
    parts: list[Bijection] = []
    for block in range(blocks):
        for i in range(layers // blocks):
            parts.append(make_layer(shape))
            if not (block == blocks - 1 and i == layers // blocks - 1):
                parts.append(SplineActivation(shape, bins, tail_bound, init=init))
        if block < blocks - 1:
            parts.append(Squeeze())
            shape = squeezed_shape(shape)
    parts.append(FlattenLatent(shape))
    return Flow(Compose(parts), input_shape, image_preprocessing(logit_alpha=1e-6))


def macow(
    input_shape: Shape,
    levels: int = 2,
    steps: int = 16,
    hidden: int = 64,
    kernel: tuple[int, int] = (2, 3),
) -> Flow:
    """MaCow: each step is actnorm -> 1x1 conv -> MaCow unit (masked-conv affine autoregressive
    flows down, up, right and left). Sampling inverts each flow one row or column at a time."""
    from models.layers.autoregressive import macow_unit

    def step(shape: Shape, level: int) -> list[Bijection]:
        c = shape[0]
        return [ActNorm(c), InvConv1x1LU(c), *macow_unit(c, hidden, tuple(kernel))]

    return multiscale_flow(input_shape, levels, steps, step)


def mintnet(
    input_shape: Shape,
    levels: int = 2,
    steps: int = 16,
    multiplier: int = 8,
    max_iter: int = 100,
    tol: float = 1e-5,
    damping: float = 1.0,
) -> Flow:
    """MintNet: each step is actnorm -> masked invertible layer (hidden = C x multiplier);
    sampling by damped fixed-point iteration (``max_iter``, ``tol`` and ``damping`` recorded in
    each layer's ``last_inverse``). Our L x K multiscale arrangement sizes the Inverse-Flow rows."""
    from models.layers.autoregressive import MintNetLayer

    def step(shape: Shape, level: int) -> list[Bijection]:
        c = shape[0]
        return [ActNorm(c), MintNetLayer(c, multiplier, 3, max_iter, tol, damping)]

    return multiscale_flow(input_shape, levels, steps, step)
