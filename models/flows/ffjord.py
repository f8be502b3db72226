"""FFJORD's multiscale image flow (i-ConvNet Table 2: CIFAR-10 3.40 BPD).

Scales as the authors' ODE-NVP: while the image side is at least 4, a scale is ``blocks`` CNFs
at (C, H, W), a squeeze, ``blocks`` CNFs at (4C, H/2, W/2), then half the channels are factored
out to the standard normal; the last scale (side 4 on CIFAR-10) is ``blocks`` CNFs. On 3x32x32:
4 scales, 14 CNFs, each an `ODENet` with hidden widths (64, 64, 64), 1.36M parameters.
Preprocessing: dequantize, scale to [0, 1), logit with alpha 1e-6 (the authors' train_cnf.py
default, which overrides the 0.05 of their ODE-NVP class). T = 1 in every CNF: the authors' end
time is a parameter whose gradient their code cuts (`torch.tensor` of it), so it stays 1.

References:
    Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud, "FFJORD: Free-form Continuous Dynamics
        for Scalable Reversible Generative Models", ICLR 2019 (arXiv:1810.01367); the image
        command of its code (rtqichen/ffjord@994864a README): ``--dims 64,64,64 --strides
        1,1,1,1 --num_blocks 2 --layer_type concat --multiscale True --rademacher True``
        (dopri5, atol = rtol = 1e-5, adjoint gradients).
"""

from __future__ import annotations

from collections.abc import Sequence

from models.core import Flow, Shape, image_preprocessing, split_channels
from models.layers.cnf import ffjord_block
from models.multiscale import MultiscaleLevel, level_shapes


def ffjord_scales(input_shape: Shape) -> int:
    """The number of scales: one per halving while both sides are >= 4 (ODE-NVP's rule)."""
    scales, (_, h, w) = 0, input_shape
    while h >= 4 and w >= 4:
        scales, h, w = scales + 1, h // 2, w // 2
    return scales


def ffjord(
    input_shape: Shape = (3, 32, 32),
    scales: int | None = None,
    blocks: int = 2,
    hidden: Sequence[int] = (64, 64, 64),
    logit_alpha: float = 1e-6,
    **cnf_options,
) -> Flow:
    """FFJORD (Grathwohl et al. 2019) as the module docstring describes.

    Args:
        input_shape: (C, H, W) of the images.
        scales: number of scales (default: `ffjord_scales`).
        blocks: CNFs on each side of each squeeze.
        hidden: hidden widths of each CNF's `ODENet`.
        logit_alpha: the logit preprocessing's alpha.
        cnf_options: `models.layers.cnf.CNF` options (``trace``, ``solver``, ``rtol``, ``atol``,
            ``adjoint``, ``time``).
    """
    scales = ffjord_scales(input_shape) if scales is None else scales
    if scales < 1:
        raise ValueError(f"FFJORD needs at least one scale, got scales={scales}")

    def cnfs(channels: int) -> list:
        return [ffjord_block(channels, hidden, **cnf_options) for _ in range(blocks)]

    squeezed = level_shapes(input_shape, scales - 1)  # after each scale's squeeze
    c, h, w = squeezed[-1] if squeezed else input_shape
    last = (split_channels(c)[0], h, w) if squeezed else (c, h, w)  # the kept half, no squeeze
    inner = MultiscaleLevel(cnfs(last[0]), last, squeeze=False)
    for shape in reversed(squeezed):
        inner = MultiscaleLevel(
            cnfs(shape[0]),
            shape,
            inner=inner,
            split_prior=False,
            before_squeeze=cnfs(shape[0] // 4),
        )
    return Flow(inner, input_shape, image_preprocessing(logit_alpha))
