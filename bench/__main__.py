"""Command line: ``python -m bench <command> ...``. See ``python -m bench --help``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd


def _layers(args: argparse.Namespace) -> int:
    from bench.layers import benchmark_inverse_conv
    from bench.results import append_records, make_record, records_path

    if args.family != "inverse_conv":
        print(f"unknown or not yet built layer family {args.family!r}", file=sys.stderr)
        return 2
    rows = benchmark_inverse_conv(device=args.device, batch=args.batch, runs=args.runs)
    frame = pd.DataFrame(rows)
    table = frame.pivot_table(
        index=["shape", "method"], columns="pass", values="ratio_to_conv2d", sort=False
    )
    ms = frame.pivot_table(index=["shape", "method"], columns="pass", values="ms", sort=False)
    print(f"device: {rows[0]['device']}, batch {args.batch}, k=3, float32")
    print("time in ms")
    print(ms.round(3).to_string())
    print("\nratio to conv2d of the same shape (lower is better)")
    print(table.round(2).to_string())
    records = [
        make_record(
            "layers",
            f"{args.family}/{r['method']}/{r['pass']}/{r['shape']}",
            "synthetic",
            {k: r[k] for k in ("ms", "std_ms", "ratio_to_conv2d")},
            device=r["device"],
            profile="benchmark",
            config={k: r[k] for k in ("shape", "method", "pass", "batch", "kernel_size")},
        )
        for r in rows
    ]
    path = records_path(Path(args.results_dir), "layers")
    append_records(path, records)
    print(f"\nwrote {len(records)} records to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--log-level", default="WARNING")
    sub = parser.add_subparsers(dest="command", required=True)
    layers = sub.add_parser("layers", help="layer timing benchmarks (ratios to conv2d)")
    layers.add_argument("--family", default="inverse_conv", choices=["inverse_conv"])
    layers.add_argument("--device", default="cuda" if _cuda() else "cpu")
    layers.add_argument("--batch", type=int, default=100)
    layers.add_argument("--runs", type=int, default=10)
    layers.add_argument("--results_dir", "--results-dir", default="results")
    layers.set_defaults(func=_layers)
    return parser


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
