"""`python -m bench layers --family inverse_conv`: the inverse-of-convolution solvers against
conv2d and a dense triangular solve, at batch 100, as ratios to conv2d.

For each shape: conv2d (the sampling direction of Inverse-Flow and the density direction of
FInC/CInC), each exact solver's solve T^-1 y (Inverse-Flow's density direction, FInC/CInC's
sampling direction) and its backward (dL/dy and dL/dW from the custom autograd Function), and
`torch.linalg.solve_triangular` with the explicit D x D matrix (built once, not timed).

Each measurement is paired with a conv2d timing taken just before it, and its ratio is to that
conv2d: on a shared machine whose speed drifts within seconds, a ratio of two timings taken
minutes apart measures the drift as much as the method.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bench.evaluators.timing import Timing, device_name, time_call
from bench.records import append_records, make_record, records_path
from bench.report.plots import fourier_scaling
from models.core import dense_matrix
from models.layers.circulant import CirculantDiagonal
from models.layers.fourier import CircularConv2d, SymmetricConv2d
from models.layers.inverse_conv import causal_conv, causal_solve, dense_operator

log = logging.getLogger(__name__)

INVERSE_CONV_SHAPES = ((1, 28, 28), (4, 14, 14), (3, 32, 32), (12, 16, 16))
INVERSE_CONV_SOLVERS = ("wavefront", "rows", "power_series")


def append_layer_records(
    rows: list[dict[str, Any]],
    family: str,
    name_keys: tuple[str, ...],
    metric_keys: tuple[str, ...],
    config_keys: tuple[str, ...],
    results_dir,
):
    """Append one results/runs/layers.jsonl record per benchmark row, named
    ``family/<name_keys...>``; returns the file path and the number of records."""
    records = [
        make_record(
            "layers",
            "/".join([family, *(str(r[k]) for k in name_keys)]),
            "synthetic",
            {k: r[k] for k in metric_keys},
            device=r["device"],
            profile="benchmark",
            config={k: r[k] for k in config_keys},
        )
        for r in rows
    ]
    path = records_path(Path(results_dir), "layers")
    append_records(path, records)
    return path, len(records)


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

    def paired(method, what, call):
        """One row: ``call`` timed right after a conv2d reference of its own."""
        with torch.no_grad():
            conv = time_call(partial(causal_conv, y, weight), device, runs)
        return _row(shape, method, what, time_call(call, device, runs), conv)

    rows = [paired("conv2d", "conv", partial(causal_conv, y, weight))]
    for solver in solvers:
        with torch.no_grad():
            rows.append(paired(solver, "solve", partial(causal_solve, y, weight, solver)))
        y_req = y.clone().requires_grad_()
        w_req = weight.clone().requires_grad_()
        x = causal_solve(y_req, w_req, solver)
        backward_pass = partial(
            torch.autograd.grad, x, (y_req, w_req), torch.randn_like(x), retain_graph=True
        )
        rows.append(paired(solver, "backward", backward_pass))
        log.info("%s %s done", shape, solver)
    matrix = dense_operator(weight, h, w)
    rhs = y.reshape(batch, -1).T.contiguous()
    dense = partial(torch.linalg.solve_triangular, matrix, rhs, upper=False)
    rows.append(paired("dense_solve_triangular", "solve", dense))
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


FOURIER_CHANNELS = (16, 32, 64, 128, 256, 512, 1024)
FOURIER_SIZES = (8, 16, 32, 64, 128)
MAX_DENSE_DIMS = 4096


def _timed(rows, family, layer, what, size, timing: Timing, device: str) -> None:
    rows.append(
        {
            "family": family,
            "layer": layer,
            "pass": what,
            "size": size,
            "ms": timing.mean_ms,
            "std_ms": timing.std_ms,
            "device": device_name(device),
        }
    )


def _logdet_of(layer, x):
    return layer(x)[1]


def _output_of(layer, x):
    return layer(x)[0]


def benchmark_fourier(
    device: str = "cpu",
    batch: int = 16,
    runs: int = 10,
    channels=FOURIER_CHANNELS,
    sizes=FOURIER_SIZES,
) -> list[dict[str, Any]]:
    """CDFlow's layer against the dense C x C route and a 1x1 conv (channel sweep, 8x8 images),
    and the FFT/DCT convolutions against the dense (H W) x (H W) route (spatial sweep, C = 1)."""
    rows: list[dict[str, Any]] = []
    with torch.no_grad():
        for c in channels:
            layer = CirculantDiagonal(c, m=2).to(device)
            z = torch.randn(batch, c, 8, 8, device=device)
            matrix = layer.matrix()
            flat = z.permute(1, 0, 2, 3).reshape(c, -1)
            for name, what, fn in (
                ("cdflow", "logdet", layer.logdet_per_pixel),
                ("cdflow", "inverse", partial(layer.inverse, z)),
                ("dense", "logdet", partial(torch.linalg.slogdet, matrix)),
                ("dense", "inverse", partial(torch.linalg.solve, matrix, flat)),
                (
                    "conv1x1",
                    "forward",
                    partial(torch.nn.functional.conv2d, z, matrix[:, :, None, None]),
                ),
            ):
                _timed(rows, "channels", name, what, c, time_call(fn, device, runs), device)
        for n in sizes:
            x = torch.randn(batch, 1, n, n, device=device)
            for name, layer in (
                ("circular", CircularConv2d(1, 3)),
                ("symmetric", SymmetricConv2d(1, 1)),
            ):
                layer = layer.to(device)
                _timed(
                    rows,
                    "spatial",
                    name,
                    "logdet",
                    n,
                    time_call(partial(_logdet_of, layer, x), device, runs),
                    device,
                )
                _timed(
                    rows,
                    "spatial",
                    name,
                    "inverse",
                    n,
                    time_call(partial(layer.inverse, x), device, runs),
                    device,
                )
            if n * n <= MAX_DENSE_DIMS:
                circular = CircularConv2d(1, 3).to(device)
                matrix = dense_matrix(partial(_output_of, circular), (1, n, n), x)
                rhs = x.reshape(batch, -1).T.contiguous()
                _timed(
                    rows,
                    "spatial",
                    "dense",
                    "logdet",
                    n,
                    time_call(partial(torch.linalg.slogdet, matrix), device, runs),
                    device,
                )
                _timed(
                    rows,
                    "spatial",
                    "dense",
                    "inverse",
                    n,
                    time_call(partial(torch.linalg.solve, matrix, rhs), device, runs),
                    device,
                )
    return rows


def crossovers(rows: list[dict[str, Any]]) -> list[str]:
    """Where the structured route becomes faster than the dense one, per family and pass."""
    lines = []
    for family, fast in (("channels", "cdflow"), ("spatial", "circular")):
        for what in ("logdet", "inverse"):
            pairs = {}
            for r in rows:
                if r["family"] == family and r["pass"] == what and r["layer"] in (fast, "dense"):
                    pairs.setdefault(r["size"], {})[r["layer"]] = r["ms"]
            sizes = sorted(s for s, v in pairs.items() if len(v) == 2)
            faster = [s for s in sizes if pairs[s][fast] < pairs[s]["dense"]]
            largest = sizes[-1] if sizes else None
            ratio = pairs[largest]["dense"] / pairs[largest][fast] if largest else float("nan")
            first = faster[0] if faster else "never in the sweep"
            lines.append(
                f"{family} {what}: {fast} faster than dense from {first}; "
                f"dense/{fast} = {ratio:.1f}x at {largest}"
            )
    return lines


def run_inverse_conv(device: str, batch: int, runs: int, results_dir) -> None:
    """`python -m bench layers --family inverse_conv`: time, print, append records."""
    rows = benchmark_inverse_conv(device=device, batch=batch, runs=runs)
    frame = pd.DataFrame(rows)
    table = frame.pivot_table(
        index=["shape", "method"], columns="pass", values="ratio_to_conv2d", sort=False
    )
    ms = frame.pivot_table(index=["shape", "method"], columns="pass", values="ms", sort=False)
    print(f"device: {rows[0]['device']}, batch {batch}, k=3, float32")
    print("time in ms")
    print(ms.round(3).to_string())
    print("\nratio to conv2d of the same shape (lower is better), each to a conv2d timed just")
    print("before it; conv2d's own row is two conv2d timings apart: the machine's drift")
    print(table.round(2).to_string())
    path, count = append_layer_records(
        rows,
        "inverse_conv",
        ("method", "pass", "shape"),
        ("ms", "std_ms", "ratio_to_conv2d"),
        ("shape", "method", "pass", "batch", "kernel_size"),
        results_dir,
    )
    print(f"\nwrote {count} records to {path}")


def run_fourier(device: str, runs: int, results_dir) -> None:
    """`python -m bench layers --family fourier`: time, print, append records, plot."""
    rows = benchmark_fourier(device=device, runs=runs)
    frame = pd.DataFrame(rows)
    table = frame.pivot_table(index=["family", "size"], columns=["layer", "pass"], values="ms")
    print(f"device: {rows[0]['device']}; time in ms")
    print(table.round(4).to_string())
    print()
    for line in crossovers(rows):
        print(line)
    keys = ("family", "layer", "pass", "size")
    path, count = append_layer_records(rows, "fourier", keys, ("ms", "std_ms"), keys, results_dir)
    plot = Path(results_dir) / "tables" / "scaling_fourier.png"
    fourier_scaling(rows, plot)
    print(f"\nwrote {count} records to {path} and {plot}")
