"""``python -m bench check-layer LAYER --shape C,H,W``: the registry's exactness checks
(`models.checks`) on a layer written outside this package.

LAYER is a layer spec of `models.slots`: ``PATH.py:FACTORY``, ``MODULE:FACTORY`` or the name
of an installed entry point of group ``convflow_bench.layers``; the factory is called with the
channel count (and the spatial shape if its signature asks for it). It may return a plain
``torch.nn.Module`` with ``forward(x) -> (z, logdet[B])`` and ``inverse(z)``: it is checked as
``compare`` trains it, through the one adapter `models.slots.build_layer` applies, and the
``train_step`` check takes one training step with it in a small flow.

Input that cannot be checked (a file or module that does not import, a missing name, a factory
with another signature, a shape that is not C,H,W, a factory that raises or returns something
that cannot be called as a bijection) is a `ConfigError`: one line, exit status 2. A layer that
runs but is not exact prints the table and, on stderr, each failing check with its measured
error; exit status 1.
"""

from __future__ import annotations

import sys

import torch

from bench.config import ConfigError
from models.slots import LayerSpecError, build_layer, resolve_factory

MANY_ENTRIES = 1024  # C*H*W above which the dense Jacobians get slow


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"C,H,W"`` -> (C, H, W), three positive integers, else `ConfigError`."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(
            f"--shape must be C,H,W (three positive integers, e.g. 4,4,5), got {text!r}"
        )
    return shape


def format_table(results) -> str:
    rows = [("check", "result", "measured", "tolerance", "detail")]
    for r in results:
        status = "skip" if r.skipped else "pass" if r.passed else "FAIL"
        error = "-" if r.error is None else f"{r.error:.2e}"
        tolerance = "-" if r.skipped else r.tolerance_text() or "-"
        rows.append((r.name, status, error, tolerance, r.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=False)) + "  " + row[4]
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(line.rstrip() for line in lines)


def run_check_layer(args) -> int:
    """The ``check-layer`` command: 0 if every check passes, 1 if one fails."""
    from models.checks import LayerContractError, check_layer, one_line
    from models.core import unwrapped
    from models.registry import randomize

    shape = parse_shape(args.shape)
    if args.batch < 2:
        raise ConfigError(f"--batch must be at least 2 (per-example checks), got {args.batch}")
    if args.perturb < 0:
        raise ConfigError(f"--perturb must be >= 0, got {args.perturb}")
    try:
        torch.empty(0, device=args.device)
    except (RuntimeError, AssertionError) as error:
        raise ConfigError(f"--device {args.device} is not usable: {one_line(error)}") from error
    try:
        factory, label = resolve_factory(args.layer)
        torch.manual_seed(args.seed)
        layer = build_layer(factory, shape, label)
    except LayerSpecError as error:
        raise ConfigError(str(error)) from error
    if args.perturb:
        randomize(layer, args.perturb, args.seed)
    entries = shape[0] * shape[1] * shape[2]
    if entries > MANY_ENTRIES:
        print(
            f"note: C*H*W = {entries}; the logdet checks build a {entries} x {entries} Jacobian "
            "per example, slow at this size (H, W <= 8 keep it to seconds)",
            file=sys.stderr,
        )
    try:
        results = check_layer(layer, shape, batch=args.batch, device=args.device)
    except LayerContractError as error:
        raise ConfigError(f"{label}: {error}") from error
    print(
        f"check-layer {label}: {type(unwrapped(layer)).__name__} at shape {shape}, "
        f"batch {args.batch}, float64 on {args.device}, parameters perturbed by "
        f"N(0, {args.perturb}^2) (seed {args.seed})"
    )
    print(format_table(results))
    failed = [r for r in results if not r.passed]
    for r in failed:
        print(f"check-layer {label}: {r.message()}", file=sys.stderr)
    ran = sum(not r.skipped for r in results)
    if failed:
        print(f"{len(failed)} of {ran} checks failed")
        return 1
    print(f"all {ran} checks passed")
    return 0
