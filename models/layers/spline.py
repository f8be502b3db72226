"""Rational-quadratic spline activation (Durkan et al. 2019), elementwise with per-element knots.

The activation of Inverse-Flow and of the SNF 9-layer flows. On [-B, B] each element has its own
monotone rational-quadratic spline with K bins; outside it is the identity (linear tails), with
derivative 1 at the boundary knots so the map is C^1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.core import Bijection

SPLINE_INITS = ("authors", "ours")
AUTHORS_RAW_STD = 0.01  # snf/layers/activations.py: torch.randn(...) * 0.01


class SplineActivation(Bijection):
    """Elementwise monotone RQ spline. x [B, *shape] -> z [B, *shape];
    logdet = sum log dz/dx over the elements inside [-B, B].

    Per-element parameters: bin widths and heights [*shape, K] (softmax), interior knot
    derivatives [*shape, K-1] (d = min_derivative + softplus(raw)); the boundary knots have
    derivative 1. ``init``:

    - ``"authors"`` (default): the SNF code base's (``snf/layers/activations.py``,
      ``SplineActivation.__init__`` with ``individual_weights=True``; the same lines in the
      Inverse-Flow and FInC forks): every raw width, height and derivative is N(0, 0.01^2), the
      derivatives around the offset c = log(e^(1 - min_derivative) - 1) that
      ``unconstrained_rational_quadratic_spline`` adds, softplus(c) = 1 - min_derivative. So bins
      are near-uniform and the interior knot derivatives are about
      1 + 0.01 sigmoid(c) N(0, 1) (std 0.0063 for min_derivative 1e-3): close to, not exactly,
      the identity.
    - ``"ours"`` (this code base's earlier choice): raw widths and heights 0 and derivatives c,
      exactly the identity map.

    Args:
        shape: the per-example shape; one spline per element.
        bins: K, the bins of each spline.
        tail_bound: B: identity outside [-B, B].
        min_bin_width: lower bound of each bin's width.
        min_bin_height: lower bound of each bin's height.
        min_derivative: lower bound of each knot derivative.
        init: ``authors`` (the SNF code base's) or ``ours`` (exact identity).

    References:
        Durkan, Bekasov, Murray & Papamakarios, "Neural Spline Flows", NeurIPS 2019
            (arXiv:1906.04032).
        Keller, Peters, Jaini, Hoogeboom, Forre & Welling, "Self Normalizing Flows", ICML 2021
            (arXiv:2011.07248).
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        bins: int = 5,
        tail_bound: float = 10.0,
        min_bin_width: float = 1e-3,
        min_bin_height: float = 1e-3,
        min_derivative: float = 1e-3,
        init: str = "authors",
    ):
        super().__init__()
        if init not in SPLINE_INITS:
            raise ValueError(f"unknown init {init!r}; choose from {SPLINE_INITS}")
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        if min_bin_width * bins >= 1 or min_bin_height * bins >= 1:
            raise ValueError("minimal bin width/height times bins must be below 1")
        self.shape = tuple(shape)
        self.bins, self.tail_bound = bins, tail_bound
        self.min_bin_width, self.min_bin_height = min_bin_width, min_bin_height
        self.min_derivative = min_derivative
        identity_derivative = math.log(math.expm1(1 - min_derivative))

        def raw(*size: int) -> Tensor:  # "ours" draws nothing: the old RNG stream is kept
            return AUTHORS_RAW_STD * torch.randn(*size) if init == "authors" else torch.zeros(size)

        self.widths = nn.Parameter(raw(*shape, bins))
        self.heights = nn.Parameter(raw(*shape, bins))
        self.derivatives = nn.Parameter(identity_derivative + raw(*shape, bins - 1))

    def _knots(self) -> tuple[Tensor, Tensor, Tensor]:
        """Knot positions x_k, y_k [*shape, K+1] and derivatives d_k [*shape, K+1]."""
        bound = self.tail_bound

        def positions(raw: Tensor, minimum: float) -> Tensor:
            frac = minimum + (1 - minimum * self.bins) * torch.softmax(raw, dim=-1)
            cum = F.pad(torch.cumsum(frac[..., :-1], dim=-1), (1, 0))
            last = torch.full_like(cum[..., :1], bound)
            return torch.cat([2 * bound * cum - bound, last], dim=-1)

        xk = positions(self.widths, self.min_bin_width)
        yk = positions(self.heights, self.min_bin_height)
        inner = self.min_derivative + F.softplus(self.derivatives)
        one = torch.ones_like(inner[..., :1])
        dk = torch.cat([one, inner, one], dim=-1)
        return xk, yk, dk

    def _check(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"SplineActivation expects [B, {', '.join(map(str, self.shape))}], "
                f"got shape {tuple(x.shape)}"
            )

    @staticmethod
    def _bin(knots: Tensor, v: Tensor) -> Tensor:
        idx = (v[..., None] >= knots[..., :-1]).sum(-1) - 1
        return idx.clamp(0, knots.shape[-1] - 2)[..., None]

    @staticmethod
    def _gather(t: Tensor, idx: Tensor, offset: int = 0) -> Tensor:
        return torch.take_along_dim(t[None], idx + offset, dim=-1)[..., 0]

    def _bin_params(self, knots_x, knots_y, derivs, idx):
        x0, x1 = self._gather(knots_x, idx), self._gather(knots_x, idx, 1)
        y0, y1 = self._gather(knots_y, idx), self._gather(knots_y, idx, 1)
        d0, d1 = self._gather(derivs, idx), self._gather(derivs, idx, 1)
        return x0, x1 - x0, y0, y1 - y0, d0, d1

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        xk, yk, dk = self._knots()
        inside = (x > -self.tail_bound) & (x < self.tail_bound)
        xc = torch.where(inside, x, torch.zeros_like(x))
        x0, w, y0, h, d0, d1 = self._bin_params(xk, yk, dk, self._bin(xk, xc))
        s = h / w
        xi = (xc - x0) / w
        t = xi * (1 - xi)
        den = s + (d1 + d0 - 2 * s) * t
        y = y0 + h * (s * xi.pow(2) + d0 * t) / den
        deriv = s.pow(2) * (d1 * xi.pow(2) + 2 * s * t + d0 * (1 - xi).pow(2)) / den.pow(2)
        z = torch.where(inside, y, x)
        logdet = torch.where(inside, torch.log(deriv), torch.zeros_like(x))
        return z, logdet.flatten(1).sum(1)

    def inverse(self, z: Tensor) -> Tensor:
        self._check(z)
        xk, yk, dk = self._knots()
        inside = (z > -self.tail_bound) & (z < self.tail_bound)
        zc = torch.where(inside, z, torch.zeros_like(z))
        x0, w, y0, h, d0, d1 = self._bin_params(xk, yk, dk, self._bin(yk, zc))
        s = h / w
        dy = zc - y0
        slope_sum = d1 + d0 - 2 * s
        a = h * (s - d0) + dy * slope_sum
        b = h * d0 - dy * slope_sum
        c = -s * dy
        disc = (b.pow(2) - 4 * a * c).clamp_min(0)
        xi = 2 * c / (-b - torch.sqrt(disc))
        return torch.where(inside, x0 + xi * w, z)
