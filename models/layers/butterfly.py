"""ButterflyFlow's butterfly layers (Meng et al. 2022).

Butterfly level i acts on the flattened D = C H W vector of each example: within consecutive
blocks of size D / 2^i, entry j of the first half and entry j + D / 2^(i+1) form a pair mixed by
its own learned 2x2 matrix [[a, b], [c, d]]. logdet = sum over pairs of log|ad - bc|; the inverse
applies each pair's inverse 2x2 matrix. A pair with |ad - bc| < eps raises ``ValueError``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.core import Bijection


class ButterflyLayer(Bijection):
    """One butterfly level over [B, C, H, W] with D = C H W divisible by 2^(level+1).

    Args:
        shape: (C, H, W) of the input; D = C H W.
        level: i, the butterfly level (pairs at distance D / 2^(i+1) within blocks of D / 2^i).
        eps: a pair with |ad - bc| below it raises ``ValueError``.

    References:
        Meng, Zhou, Choi, Dao & Ermon, "ButterflyFlow: Building Invertible Layers with Butterfly
            Matrices", ICML 2022 (arXiv:2209.13774).
    """

    def __init__(self, shape: tuple[int, int, int], level: int = 0, eps: float = 1e-6):
        super().__init__()
        self.shape, self.level, self.eps = tuple(shape), level, eps
        d = math.prod(shape)
        if d % 2 ** (level + 1):
            raise ValueError(
                f"butterfly level {level} needs D = {d} divisible by {2 ** (level + 1)}"
            )
        self.blocks = 2**level
        self.half = d // 2 ** (level + 1)
        mats = torch.eye(2).repeat(self.blocks, self.half, 1, 1)
        self.matrices = nn.Parameter(mats + 0.01 * torch.randn_like(mats))

    @staticmethod
    def for_shape(shape: tuple[int, int, int], index: int) -> ButterflyLayer:
        """The level ``index`` modulo the number of levels D admits (D / 2^(i+1) integral)."""
        d = math.prod(shape)
        levels = 0
        while d % 2 ** (levels + 1) == 0:
            levels += 1
        return ButterflyLayer(shape, index % levels)

    def _pairs(self, x: Tensor) -> Tensor:
        """[B, blocks, 2, half]: the two halves of every block."""
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"ButterflyLayer expects [B, {', '.join(map(str, self.shape))}], "
                f"got {tuple(x.shape)}"
            )
        return x.reshape(x.shape[0], self.blocks, 2, self.half)

    def _det(self) -> Tensor:
        m = self.matrices
        det = m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]
        if (det.abs() < self.eps).any():
            raise ValueError("ButterflyLayer has a singular 2x2 factor: not invertible")
        return det

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pairs = self._pairs(x)
        out = torch.einsum("kjab,nkbj->nkaj", self.matrices, pairs)
        logdet = torch.log(self._det().abs()).sum()
        return out.reshape(x.shape), logdet.expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        pairs = self._pairs(z)
        m, det = self.matrices, self._det()
        inv = (
            torch.stack(
                [
                    torch.stack([m[..., 1, 1], -m[..., 0, 1]], -1),
                    torch.stack([-m[..., 1, 0], m[..., 0, 0]], -1),
                ],
                -2,
            )
            / det[..., None, None]
        )
        return torch.einsum("kjab,nkbj->nkaj", inv, pairs).reshape(z.shape)
