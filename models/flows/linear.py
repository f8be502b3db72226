"""SNF's 9-layer linear MNIST flows (Inverse-Flow Table 4): invertible convolutions and
spline activations, no coupling, one per kind of convolution (exact, exponential, emerging,
SNF, inverse conv) or any layer in its slot."""

from __future__ import annotations

from models.core import Bijection, Compose, Flow, Shape, image_preprocessing
from models.layers.spline import SplineActivation
from models.multiscale import FlattenLatent, Squeeze, squeezed_shape
from models.slots import SlotValue, slot_layer

# Inverse-Flow Table 4's rows, one per convolution: `models.slots.SLOT_LAYERS` names.
LINEAR_LAYERS = ("exact", "exponential", "emerging", "snf", "inverse_conv")


def linear_flow(
    kind: SlotValue,
    input_shape: Shape = (1, 28, 28),
    layers: int = 9,
    blocks: int = 3,
    bins: int = 5,
    tail_bound: float = 10.0,
    init: str = "authors",
    gradient_rule: str = "authors",
    logit_alpha: float | None = 1e-6,
) -> Flow:
    """SNF's 9-layer CNN flow: ``blocks`` blocks of layers/blocks convs at 1x28x28, 4x14x14,
    16x7x7 (squeeze between blocks), each conv followed by a per-element RQ spline activation
    except the last; no coupling, no split. Logit preprocessing with alpha 1e-6 (as SNF).

    ``kind``: the slot of the convolutions (Inverse-Flow Table 4's reference step): any
    `models.slots` value (a built-in slot name such as the rows' `LINEAR_LAYERS`, a layer spec,
    a factory). ``init``: ``"authors"`` (default) is the SNF code base's for the splines and the
    built-in exact and SNF convs (`SplineActivation`, `ExactConv2d`); ``"ours"`` the earlier
    identity-start init. ``gradient_rule`` of the built-in SNF convs: ``"authors"`` (default)
    or ``"paper"``."""
    if layers % blocks:
        raise ValueError(f"layers ({layers}) must be a multiple of blocks ({blocks})")
    make_layer = slot_layer(kind, kind, init=init, gradient_rule=gradient_rule)
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
    return Flow(Compose(parts), input_shape, image_preprocessing(logit_alpha))
