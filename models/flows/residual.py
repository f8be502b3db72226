"""Residual flows for images: i-ResNet, Residual Flows and i-DenseNet (CDFlow Table 2, i-ConvNet
Table 2), as L levels of K steps (squeeze, steps, Glow split; `models.multiscale`), each step
actnorm -> invertible residual block (`models.layers.residual`), with logit preprocessing
(alpha 0.05, as the Residual Flows code). The levels, steps and widths that reproduce the
papers' parameter counts are in `models.registry`; ``logdet_mode`` chooses the estimator
(``"exact"`` for tests at small shapes).
"""

from __future__ import annotations

from models.core import Bijection, Flow
from models.flows.glow import Shape, multiscale_flow
from models.layers.glow import ActNorm
from models.layers.residual import idensenet_block, iresnet_block, residual_flow_block


def _residual_flow(input_shape: Shape, levels: int, steps: int, make_block) -> Flow:
    def step(shape: Shape, level: int) -> list[Bijection]:
        return [ActNorm(shape[0]), make_block(shape[0])]

    return multiscale_flow(input_shape, levels, steps, step, logit_alpha=0.05)


def iresnet(
    input_shape: Shape = (3, 32, 32),
    levels: int = 3,
    steps: int = 16,
    width: int = 512,
    coeff: float = 0.9,
    logdet_mode: str = "power_series",
) -> Flow:
    """i-ResNet (Behrmann et al. 2019): ELU residual blocks 3x3 -> 1x1 -> 3x3 (hidden ``width``),
    spectral norm ``coeff`` 0.9, logdet by the power series truncated at 5 terms."""
    return _residual_flow(
        input_shape,
        levels,
        steps,
        lambda c: iresnet_block(c, width, coeff, logdet_mode=logdet_mode),
    )


def residual_flow(
    input_shape: Shape = (3, 32, 32),
    levels: int = 3,
    steps: int = 16,
    width: int = 512,
    coeff: float = 0.98,
    logdet_mode: str = "russian_roulette",
) -> Flow:
    """Residual Flows (Chen et al. 2019): LipSwish residual blocks 3x3 -> 1x1 -> 3x3 (hidden
    ``width``), spectral norm ``coeff`` 0.98, unbiased Russian-roulette logdet."""
    return _residual_flow(
        input_shape,
        levels,
        steps,
        lambda c: residual_flow_block(c, width, coeff, logdet_mode=logdet_mode),
    )


def idensenet(
    input_shape: Shape = (3, 32, 32),
    levels: int = 3,
    steps: int = 16,
    growth: int = 172,
    depth: int = 3,
    coeff: float = 0.98,
    logdet_mode: str = "russian_roulette",
) -> Flow:
    """i-DenseNet (Perugachi-Diaz et al. 2021): dense CLipSwish blocks (``depth`` layers of
    ``growth`` channels), spectral norm ``coeff`` 0.98, unbiased Russian-roulette logdet."""
    return _residual_flow(
        input_shape,
        levels,
        steps,
        lambda c: idensenet_block(c, growth, depth, coeff, logdet_mode=logdet_mode),
    )
