"""Residual flows for images: i-ResNet, Residual Flows and i-DenseNet (CDFlow Table 2, i-ConvNet
Table 2), as L levels of K steps (squeeze, steps, Glow split; `models.multiscale`), each step
actnorm -> invertible residual block (`models.layers.residual`), with logit preprocessing
(alpha 0.05, as the Residual Flows code). The levels, steps and widths that reproduce the
papers' parameter counts are in `models.registry`; ``logdet_mode`` chooses the estimator
(``"exact"`` for tests at small shapes).
"""

from __future__ import annotations

from models.core import Bijection, Flow, Shape, image_preprocessing
from models.layers.glow import ActNorm
from models.layers.residual import idensenet_block, iresnet_block, residual_flow_block
from models.multiscale import multiscale


def _residual_flow(
    input_shape: Shape, levels: int, steps: int, make_block, logit_alpha: float | None
) -> Flow:
    """L levels of K steps actnorm -> ``make_block(channels, first)``, ``first`` for the
    network's first block (Residual Flows leaves out its pre-activation)."""

    def level_steps(shape: Shape, level: int) -> list[Bijection]:
        layers: list[Bijection] = []
        for k in range(steps):
            layers += [ActNorm(shape[0]), make_block(shape[0], level == 0 and k == 0)]
        return layers

    transform = multiscale(input_shape, levels, level_steps)
    return Flow(transform, input_shape, image_preprocessing(logit_alpha))


def iresnet(
    input_shape: Shape = (3, 32, 32),
    levels: int = 3,
    steps: int = 16,
    width: int = 512,
    coeff: float = 0.9,
    logdet_mode: str = "power_series",
    logit_alpha: float | None = 0.05,
) -> Flow:
    """i-ResNet (Behrmann et al. 2019): ELU residual blocks 3x3 -> 1x1 -> 3x3 (hidden ``width``),
    spectral norm ``coeff`` 0.9, logdet by the power series truncated at 5 terms."""
    return _residual_flow(
        input_shape,
        levels,
        steps,
        lambda c, first: iresnet_block(c, width, coeff, logdet_mode=logdet_mode),
        logit_alpha,
    )


def residual_flow(
    input_shape: Shape = (3, 32, 32),
    levels: int = 3,
    steps: int = 16,
    width: int = 512,
    coeff: float = 0.98,
    logdet_mode: str = "russian_roulette",
    logit_alpha: float | None = 0.05,
) -> Flow:
    """Residual Flows (Chen et al. 2019): LipSwish residual blocks [LipSwish ->] 3x3 -> 1x1 ->
    3x3 (hidden ``width``), the leading LipSwish in every block but the first (the authors'
    pre-activation), spectral norm ``coeff`` 0.98, unbiased Russian-roulette logdet."""
    return _residual_flow(
        input_shape,
        levels,
        steps,
        lambda c, first: residual_flow_block(
            c, width, coeff, preact=not first, logdet_mode=logdet_mode
        ),
        logit_alpha,
    )


def idensenet(
    input_shape: Shape = (3, 32, 32),
    levels: int = 3,
    steps: int = 16,
    growth: int = 172,
    depth: int = 3,
    coeff: float = 0.98,
    logdet_mode: str = "russian_roulette",
    logit_alpha: float | None = 0.05,
) -> Flow:
    """i-DenseNet (Perugachi-Diaz et al. 2021): dense CLipSwish blocks (``depth`` layers of
    ``growth`` channels), spectral norm ``coeff`` 0.98, unbiased Russian-roulette logdet."""
    return _residual_flow(
        input_shape,
        levels,
        steps,
        lambda c, first: idensenet_block(c, growth, depth, coeff, logdet_mode=logdet_mode),
        logit_alpha,
    )
