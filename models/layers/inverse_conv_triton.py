"""Fused Triton solver for the exact inverse of a causal convolution: one launch per solve.

Math (see `models.layers.inverse_conv`). T is the top-left padded causal k x k conv of a kernel
W [C, C, k, k]. Order image row i of x as one vector x_i of N = W C values, (column j, channel c)
at index j C + c. Row i obeys B_0 x_i = y_i - sum_{r=1}^{k-1} B_r x_{i-r}, with B_r the row
operators of kernel row r (`row_operators`); B_0 is block lower triangular (columns) with the
invertible centre tap A_0 on its diagonal, so with L = B_0^-1 and G_r = L B_r

    x_i = L y_i - sum_{r=1}^{k-1} G_r x_{i-r}        (rows before row 0 are zero).

L and G_r ([N, N] each, independent of the batch and of H) come from the same triangular solve
as the ``rows`` solver (`strip_operators` with one strip). Every G_r and L is block lower
triangular over columns: output column j reads input columns j' <= j only.

The kernel. One program owns BLOCK_B images of one channel group and walks the H rows in order.
Per row it computes the output row in column blocks of BLOCK_N values; for each block it sums
``tl.dot`` products of input blocks ([BLOCK_B, BLOCK_N]: y_i, x_{i-1}, ..., x_{i-k+1}; rows
above the image are skipped) with operator tiles ([BLOCK_N, BLOCK_N], zero-padded to whole
blocks), skipping the tiles above the block diagonal, and stores the block into x. The k - 1
previous rows it reads back are the rows it wrote itself in the previous steps (through L1/L2;
a ``tl.debug_barrier`` after each row makes them visible to the whole program). Grid:
(ceil(B / BLOCK_B), G) -- one launch per solve, whatever H, W or the number of groups. Around
it: the operators (a few small torch ops per group, independent of the batch) and, in the
backward, one grouped torch conv weight-gradient.

Entry points: `solve_triton` (one group, top-left) is ``DIRECT_SOLVERS["triton"]`` in
`models.layers.inverse_conv`, used by ``causal_solve(y, weight, "triton")``, whose backward
solves T^-T with it on flipped inputs and the transposed kernel. The layers (InverseConv2d,
FInCConv2d, CausalConv2d with ``solver="triton"``) call `grouped_causal_solve`: all their
channel groups in one launch, forward and backward.

Channel groups and orientations (FInC, CInC/Emerging): the input [B, G Cg, H, W] holds G
independent groups, group g solved with its own kernel [Cg, Cg, k, k] from corner
``orientations[g]`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, as
`models.layers.inverse_conv.orient`). The flips are index arithmetic in the kernel, not copies.

The backward of x = O T^-1 O y (O the orientation flip) is u = O T^-T O g. T^T is the
anti-causal conv of the channel-transposed kernel W^T (A_s -> A_s^T): T^T = S T_(W^T) S with S
the flip of both spatial axes, so u = O' T_(W^T)^-1 O' g with O' = O S, the opposite corner
(orientation o XOR 3): the same kernel, on the transposed kernel, from the other corner.

Where it runs. CUDA tensors: the compiled kernel. CPU tensors: Triton's interpreter, only when
the environment has ``TRITON_INTERPRET=1`` at call time (it is slow: tests and debugging only).
Triton 3.x reads that variable when ``triton.jit`` decorates a function, including its own
library helpers at ``import triton``. This module builds the compiled and the interpreted
variant of its kernel itself and the kernel calls builtins only, so the variable may be set
after triton is imported, and a CUDA call still compiles in a process that set it.
float32 and float64 only (products in IEEE precision, never TF32). Anything else raises
`TritonSolverUnavailable` with a one-line reason (`unavailable_reason`); there is no silent
fallback, so a benchmark labelled ``triton`` always measures this kernel.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from functools import cache

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from models.layers.inverse_conv import orient, strip_operators

DTYPES = (torch.float32, torch.float64)


class TritonSolverUnavailable(RuntimeError):
    """solver="triton" cannot run on these inputs; the message says why in one line."""


def interpreter_enabled() -> bool:
    """Whether ``TRITON_INTERPRET`` is set to a true value now (read at call time)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def unavailable_reason(y: Tensor, kernels: Tensor) -> str | None:
    """Why the Triton solver cannot solve y [B,C,H,W] with kernels [G,Cg,Cg,k,k], or None."""
    if y.dtype not in DTYPES:
        return f"dtype {y.dtype} is not supported (float32 and float64 only)"
    if kernels.dtype != y.dtype:
        return f"kernel dtype {kernels.dtype} differs from input dtype {y.dtype}"
    if kernels.device != y.device:
        return f"kernel on {kernels.device} but input on {y.device}"
    if y.device.type == "cpu" and not interpreter_enabled():
        return "CPU tensors run only under Triton's interpreter: set TRITON_INTERPRET=1"
    if y.device.type not in ("cpu", "cuda"):
        return f"device {y.device.type} is not supported (cuda, or cpu under TRITON_INTERPRET=1)"
    return None


def _row_solve_kernel(
    y_ptr,
    x_ptr,
    ops_ptr,
    batch,
    channels,
    height,
    width,
    orientation_bits,
    GROUP_CHANNELS: tl.constexpr,
    KERNEL_SIZE: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Row i of x = sum_r (row i - r of [y, x, ..., x]) @ ops[g, r], rows walked in order.

    y, x [B, C, H, W] contiguous; ops [G, k, Np, Np] contiguous, N = W Cg padded with zeros to
    Np = BLOCK_N ceil(N / BLOCK_N): ops[g, 0][q, o] = L[o, q], ops[g, r][q, o] = -G_r[o, q].
    Program (tile, g) solves images tile BLOCK_B .. tile BLOCK_B + BLOCK_B - 1 of group g; the
    group's flips are bits 2g (columns) and 2g + 1 (rows) of ``orientation_bits``.

    Only Triton builtins here: the ``@triton.jit`` helpers of ``triton.language.standard``
    (``tl.cdiv``, ``tl.zeros``, ...) are compiled or interpreted as decided when triton was
    imported, which would tie this kernel to that moment's ``TRITON_INTERPRET``.
    """
    tile = tl.program_id(0)
    group = tl.program_id(1)
    n_values = width * GROUP_CHANNELS
    blocks = (n_values + BLOCK_N - 1) // BLOCK_N
    n_padded = blocks * BLOCK_N
    plane = height * width
    flip_w = (orientation_bits >> (2 * group)) & 1
    flip_h = (orientation_bits >> (2 * group + 1)) & 1
    # In the group's oriented frame pixel (i, j) of channel c lives at
    # origin + c plane + i row_step + j column_step.
    row_step = width - 2 * width * flip_h
    column_step = 1 - 2 * flip_w
    images = tile * BLOCK_B + tl.arange(0, BLOCK_B)
    image_ok = images < batch
    origin = (
        images.to(tl.int64) * (channels * plane)
        + group * GROUP_CHANNELS * plane
        + flip_h * (plane - width)
        + flip_w * (width - 1)
    )
    y_origin = y_ptr + origin
    x_origin = x_ptr + origin
    lanes = tl.arange(0, BLOCK_N)
    op_lanes = lanes[:, None] * n_padded + lanes[None, :]
    ops_group = ops_ptr + group.to(tl.int64) * (KERNEL_SIZE * n_padded * n_padded)
    for i in range(height):
        for n in range(blocks):
            out = n * BLOCK_N + lanes  # (column, channel) indices j Cg + c of the output block
            # Operators are block lower triangular: only inputs up to the last channel of the
            # block's last column contribute.
            last_column = (tl.minimum(n * BLOCK_N + BLOCK_N, n_values) - 1) // GROUP_CHANNELS
            k_blocks = ((last_column + 1) * GROUP_CHANNELS - 1) // BLOCK_N + 1
            acc = tl.full((BLOCK_B, BLOCK_N), 0.0, y_ptr.dtype.element_ty)
            for kb in range(k_blocks):
                inp = kb * BLOCK_N + lanes
                inp_offsets = (inp % GROUP_CHANNELS) * plane + (inp // GROUP_CHANNELS) * column_step
                inp_mask = image_ok[:, None] & (inp < n_values)[None, :]
                for r in tl.static_range(KERNEL_SIZE):  # r = 0: y_i; r >= 1: x_(i-r)
                    if i >= r:  # rows above the image are zero
                        if r == 0:
                            source = y_origin
                        else:
                            source = x_origin
                        values = tl.load(
                            source[:, None] + ((i - r) * row_step + inp_offsets)[None, :],
                            mask=inp_mask,
                            other=0.0,
                        )
                        op_block = (r * n_padded + kb * BLOCK_N) * n_padded + n * BLOCK_N
                        op = tl.load(ops_group + op_block + op_lanes)
                        acc = tl.dot(values, op, acc, input_precision="ieee")
            out_offsets = (out % GROUP_CHANNELS) * plane + (out // GROUP_CHANNELS) * column_step
            tl.store(
                x_origin[:, None] + (i * row_step + out_offsets)[None, :],
                acc,
                mask=image_ok[:, None] & (out < n_values)[None, :],
            )
        tl.debug_barrier()  # row i is read back by rows i + 1 .. i + k - 1


@cache
def row_solve_kernel(interpret: bool):
    """The kernel, compiled (CUDA) or run by Triton's interpreter (CPU tensors)."""
    if interpret:
        from triton.runtime.interpreter import InterpretedFunction

        return InterpretedFunction(_row_solve_kernel)
    return triton.runtime.jit.JITFunction(_row_solve_kernel)


def solve_operators(kernels: Tensor, width: int, block_n: int) -> Tensor:
    """ops [G, k, Np, Np] for kernels [G, Cg, Cg, k, k] on rows of ``width``: ops[g, 0] = L^T,
    ops[g, r] = -G_r^T (r = 1..k-1), (column, channel) order, N = width Cg padded with zeros
    to Np, a multiple of ``block_n``; see the module docstring."""
    groups, cg, _, k, _ = kernels.shape
    n = width * cg
    padded = triton.cdiv(n, block_n) * block_n
    out = kernels.new_zeros(groups, k, padded, padded)
    for g, kernel in enumerate(kernels):
        inverse, coupling = strip_operators(kernel, width, halo=False)  # G = [G_(k-1)..G_1]
        out[g, 0, :n, :n] = inverse.T
        if k > 1:
            out[g, 1:, :n, :n] = coupling.T.unflatten(0, (k - 1, n)).flip(0).neg()
    return out


def default_blocks(n_values: int) -> tuple[int, int]:
    """(BLOCK_B, BLOCK_N): 16 images a program; column blocks of up to 64 values (at least 16,
    the smallest tile every ``tl.dot`` backend takes)."""
    return 16, min(64, max(16, triton.next_power_of_2(n_values)))


@torch.no_grad()
def solve_groups(
    y: Tensor,
    kernels: Tensor,
    orientations: tuple[int, ...],
    block_b: int | None = None,
    block_n: int | None = None,
) -> Tensor:
    """x = T^-1 y for every channel group in one launch (no autograd).

    y [B, G Cg, H, W], kernels [G, Cg, Cg, k, k] (centre taps invertible), ``orientations`` one
    corner per group -> x [B, G Cg, H, W] contiguous, group g = orient(T_g^-1 orient(y_g)).
    A non-contiguous y is copied first. ``block_b``/``block_n`` (powers of two) override
    `default_blocks` (tests use small ones).
    """
    reason = unavailable_reason(y, kernels)
    if reason:
        raise TritonSolverUnavailable(f"solver='triton' unavailable: {reason}")
    b, c, h, w = y.shape
    groups, cg, _, k, _ = kernels.shape
    if groups * cg != c or len(orientations) != groups:
        raise ValueError(
            f"{groups} groups of {cg} channels and {len(orientations)} orientations do not fit "
            f"input {tuple(y.shape)}"
        )
    y = y.contiguous()
    x = torch.empty_like(y)
    if x.numel() == 0:
        return x
    default_b, default_n = default_blocks(w * cg)
    block_b, block_n = block_b or default_b, block_n or default_n
    ops = solve_operators(kernels, w, block_n)
    bits = sum(o << (2 * g) for g, o in enumerate(orientations))
    kernel = row_solve_kernel(y.device.type == "cpu")
    grid = (triton.cdiv(b, block_b), groups)
    with torch.cuda.device(y.device) if y.is_cuda else nullcontext():
        kernel[grid](
            y, x, ops, b, c, h, w, bits,
            GROUP_CHANNELS=cg, KERNEL_SIZE=k, BLOCK_B=block_b, BLOCK_N=block_n,
        )  # fmt: skip
    return x


def solve_triton(y: Tensor, weight: Tensor) -> Tensor:
    """x = T^-1 y, one group from the top-left corner: the ``DIRECT_SOLVERS["triton"]`` entry.
    y [B,C,H,W], weight [C,C,k,k] -> x [B,C,H,W]."""
    return solve_groups(y, weight[None], (0,))


def oriented_groups(x: Tensor, orientations: tuple[int, ...]) -> Tensor:
    """[B, G Cg, H, W] with group g flipped by `orient` to its own corner's frame."""
    groups = x.chunk(len(orientations), dim=1)
    return torch.cat([orient(xg, o) for xg, o in zip(groups, orientations, strict=True)], 1)


class GroupedCausalSolve(torch.autograd.Function):
    """x = T^-1 y per channel group (one launch) with exact gradients.

    Backward, per group in its oriented frame: u = T^-T g (one launch for all groups: the
    transposed kernels from the opposite corners), dL/dy = u and dL/dW_g = -(conv weight
    gradient of u against x), all groups in one grouped ``conv2d_weight``.
    """

    @staticmethod
    def forward(ctx, y: Tensor, kernels: Tensor, orientations: tuple[int, ...]) -> Tensor:
        x = solve_groups(y, kernels, orientations)
        ctx.orientations = orientations
        ctx.save_for_backward(x, kernels)
        return x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_x: Tensor):
        x, kernels = ctx.saved_tensors
        orientations = ctx.orientations
        opposite = tuple(o ^ 3 for o in orientations)
        u = solve_groups(grad_x, kernels.transpose(1, 2), opposite)
        grad_kernels = None
        if ctx.needs_input_grad[1]:
            groups, cg, _, k, _ = kernels.shape
            x_pad = F.pad(oriented_groups(x, orientations), (k - 1, 0, k - 1, 0))
            grad = torch.nn.grad.conv2d_weight(
                x_pad, (groups * cg, cg, k, k), oriented_groups(u, orientations), groups=groups
            )
            grad_kernels = -grad.view_as(kernels)
        return u, grad_kernels, None


def grouped_causal_solve(y: Tensor, kernels: Tensor, orientations: tuple[int, ...]) -> Tensor:
    """Differentiable `solve_groups`: y [B, G Cg, H, W], kernels [G, Cg, Cg, k, k] -> x."""
    return GroupedCausalSolve.apply(y, kernels, tuple(orientations))
