"""`python -m bench layers --family inverse_conv`: the inverse-of-convolution solvers against
conv2d and a dense triangular solve, at batch 100, as ratios to conv2d.

For each shape: conv2d (the sampling direction of Inverse-Flow and the density direction of
FInC/CInC), each exact solver's solve T^-1 y (Inverse-Flow's density direction, FInC/CInC's
sampling direction) and its backward (dL/dy and dL/dW from the custom autograd Function), and
`torch.linalg.solve_triangular` with the explicit D x D matrix (built once, not timed).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import torch

from bench.timing import Timing, device_name, time_call
from models.layers.inverse_conv import causal_conv, causal_solve, dense_operator

log = logging.getLogger(__name__)

INVERSE_CONV_SHAPES = ((1, 28, 28), (4, 14, 14), (3, 32, 32), (12, 16, 16))
INVERSE_CONV_SOLVERS = ("wavefront", "rows", "power_series")


def random_unit_causal_kernel(c: int, k: int, device, dtype, scale: float = 0.05) -> torch.Tensor:
    """An Inverse-Flow kernel: random taps, unit lower triangular centre."""
    weight = scale * torch.randn(c, c, k, k, device=device, dtype=dtype)
    centre = torch.tril(weight[:, :, -1, -1], -1) + torch.eye(c, device=device, dtype=dtype)
    weight[:, :, -1, -1] = centre
    return weight


def _row(shape, method, what, timing: Timing, conv: Timing) -> dict[str, Any]:
    return {
        "shape": "x".join(map(str, shape)),
        "method": method,
        "pass": what,
        "ms": timing.mean_ms,
        "std_ms": timing.std_ms,
        "ratio_to_conv2d": timing.ratio(conv),
    }


def _benchmark_shape(shape, device, batch, kernel_size, runs, solvers, dtype):
    c, h, w = shape
    weight = random_unit_causal_kernel(c, kernel_size, device, dtype)
    y = torch.randn(batch, *shape, device=device, dtype=dtype)
    with torch.no_grad():
        conv = time_call(partial(causal_conv, y, weight), device, runs)
    rows = [_row(shape, "conv2d", "conv", conv, conv)]
    for solver in solvers:
        with torch.no_grad():
            solve = time_call(partial(causal_solve, y, weight, solver), device, runs)
        rows.append(_row(shape, solver, "solve", solve, conv))
        y_req = y.clone().requires_grad_()
        w_req = weight.clone().requires_grad_()
        x = causal_solve(y_req, w_req, solver)
        backward_pass = partial(
            torch.autograd.grad, x, (y_req, w_req), torch.randn_like(x), retain_graph=True
        )
        rows.append(_row(shape, solver, "backward", time_call(backward_pass, device, runs), conv))
        log.info("%s %s done", shape, solver)
    matrix = dense_operator(weight, h, w)
    rhs = y.reshape(batch, -1).T.contiguous()
    dense = time_call(
        partial(torch.linalg.solve_triangular, matrix, rhs, upper=False), device, runs
    )
    rows.append(_row(shape, "dense_solve_triangular", "solve", dense, conv))
    return rows


def benchmark_inverse_conv(
    device: str = "cpu",
    batch: int = 100,
    kernel_size: int = 3,
    runs: int = 10,
    shapes=INVERSE_CONV_SHAPES,
    solvers=INVERSE_CONV_SOLVERS,
    dtype: torch.dtype = torch.float32,
) -> list[dict[str, Any]]:
    """Time every solver on every shape; one result row per (shape, method, pass)."""
    rows = []
    for shape in shapes:
        rows += _benchmark_shape(shape, device, batch, kernel_size, runs, solvers, dtype)
    for row in rows:
        row.update(device=device_name(device), batch=batch, kernel_size=kernel_size)
    return rows
