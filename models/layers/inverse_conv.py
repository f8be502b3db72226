"""Causal (masked) convolutions and their exact inverses: Inverse-Flow, FInC Flow, CInC Flow.

A k x k convolution with top-left zero padding of k - 1 reads, for output pixel p, the inputs at
p - s for offsets s in {0..k-1}^2: ``y[p] = sum_s A_s x[p - s]`` with ``A_s = W[:, :, k-1-s1,
k-1-s2]`` (C x C). With an invertible centre tap ``A_0`` the operator T is block lower triangular
in raster order (pixel blocks), so ``x = T^-1 y`` is a triangular solve. Exact solvers:

- ``wavefront``: the Inverse-Flow/FInC reference. Pixels on one anti-diagonal i + j = d depend
  only on earlier anti-diagonals, so H + W - 1 sequential steps, each vectorised over the
  pixels of the diagonal and the batch.
- ``power_series``: T is multiplication by the matrix-valued power series K(z1, z2) = sum_s A_s
  z^s, so on an H x W image T^-1 is the causal convolution with the first H x W terms of
  K^-1. Those come from Newton's iteration h <- h + h (I - K h) at full size (the error
  I - K h squares each step, so its lowest total degree doubles: ceil(log2(H + W - 1)) + 1
  steps suffice), then x = h * y with FFTs of size 2H x 2W (no wrap-around) and one C x C
  matrix product per frequency. Sequential depth O(log(H + W)) instead of H + W.
- ``rows`` (default): one image row at a time. Row i obeys B_0 x_i = y_i - sum_r B_r x_{i-r}
  with B_r the (W C) x (W C) matrix of kernel row r; B_0 is (block) lower triangular, inverted
  once per call (independent of the batch), so each of the H steps is one matrix product. On
  CPUs wide rows are cut into strips solved as a pipeline (H + S - 1 steps): smaller products,
  about Ws / W of the multiply-adds.
- ``dense``: the explicit D x D matrix and `torch.linalg.solve` (reference, small images).
- ``triton``: the ``rows`` recurrence in one fused Triton kernel launch per solve, all channel
  groups of a layer together (`models.layers.inverse_conv_triton`; CUDA tensors, or CPU tensors
  under ``TRITON_INTERPRET=1``; triton is imported on first use).

Gradients of x = T^-1 y (`CausalSolve`): with g = dL/dx, u = T^-T g (an anti-causal solve:
the same solver on the spatially flipped, channel-reversed transposed kernel, or the conjugate
transpose of the inverse kernel's spectrum), dL/dy = u and dL/dW = -(conv weight gradient of
u against x).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from models.core import (
    Bijection,
    SingularOperatorError,
    check_image,
    dense_matrix,
    zero_logdet,
)
from models.layers.fourier import irfft2, rfft2

SOLVERS = ("wavefront", "rows", "power_series", "dense")
# Needs triton: CUDA tensors, or CPU tensors under TRITON_INTERPRET=1 (`inverse_conv_triton`).
OPTIONAL_SOLVERS = ("triton",)


def check_weight(weight: Tensor) -> None:
    """A kernel [C, C, k, k] whose centre (bottom-right) tap is invertible."""
    if (
        weight.dim() != 4
        or weight.shape[0] != weight.shape[1]
        or weight.shape[2] != weight.shape[3]
    ):
        raise ValueError(f"causal conv weight must be [C, C, k, k], got {tuple(weight.shape)}")


def check_invertible(weight: Tensor, name: str) -> None:
    """Raise `SingularOperatorError` naming ``name`` unless the causal conv T of ``weight``
    [..., C, C, k, k] (one kernel or a batch of them) is finite and invertible.

    T is block lower triangular with the centre tap A_0 in every diagonal block, so T^-1 exists
    exactly when A_0^-1 does. A lower triangular A_0 (every layer's) is checked by its diagonal,
    O(C) and one device sync; any other A_0 by the pivots of its LU factorisation. A pivot
    counts as zero when its reciprocal overflows (a subnormal pivot gives infinite x). Every
    solver goes through this one check (`causal_solve`), and so does the conv direction of the
    layers: a singular T would otherwise give non-finite x or a wrong logdet silently.
    """
    weight = weight.detach()
    centre = weight[..., -1, -1]
    pivots = centre.diagonal(dim1=-2, dim2=-1)
    finite = torch.isfinite(weight).all()
    triangular = (centre.triu(1) == 0).all()
    if bool(finite & triangular & torch.isfinite(pivots.reciprocal()).all()):
        return  # the common case, one device sync; below only a failure or a general centre
    if not bool(finite):
        raise SingularOperatorError(
            f"{name}: the kernel has non-finite entries (NaN or inf), not a valid operator"
        )
    what = "the centre tap's diagonal has a zero entry"
    if not bool(triangular):
        pivots = torch.linalg.lu_factor_ex(centre).LU.diagonal(dim1=-2, dim2=-1)
        what = "the centre tap has a zero LU pivot"
    zero = ~torch.isfinite(pivots.reciprocal())
    if bool(zero.any()):
        where = zero.nonzero()[0].tolist()
        at = f"group {where[0]}, channel {where[1]}" if len(where) == 2 else f"channel {where[0]}"
        raise SingularOperatorError(f"{name}: {what} at {at} (singular operator)")


def causal_conv(x: Tensor, weight: Tensor) -> Tensor:
    """y = T x: conv2d with top-left zero padding k - 1. x [B,C,H,W] -> y [B,C,H,W]."""
    k = weight.shape[-1]
    return F.conv2d(F.pad(x, (k - 1, 0, k - 1, 0)), weight)


def transposed_kernel(weight: Tensor) -> Tensor:
    """Kernel W' with T_W^T = R T_W' R, R = flip of both spatial axes and of the channels.

    W'[c, c', a, b] = W[C-1-c', C-1-c, a, b]: transpose the channel matrix and reverse channels
    (a unit lower triangular centre stays lower triangular).
    """
    return weight.transpose(0, 1).flip(0, 1)


def flip_all(x: Tensor) -> Tensor:
    return x.flip(1, 2, 3)


@lru_cache(maxsize=64)
def _diagonal_index(h: int, w: int, k: int, d: int, device: str):
    i = torch.arange(max(0, d - w + 1), min(d, h - 1) + 1, device=device)
    j = d - i
    a = torch.arange(k, device=device).repeat_interleave(k)
    b = torch.arange(k, device=device).repeat(k)
    rows = i[None, :] + a[:, None]
    cols = j[None, :] + b[:, None]
    return i, j, rows, cols


@torch.no_grad()
def solve_wavefront(y: Tensor, weight: Tensor) -> Tensor:
    """x = T^-1 y by anti-diagonal substitution: H + W - 1 vectorised steps.

    y [B,C,H,W], weight [C,C,k,k] -> x [B,C,H,W].
    """
    b, c, h, w = y.shape
    k = weight.shape[-1]
    centre = weight[:, :, -1, -1]
    off_centre = weight.clone()
    off_centre[:, :, -1, -1] = 0
    off_centre = off_centre.reshape(c, c, k * k)
    lu = torch.linalg.lu_factor(centre)
    xpad = y.new_zeros(b, c, h + k - 1, w + k - 1)
    for d in range(h + w - 1):
        i, j, rows, cols = _diagonal_index(h, w, k, d, str(y.device))
        patches = xpad[:, :, rows, cols]  # [B, C, k*k, n]
        rhs = y[:, :, i, j] - torch.einsum("ocs,bcsn->bon", off_centre, patches)
        n = i.numel()
        rhs = rhs.permute(1, 0, 2).reshape(c, b * n)
        x_diag = torch.linalg.lu_solve(*lu, rhs).reshape(c, b, n).permute(1, 0, 2)
        xpad[:, :, i + k - 1, j + k - 1] = x_diag
    return xpad[:, :, k - 1 :, k - 1 :].contiguous()


@lru_cache(maxsize=64)
def _tap_index(w: int, k: int, device: str) -> Tensor:
    """[w, w]: the tap s2 = j - j' that links column j' to column j in a row operator, or k (a
    zero tap) where 0 <= j - j' < k does not hold."""
    j = torch.arange(w, device=device)
    shift = j[:, None] - j[None, :]
    return torch.where((shift >= 0) & (shift < k), shift, k)


def row_operators(weight: Tensor, w: int) -> Tensor:
    """Row matrices B_r [k, (w C), (w C)], r = 0..k-1, ordered (column j, channel c): the part
    of T that maps image row i - r to row i, ``B_r[(j, .), (j - s2, .)] = A_(r, s2)``."""
    c, k = weight.shape[0], weight.shape[-1]
    taps = weight.flip(2, 3).permute(2, 3, 0, 1)  # [r, s2, C, C] = A_(r, s2)
    taps = torch.cat([taps, taps.new_zeros(k, 1, c, c)], dim=1)  # s2 = k: zero
    blocks = taps[:, _tap_index(w, k, str(weight.device))]  # [r, j, j', C, C]
    return blocks.permute(0, 1, 3, 2, 4).reshape(k, w * c, w * c)


STRIP_VALUES = 48


def default_strips(channels: int, width: int, device: torch.device) -> int:
    """Strips per row for `solve_rows`. On GPUs one (the fewest kernel launches per step). On
    CPUs rows of at least three strips' worth of values are cut into strips of about
    ``STRIP_VALUES`` values (Ws C): those products cost fewer flops than the full-row ones and
    still run at BLAS speed; with two strips the saved flops do not pay for the halo copy and
    the extra step (measured with ``python -m bench layers --device cpu``)."""
    strips = width * channels // STRIP_VALUES
    return strips if device.type == "cpu" and strips >= 3 else 1


def strip_operators(weight: Tensor, strip_width: int, halo: bool) -> tuple[Tensor, Tensor]:
    """(L_s, G) of one strip of ``strip_width`` columns, ordered (column, channel).

    With B'_r the row operators (`row_operators`) on the strip and its k - 1 left neighbour
    columns (the halo), split into own and halo columns: L_s = B'_0[own, own]^-1
    [Ws C, Ws C] and G = L_s [B'_(k-1) .. B'_1 (rows i-k+1..i-1: halo and own columns),
    B'_0 (row i: halo columns)]. Without ``halo`` (one strip: the left neighbour is zero
    padding) G = L_s [B'_(k-1) .. B'_1][own, own] [Ws C, (k-1) Ws C].
    """
    c, k = weight.shape[0], weight.shape[-1]
    n = strip_width * c
    ops = row_operators(weight, strip_width + k - 1)
    left, own = slice(None, (k - 1) * c), slice((k - 1) * c, None)
    columns = slice(None) if halo else own
    rhs = [torch.eye(n, dtype=weight.dtype, device=weight.device)]
    rhs += [ops[r][own, columns] for r in range(k - 1, 0, -1)]
    if halo:
        rhs.append(ops[0][own, left])
    centre = weight[:, :, -1, -1]
    if torch.equal(centre, centre.tril()):
        solved = torch.linalg.solve_triangular(ops[0][own, own], torch.cat(rhs, 1), upper=False)
    else:  # a general invertible centre: the strip block is only block lower triangular
        solved = torch.linalg.solve(ops[0][own, own], torch.cat(rhs, 1))
    return solved[:, :n], solved[:, n:]


@torch.no_grad()
def solve_rows(y: Tensor, weight: Tensor, strips: int | None = None) -> Tensor:
    """x = T^-1 y row by row, each row in S strips run as a pipeline: H + S - 1 steps, each one
    matrix product. y [B,C,H,W] -> x [B,C,H,W].

    Row i obeys B_0 x_i = y_i - sum_{r>=1} B_r x_{i-r} (`row_operators`; B_0 is a causal 1-D
    conv along the row). Cut the row into S strips of Ws columns (W padded on the right to
    S Ws: causal, so padding never reaches a real column). Strip s of row i depends on rows
    i-k+1..i-1 of itself and on the last k-1 columns of strip s-1 (its halo) in rows
    i-k+1..i: x_(i,s) = L_s y_(i,s) - G u_(i,s) (`strip_operators`), u those inputs. L_s y is
    one product for all rows up front. Strip s runs one step behind strip s-1, so at step t
    every strip s solves its row t - s at once: copy the halo of row t - s from strip s-1
    (solved at step t - 1), then one [B S, K] x [K, Ws C] product. S = 1 is the plain row
    recurrence with dense [W C, W C] operators; more strips trade S - 1 extra steps for about
    3 Ws C^2 instead of 3 W C^2 multiply-adds per pixel (``strips``: `default_strips`).

    Storage z [S (+1), B, rows, halo + Ws C] is skewed: strip s keeps image row i in buffer row
    i + s + k, so at step t every strip's inputs, rows t+1..t+k-1 and the halo of row t+k, are
    one contiguous window just before its output, the own columns of row t+k. With halos a
    zero strip 0 is the left neighbour of strip 1.
    """
    b, c, h, w = y.shape
    k = weight.shape[-1]
    pad = k - 1
    strips = strips or default_strips(c, w, y.device)
    strip_width = max(math.ceil(w / strips), pad, 1)
    strips = math.ceil(w / strip_width)
    n, padded_width = strip_width * c, strips * strip_width
    halo = pad * c if strips > 1 else 0
    inverse, coupling = strip_operators(weight, strip_width, halo=halo > 0)
    if padded_width > w:
        y = F.pad(y, (0, padded_width - w))
    strip_rows = y.unflatten(-1, (strips, strip_width)).permute(3, 0, 2, 4, 1)  # [S,B,H,Ws,C]
    solved = strip_rows.reshape(-1, n) @ inverse.T  # L_s y for every row of every strip
    first = 1 if halo else 0
    z = y.new_zeros(first + strips, b, h + strips + pad, halo + n)
    strip_stride, batch_stride, row_stride, _ = z.stride()
    skewed = z.as_strided(
        (strips, b, h, n),
        (strip_stride + row_stride, batch_stride, row_stride, 1),
        first * strip_stride + k * row_stride + halo,
    )  # [strip s, batch, image row i] -> own columns of z[first + s, batch, i + s + k]
    skewed.copy_(solved.view(strips, b, h, n))
    coupling = coupling.T.neg()
    window = pad * (halo + n) + halo
    rows, left_rows = z[first:].flatten(0, 1), z[: first + strips - 1].flatten(0, 1)  # [S B, ..]
    for t in range(h + strips - 1) if pad else ():
        if halo:
            rows[:, t + k, :halo].copy_(left_rows[:, t + k - 1, -halo:])
        rows[:, t + k, halo:].addmm_(rows[:, t + 1 : t + k + 1].flatten(1)[:, :window], coupling)
    x = solved.view(b, c, h, strips, strip_width)  # reused: one fresh allocation fewer per call
    x.copy_(skewed.unflatten(-1, (strip_width, c)).permute(1, 4, 2, 0, 3))
    x = x.view(b, c, h, padded_width)
    return x if padded_width == w else x[..., :w].contiguous()


def inverse_kernel_spectrum(weight: Tensor, h: int, w: int) -> Tensor:
    """Spectrum [F, C, C] of the first h x w terms of K^-1, on an FFT grid of 2h x 2w.

    Newton's iteration at full size: h <- h + h (I - K h), truncated to h x w each step.
    """
    c = weight.shape[0]
    size = (2 * h, 2 * w)
    series = weight.flip(2, 3)[:, :, :h, :w]  # A_s at offset s
    k_hat = _to_freq(rfft2(series, s=size))
    eye = torch.eye(c, dtype=weight.dtype, device=weight.device)
    inv = weight.new_zeros(c, c, h, w)
    inv[:, :, 0, 0] = torch.linalg.inv(weight[:, :, -1, -1])
    steps = math.ceil(math.log2(max(h + w - 1, 2))) + 1
    for _ in range(steps):
        inv_hat = _to_freq(rfft2(inv, s=size))
        residual = _from_freq(-k_hat @ inv_hat, size)[:, :, :h, :w]
        residual[:, :, 0, 0] += eye
        res_hat = _to_freq(rfft2(residual, s=size))
        inv = inv + _from_freq(inv_hat @ res_hat, size)[:, :, :h, :w]
    return _to_freq(rfft2(inv, s=size))


def _to_freq(spectrum: Tensor) -> Tensor:
    """[C, C', n1, n2] -> [n1 * n2, C, C'] (one matrix per frequency)."""
    c0, c1 = spectrum.shape[:2]
    return spectrum.reshape(c0, c1, -1).permute(2, 0, 1).contiguous()


def _from_freq(matrices: Tensor, size: tuple[int, int]) -> Tensor:
    """[F, C, C'] on the rfft2 grid of ``size`` -> real [C, C', *size]."""
    n1, n2 = size
    c0, c1 = matrices.shape[1:]
    spectrum = matrices.permute(1, 2, 0).reshape(c0, c1, n1, n2 // 2 + 1)
    return irfft2(spectrum, s=size)


def apply_spectrum(y: Tensor, spectrum: Tensor, adjoint: bool = False) -> Tensor:
    """Causal convolution of y [B,C,H,W] with the kernel whose spectrum [F,C,C] is given
    (or its adjoint, the anti-causal correlation with the transposed kernel), cropped to H x W."""
    b, c, h, w = y.shape
    size = (2 * h, 2 * w)
    y_hat = rfft2(y, s=size).flatten(2).permute(2, 1, 0).contiguous()  # [F,C,B]
    mat = spectrum.conj().transpose(1, 2).contiguous() if adjoint else spectrum
    x_hat = (mat @ y_hat).permute(2, 1, 0).reshape(b, c, size[0], size[1] // 2 + 1)
    return irfft2(x_hat, s=size)[:, :, :h, :w]


def dense_operator(weight: Tensor, h: int, w: int) -> Tensor:
    """The explicit [D, D] matrix of T on C x h x w images (D = C h w), raster order (c, i, j)."""
    return dense_matrix(lambda v: causal_conv(v, weight), (weight.shape[0], h, w), weight)


def solve_dense(y: Tensor, weight: Tensor) -> Tensor:
    """x = T^-1 y through the explicit matrix (reference; small images only)."""
    b, c, h, w = y.shape
    matrix = dense_operator(weight, h, w)
    return torch.linalg.solve(matrix, y.flatten(1).T).T.reshape(b, c, h, w)


def triton_solvers():
    """`models.layers.inverse_conv_triton`, imported on first use (this module imports where
    triton is missing)."""
    try:
        from models.layers import inverse_conv_triton
    except ImportError as error:
        message = f"solver='triton' unavailable: triton not importable ({error})"
        raise RuntimeError(message) from error
    return inverse_conv_triton


def solve_triton(y: Tensor, weight: Tensor) -> Tensor:
    """x = T^-1 y by the fused Triton kernel, one launch. y [B,C,H,W] -> x [B,C,H,W]."""
    return triton_solvers().solve_triton(y, weight)


# Solvers that take (y, weight); power_series instead keeps its inverse-kernel spectrum.
DIRECT_SOLVERS = {
    "wavefront": solve_wavefront,
    "rows": solve_rows,
    "dense": solve_dense,
    "triton": solve_triton,
}


class CausalSolve(torch.autograd.Function):
    """x = T^-1 y with exact gradients: dL/dy = T^-T g, dL/dW = -conv_weight_grad(x, u)."""

    @staticmethod
    def forward(ctx, y: Tensor, weight: Tensor, solver: str) -> Tensor:
        state = None
        if solver == "power_series":
            state = inverse_kernel_spectrum(weight, y.shape[2], y.shape[3])
            x = apply_spectrum(y, state)
        else:
            x = DIRECT_SOLVERS[solver](y, weight)
        ctx.solver, ctx.state = solver, state
        ctx.save_for_backward(x, weight)
        return x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_x: Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_x.contiguous()
        if ctx.solver == "power_series":
            u = apply_spectrum(grad_x, ctx.state, adjoint=True)
        else:
            solve = DIRECT_SOLVERS[ctx.solver]
            u = flip_all(solve(flip_all(grad_x), transposed_kernel(weight)))
        grad_w = None
        if ctx.needs_input_grad[1]:
            k = weight.shape[-1]
            x_pad = F.pad(x, (k - 1, 0, k - 1, 0))
            grad_w = -torch.nn.grad.conv2d_weight(x_pad, weight.shape, u)
        return u, grad_w, None


def causal_solve(
    y: Tensor, weight: Tensor, solver: str = "rows", name: str = "causal_solve"
) -> Tensor:
    """x = T^-1 y for the causal conv T of ``weight``. y [B,C,H,W] -> x [B,C,H,W].

    A singular or non-finite T raises `SingularOperatorError` naming ``name`` (the layer).
    """
    check_weight(weight)
    check_invertible(weight, name)
    if solver not in SOLVERS + OPTIONAL_SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose from {SOLVERS + OPTIONAL_SOLVERS}")
    return CausalSolve.apply(y, weight, solver)


def orient(x: Tensor, orientation: int) -> Tensor:
    """Flip x [B,C,H,W] so that a top-left causal conv acts from corner ``orientation``:
    0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right. Its own inverse."""
    dims = {0: (), 1: (3,), 2: (2,), 3: (2, 3)}[orientation]
    return x.flip(dims) if dims else x


def causal_masks(channels: int, k: int) -> tuple[Tensor, Tensor]:
    """(free, strict_lower): the learnable entries of a causal kernel [C,C,k,k] (all taps but
    the centre, plus the strict lower triangle of the centre) and the centre's diagonal."""
    free = torch.ones(channels, channels, k, k)
    free[:, :, -1, -1] = torch.tril(torch.ones(channels, channels), -1)
    diag = torch.zeros(channels, channels, k, k)
    diag[:, :, -1, -1] = torch.eye(channels)
    return free, diag


class _CausalKernel(Bijection):
    """A learnable causal kernel [G, C/G, C/G, k, k] in G channel groups, group g acting from
    corner ``orientations[g]``. The centre tap is lower triangular with diagonal exp(log_diag)
    (fixed 1 when ``learn_diagonal`` is False, as in Inverse-Flow/FInC)."""

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        orientations: tuple[int, ...],
        learn_diagonal: bool,
        solver: str,
        init_std: float = 0.01,
    ):
        super().__init__()
        groups = len(orientations)
        if channels % groups:
            raise ValueError(
                f"{type(self).__name__} needs channels divisible by {groups}, got {channels}"
            )
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
        if solver not in SOLVERS + OPTIONAL_SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose from {SOLVERS + OPTIONAL_SOLVERS}")
        self.channels, self.kernel_size, self.solver = channels, kernel_size, solver
        self.orientations = orientations
        cg = channels // groups
        free, diag = causal_masks(cg, kernel_size)
        self.register_buffer("free", free)
        self.register_buffer("diag", diag)
        self.weight = nn.Parameter(init_std * torch.randn(groups, cg, cg, kernel_size, kernel_size))
        self.log_diag = nn.Parameter(torch.zeros(groups, cg)) if learn_diagonal else None

    def parameter_masks(self) -> dict[str, Tensor]:
        return {"weight": self.free.expand_as(self.weight)}

    def free_parameter_counts(self) -> dict[str, int]:
        """The entries `parameter_masks` leaves free (all taps but the centre, plus the strict
        lower triangle of the centre, per group), without reading the mask (meta builds)."""
        groups, cg, _, k, _ = self.weight.shape
        return {"weight": groups * (cg * cg * (k * k - 1) + cg * (cg - 1) // 2)}

    def kernels(self) -> Tensor:
        """Effective kernels [G, C/G, C/G, k, k]."""
        diag = self.diag
        if self.log_diag is not None:
            diag = diag * torch.exp(self.log_diag)[:, :, None, None, None]
        return self.weight * self.free + diag

    def logdet_per_pixel(self) -> Tensor:
        return self.log_diag.sum() if self.log_diag is not None else self.weight.new_zeros(())

    def _per_group(self, x: Tensor, op, kernels: Tensor | None = None) -> Tensor:
        groups = x.chunk(len(self.orientations), dim=1)
        kernels = self.kernels() if kernels is None else kernels
        out = [
            orient(op(orient(xg, o), kernel), o)
            for xg, o, kernel in zip(groups, self.orientations, kernels, strict=True)
        ]
        return torch.cat(out, dim=1)

    def conv(self, x: Tensor) -> Tensor:
        """T x; raises `SingularOperatorError` if T is singular (then no bijection)."""
        check_image(x, self.channels, type(self).__name__)
        kernels = self.kernels()
        check_invertible(kernels, type(self).__name__)
        return self._per_group(x, causal_conv, kernels)

    def solve(self, y: Tensor) -> Tensor:
        """T^-1 y; `causal_solve` raises `SingularOperatorError` naming this layer."""
        check_image(y, self.channels, type(self).__name__)
        name = type(self).__name__
        if self.solver == "triton":  # every channel group in one launch
            kernels = self.kernels()
            check_invertible(kernels, name)
            return triton_solvers().grouped_causal_solve(y, kernels, self.orientations)
        return self._per_group(y, lambda v, w: causal_solve(v, w, self.solver, name))

    def logdet(self, x: Tensor) -> Tensor:
        return (x.shape[2] * x.shape[3] * self.logdet_per_pixel()).expand(x.shape[0])


class InverseConv2d(_CausalKernel):
    """Inverse-Flow's inverse of a k x k convolution. x [B,C,H,W] -> z = T^-1 x; logdet = 0.

    T: top-left padded causal conv with ``W[c,c,-1,-1] = 1`` fixed and ``W[c,c+1:,-1,-1] = 0``.
    The density direction is the exact solve (selectable ``solver``), the sampling direction one
    conv2d.

    Args:
        channels: C.
        kernel_size: k of the k x k convolution T (2 in the Inverse-Flow MNIST code, 3 for
            CIFAR-10).
        solver: the exact solve of T^-1: ``rows`` (default), ``wavefront``, ``power_series`` or
            ``triton`` (`causal_solve`).

    References:
        Nagar, "Parallel Backpropagation for Inverse of a Convolution with Application to
            Normalizing Flows" (Inverse-Flow; Nagar & Varma, IIIT Hyderabad).
    """

    def __init__(self, channels: int, kernel_size: int = 3, solver: str = "rows"):
        super().__init__(channels, kernel_size, (0,), False, solver)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.solve(x), zero_logdet(x)

    def inverse(self, z: Tensor) -> Tensor:
        return self.conv(z)


class FInCConv2d(_CausalKernel):
    """FInC Flow's conv: C/4 channel groups, each a causal conv from one of the four corners.
    x [B,C,H,W] -> z = T x (density direction, one conv); logdet = 0; inverse by the solver.

    Args:
        channels: C (groups of C/4 channels, one per corner).
        kernel_size: k.
        solver: the exact solve used by ``inverse`` (as `InverseConv2d`).

    References:
        Kallappa, Nagar & Varma, "FInC Flow: Fast and Invertible k x k Convolutions for Normalizing
            Flows", VISAPP 2023 (arXiv:2301.09266).
    """

    def __init__(self, channels: int, kernel_size: int = 3, solver: str = "rows"):
        super().__init__(channels, kernel_size, (0, 1, 2, 3), False, solver)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.conv(x), zero_logdet(x)

    def inverse(self, z: Tensor) -> Tensor:
        return self.solve(z)


class CausalConv2d(_CausalKernel):
    """Causal k x k conv over all channels with a learnable diagonal (CInC Flow; the
    autoregressive convs of Emerging). x [B,C,H,W] -> z = T x; logdet = H W sum log_diag;
    inverse by the solver (sequential ``wavefront`` by default, as in the originals).

    Args:
        channels: C.
        kernel_size: k.
        orientation: the corner the causal kernel acts from: 0 top-left, 1 top-right, 2
            bottom-left, 3 bottom-right (`orient`).
        solver: the exact solve used by ``inverse`` (default ``wavefront``).

    References:
        Nagar, Dufraisse & Varma, "CInC Flow: Characterizable Invertible 3x3 Convolution"
            (arXiv:2107.01358).
        Hoogeboom, van den Berg & Welling, "Emerging Convolutions for Generative Normalizing Flows",
            ICML 2019 (arXiv:1901.11137).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        orientation: int = 0,
        solver: str = "wavefront",
    ):
        super().__init__(channels, kernel_size, (orientation,), True, solver)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.conv(x), self.logdet(x)

    def inverse(self, z: Tensor) -> Tensor:
        return self.solve(z)
