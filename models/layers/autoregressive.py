"""Autoregressive baselines of the Inverse-Flow tables: MaCow and MintNet.

MaCow (Ma et al. 2019): masked-convolution affine autoregressive flows over rows (or columns)
in four directions. Each output row depends on the rows before it only, so the Jacobian is
triangular and the logdet is the sum of log scales; the inverse rebuilds one row at a time and
reruns the network for each (H sequential network calls, as in the original).

MintNet (Song et al. 2019): y = t * x + f(x), f three masked 3x3 convolutions with ELU whose
Jacobian is lower triangular in raster (pixel, channel) order; the exact logdet comes from the
diagonal; the inverse is a damped fixed-point iteration with a residual stopping test.
"""

from __future__ import annotations

import logging
import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.core import Bijection, check_image

log = logging.getLogger(__name__)

DIRECTIONS = ("down", "up", "right", "left")


def to_rows(x: Tensor, direction: str) -> Tensor:
    """Reorient x so that the autoregressive order runs down the rows (its own inverse)."""
    if direction == "down":
        return x
    if direction == "up":
        return x.flip(2)
    if direction == "right":
        return x.transpose(2, 3)
    if direction == "left":
        return x.transpose(2, 3).flip(2)
    raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def from_rows(x: Tensor, direction: str) -> Tensor:
    if direction == "left":
        return x.flip(2).transpose(2, 3)
    return to_rows(x, direction)


class MaskedRowConvFlow(Bijection):
    """MaCow's masked-conv affine autoregressive flow in one direction.

    For output row i, (shift, s) = NN(rows i - k_h .. i - 1) with a k_h x k_w conv over the rows
    strictly above, ELU, a 1x1 hidden layer, ELU and a zero-initialised 1x1 output; scale =
    sigmoid(s + 2); z = (x + shift) * scale. x [B,C,H,W]; logdet = sum log scale.

    Args:
        channels: C.
        direction: ``down``, ``up``, ``right`` or ``left``: the order of the autoregression.
        hidden: channels of the conditioning network.
        kernel: (k_h, k_w) of its masked conv.

    References:
        Ma, Kong, Zhang & Hovy, "MaCow: Masked Convolutional Generative Flow", NeurIPS 2019
            (arXiv:1902.04208).
    """

    def __init__(
        self,
        channels: int,
        direction: str = "down",
        hidden: int = 64,
        kernel: tuple[int, int] = (2, 3),
    ):
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self.channels, self.direction = channels, direction
        self.kh, self.kw = kernel
        out = nn.Conv2d(hidden, 2 * channels, 1)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel),
            nn.ELU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ELU(),
            out,
        )

    def _shift_scale(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """rows [B,C,H,W] in row order -> shift, scale [B,C,H,W] from the rows above."""
        h = rows.shape[2]
        padded = F.pad(rows, (self.kw // 2, (self.kw - 1) // 2, self.kh, 0))
        params = self.net(padded)[:, :, :h]
        shift, s = params[:, 0::2], params[:, 1::2]
        return shift, torch.sigmoid(s + 2.0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, "MaskedRowConvFlow")
        rows = to_rows(x, self.direction)
        shift, scale = self._shift_scale(rows)
        z = from_rows((rows + shift) * scale, self.direction)
        return z, torch.log(scale).flatten(1).sum(1)

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.channels, "MaskedRowConvFlow.inverse")
        rows_z = to_rows(z, self.direction)
        x = torch.zeros_like(rows_z)
        for i in range(rows_z.shape[2]):  # one network call per row, as in MaCow
            shift, scale = self._shift_scale(x)
            row = rows_z[:, :, i] / scale[:, :, i] - shift[:, :, i]
            x = torch.cat([x[:, :, :i], row[:, :, None], x[:, :, i + 1 :]], dim=2)
        return from_rows(x, self.direction)


def macow_unit(channels: int, hidden: int, kernel: tuple[int, int] = (2, 3)) -> list[Bijection]:
    """MaCow unit: masked-conv flows down, up, right and left."""
    return [MaskedRowConvFlow(channels, d, hidden, kernel) for d in DIRECTIONS]


def mintnet_masks(c_in: int, c_out: int, group_in, group_out, k: int) -> Tensor:
    """[c_out, c_in, k, k] mask: every tap before the centre in raster order is free; at the
    centre, input unit a may feed output unit b when group_in(a) <= group_out(b)."""
    mask = torch.zeros(c_out, c_in, k, k)
    centre = k // 2
    mask[:, :, :centre, :] = 1.0
    mask[:, :, centre, :centre] = 1.0
    gi, go = group_ids(group_in, c_in), group_ids(group_out, c_out)
    mask[:, :, centre, centre] = (gi[None, :] <= go[:, None]).to(mask)
    return mask


def group_ids(group, n: int) -> Tensor:
    """[n] group of each unit (on the CPU: a fixed pattern, known also for a meta-device build)."""
    return torch.tensor([group(a) for a in range(n)], device="cpu")


def mintnet_mask_count(c_in: int, c_out: int, group_in, group_out, k: int) -> int:
    """Nonzero entries of `mintnet_masks`, computed without building the mask."""
    centre = k // 2
    gi, go = group_ids(group_in, c_in), group_ids(group_out, c_out)
    return c_out * c_in * (centre * k + centre) + int((gi[None, :] <= go[:, None]).sum())


class MintNetLayer(Bijection):
    """MintNet's masked invertible layer y = t * x + f(x), f = W3 * elu(W2 * elu(W1 * x)) with
    masked k x k convs: lower-triangular Jacobian in raster (pixel, channel) order. Hidden units
    come in C groups of ``multiplier``; centre-tap weights inside a group are positive, so every
    diagonal entry t_c + sum over in-group paths is > 0 and the layer is invertible.
    x [B,C,H,W]; logdet = sum log(diagonal). Inverse: damped fixed-point iteration
    x <- x - damping * (F(x) - y) / diagonal(x), stopped when max |F(x) - y| < tol; a run that
    does not converge warns (or raises with ``strict``) and says so in ``last_inverse``.

    Args:
        channels: C.
        multiplier: hidden units per channel group.
        kernel_size: k of the masked convs.
        max_iter: fixed-point iterations of the inverse.
        tol: their stopping tolerance.
        damping: step size of the damped iteration.
        strict: raise instead of warning when the inverse does not reach ``tol``.

    References:
        Song, Meng & Ermon, "MintNet: Building Invertible Neural Networks with Masked Convolutions",
            NeurIPS 2019 (arXiv:1907.07945).
    """

    def __init__(
        self,
        channels: int,
        multiplier: int = 8,
        kernel_size: int = 3,
        max_iter: int = 100,
        tol: float = 1e-6,
        damping: float = 1.0,
        strict: bool = False,
    ):
        super().__init__()
        self.channels, self.m, self.k = channels, multiplier, kernel_size
        self.max_iter, self.tol, self.damping, self.strict = max_iter, tol, damping, strict
        hidden = channels * multiplier
        group_x, group_h = (lambda a: a), (lambda a: a // multiplier)
        shapes = [
            (hidden, channels, group_x, group_h),
            (hidden, hidden, group_h, group_h),
            (channels, hidden, group_h, group_x),
        ]
        self.free_counts: dict[str, int] = {}
        for i, (co, ci, gi, go) in enumerate(shapes):
            self.register_buffer(f"mask{i}", mintnet_masks(ci, co, gi, go, kernel_size))
            self.free_counts[f"w{i}"] = mintnet_mask_count(ci, co, gi, go, kernel_size)
            same = group_ids(gi, ci)[None, :] == group_ids(go, co)[:, None]
            self.register_buffer(
                f"in_group{i}", same.to(torch.get_default_device(), torch.get_default_dtype())
            )
            scale = 0.05 / math.sqrt(ci)
            self.register_parameter(
                f"w{i}", nn.Parameter(torch.randn(co, ci, kernel_size, kernel_size) * scale)
            )
            self.register_parameter(f"b{i}", nn.Parameter(torch.zeros(co)))
        centre = torch.zeros(kernel_size, kernel_size)
        centre[kernel_size // 2, kernel_size // 2] = 1.0
        self.register_buffer("centre", centre)
        self.log_t = nn.Parameter(torch.zeros(channels))
        self.last_inverse: dict[str, float | int | bool] = {}

    def parameter_masks(self) -> dict[str, Tensor]:
        return {f"w{i}": getattr(self, f"mask{i}") for i in range(3)}

    def free_parameter_counts(self) -> dict[str, int]:
        return dict(self.free_counts)

    def effective_weights(self) -> list[Tensor]:
        """Masked kernels whose in-group centre taps are made positive (|w| + 1e-3)."""
        out = []
        c = self.k // 2
        for i in range(3):
            w = getattr(self, f"w{i}") * getattr(self, f"mask{i}")
            centre = w[:, :, c, c]
            positive = torch.where(
                getattr(self, f"in_group{i}").bool(), centre.abs() + 1e-3, centre
            )
            out.append(w + (positive - centre)[:, :, None, None] * self.centre)
        return out

    def _f_and_diag(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """f(x) [B,C,H,W] and the diagonal of dF/dx [B,C,H,W] (F = t x + f)."""
        w1, w2, w3 = self.effective_weights()
        c = self.k // 2
        b1, b2, b3 = self.b0, self.b1, self.b2
        a1 = F.conv2d(x, w1, b1, padding=c)
        h1 = F.elu(a1)
        a2 = F.conv2d(h1, w2, b2, padding=c)
        h2 = F.elu(a2)
        f = F.conv2d(h2, w3, b3, padding=c)
        d1 = self._elu_grad(a1) * (w1[:, :, c, c] * self.in_group0).sum(1)[None, :, None, None]
        g2 = w2[:, :, c, c] * self.in_group1  # in-group centre taps only
        d2 = self._elu_grad(a2) * torch.einsum("oi,bihw->bohw", g2, d1)
        g3 = w3[:, :, c, c] * self.in_group2
        diag = torch.einsum("oi,bihw->bohw", g3, d2) + torch.exp(self.log_t)[None, :, None, None]
        return f, diag

    @staticmethod
    def _elu_grad(a: Tensor) -> Tensor:
        return torch.where(a > 0, torch.ones_like(a), torch.exp(a))

    def _evaluate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f, diag = self._f_and_diag(x)
        return torch.exp(self.log_t)[None, :, None, None] * x + f, diag

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, "MintNetLayer")
        y, diag = self._evaluate(x)
        return y, torch.log(diag).flatten(1).sum(1)

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.channels, "MintNetLayer.inverse")
        x = z / torch.exp(self.log_t)[None, :, None, None]
        residual, iterations = float("inf"), 0
        while iterations < self.max_iter:  # differentiable (unrolled) iterations
            iterations += 1
            y, diag = self._evaluate(x)
            error = y - z
            residual = error.abs().max().item() if error.numel() else 0.0  # batch size 0
            if residual < self.tol:
                break
            x = x - self.damping * error / diag
        converged = residual < self.tol
        self.last_inverse = {"iterations": iterations, "residual": residual, "converged": converged}
        if not converged:
            message = (
                f"MintNetLayer inverse did not converge in {self.max_iter} iterations (tol "
                f"{self.tol:g}); the residual is in last_inverse; raise max_iter or damping"
            )
            log.debug("MintNetLayer inverse residual %.3g", residual)
            if self.strict:
                raise RuntimeError(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        return x
