"""MADE and MAF on images: masked autoregressive models over the flattened image.

The MAF paper's CIFAR-10 setting (Papamakarios et al. 2017, code ``gpapamak/maf``,
``run_experiments.py`` and ``experiments.py``): dequantized pixels scaled to [0, 1] and passed
through a logit with alpha 0.05; Gaussian MADEs with ReLU hidden layers of 1024 or 2048 units
(one or two layers), hidden degrees drawn at random; MAF stacks 5 or 10 MADEs, reversing the
order between consecutive MADEs, with batch normalisation after each. Here the normalisation is a
per-element ActNorm (data-dependent initialisation, then learned), as our RealNVP uses ActNorm for
RealNVP's batch norm: a per-example bijection in training and evaluation alike.
"""

from __future__ import annotations

from models.core import Bijection, Compose, Flow, image_preprocessing
from models.layers.made import MADE, ElementwiseActNorm
from models.multiscale import FlattenLatent

MAF_LOGIT_ALPHA = 0.05


def made(
    input_shape: tuple[int, int, int] = (3, 32, 32),
    hidden: tuple[int, ...] = (1024, 1024),
    seed: int = 0,
    logit_alpha: float | None = MAF_LOGIT_ALPHA,
) -> Flow:
    """MADE (Germain et al. 2015) as a density: one Gaussian MADE over the flattened image in
    row-major order, a standard normal base, logit preprocessing (alpha 0.05)."""
    transform = Compose([MADE(input_shape, tuple(hidden), seed=seed), FlattenLatent(input_shape)])
    return Flow(transform, input_shape, image_preprocessing(logit_alpha))


def maf(
    input_shape: tuple[int, int, int] = (3, 32, 32),
    layers: int = 10,
    hidden: tuple[int, ...] = (1024, 1024),
    seed: int = 0,
    logit_alpha: float | None = MAF_LOGIT_ALPHA,
) -> Flow:
    """MAF (Papamakarios et al. 2017): ``layers`` x [MADE, per-element ActNorm], the MADE order
    reversed from one layer to the next (1..D, D..1, ...), logit preprocessing (alpha 0.05).
    Each MADE draws its hidden degrees from ``seed + layer index``."""
    if layers < 1:
        raise ValueError(f"MAF needs at least one layer, got {layers}")
    steps: list[Bijection] = []
    for index in range(layers):
        steps.append(MADE(input_shape, tuple(hidden), reverse=index % 2 == 1, seed=seed + index))
        steps.append(ElementwiseActNorm(input_shape))
    transform = Compose([*steps, FlattenLatent(input_shape)])
    return Flow(transform, input_shape, image_preprocessing(logit_alpha))


__all__ = ["made", "maf"]
