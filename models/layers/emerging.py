"""Emerging convolutions (Hoogeboom et al. 2019) and the convolution exponential (Hoogeboom et
al. 2020), the linear-flow baselines of Inverse-Flow Table 4 and the Emerging rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.core import Bijection, Compose, check_image
from models.layers.glow import InvConv1x1LU
from models.layers.inverse_conv import CausalConv2d


def emerging_conv(channels: int, kernel_size: int = 2, solver: str = "wavefront") -> Compose:
    """Emerging conv: 1x1 (LU), k x k autoregressive conv from the top-left, the same from the
    bottom-right (the 'flip, conv, flip' of the paper). x [B,C,H,W] -> z; logdet =
    H W (log|det W_1x1| + sum log diag_1 + sum log diag_2). Inverse: two sequential solves."""
    return Compose(
        [
            InvConv1x1LU(channels),
            CausalConv2d(channels, kernel_size, orientation=0, solver=solver),
            CausalConv2d(channels, kernel_size, orientation=3, solver=solver),
        ]
    )


class ConvExponential(Bijection):
    """Convolution exponential z = exp(M) x = sum_i M^i x / i!, M a k x k conv with zero padding
    (k odd). x [B,C,H,W]; logdet = tr M = H W tr M_centre (exact for any series length).

    M is spectrally normalised to ||M|| <= ``max_norm`` (power iteration on the conv operator at
    the input's size, one step per training call), so the series converges; ``terms_train`` terms
    in training, ``terms_eval`` in evaluation (the truncation error is below
    max_norm^(n+1)/(n+1)! ||x||: 2.6e-12 for 0.9 and 13 terms). Inverse: exp(-M).

    Args:
        channels: C.
        kernel_size: k (odd) of M.
        max_norm: bound on the spectral norm of M.
        terms_train: series terms in training.
        terms_eval: series terms in evaluation.

    References:
        Hoogeboom, Garcia Satorras, Tomczak & Welling, "The Convolution Exponential and Generalized
            Sylvester Flows", NeurIPS 2020 (arXiv:2006.01910).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        max_norm: float = 0.9,
        terms_train: int = 6,
        terms_eval: int = 13,
    ):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"ConvExponential needs an odd kernel size, got {kernel_size}")
        self.channels, self.max_norm = channels, max_norm
        self.terms_train, self.terms_eval = terms_train, terms_eval
        fan_in = channels * kernel_size**2
        self.weight = nn.Parameter(
            torch.randn(channels, channels, kernel_size, kernel_size) / fan_in
        )
        self.register_buffer("sigma", torch.tensor(0.0))
        self.register_buffer("u", torch.zeros(0), persistent=False)

    def _conv(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.conv2d(x, weight, padding=self.weight.shape[-1] // 2)

    @torch.no_grad()
    def _power_iteration(self, shape: tuple[int, ...], steps: int) -> None:
        w = self.weight.detach()
        if self.u.shape != (1, *shape):
            self.u = torch.randn(1, *shape, dtype=w.dtype, device=w.device)
            steps = max(steps, 30)
        u = self.u
        for _ in range(steps):
            v = self._conv(u, w)
            v = v / v.norm()
            u = F.conv_transpose2d(v, w, padding=self.weight.shape[-1] // 2)
            self.sigma.copy_(u.norm())
            u = u / u.norm()
        self.u.copy_(u)

    def normalized_weight(self, x: Tensor) -> Tensor:
        fresh = self.u.shape != (1, *x.shape[1:])
        if self.training or fresh:
            self._power_iteration(tuple(x.shape[1:]), 1)
        scale = torch.clamp(self.sigma / self.max_norm, min=1.0)
        return self.weight / scale

    def _series(self, x: Tensor, weight: Tensor) -> Tensor:
        terms = self.terms_train if self.training else self.terms_eval
        out, term = x, x
        for i in range(1, terms + 1):
            term = self._conv(term, weight) / i
            out = out + term
        return out

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, "ConvExponential")
        weight = self.normalized_weight(x)
        k = weight.shape[-1] // 2
        trace = torch.diagonal(weight[:, :, k, k]).sum()
        return self._series(x, weight), (x.shape[2] * x.shape[3] * trace).expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.channels, "ConvExponential.inverse")
        return self._series(z, -self.normalized_weight(z))
