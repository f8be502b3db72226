"""`python -m bench run-tables`: what `make table-*` and `make demo` run.

For every row config of the chosen tables: skip it when a record of that profile already holds
the row's metric (BPD, accuracy or MSE; unless ``--force``), else fit, test and time it; a row
that fails is recorded as skipped with the reason, never silently dropped, and training stops at
half of the row's share of the time budget. Then the report.
"""

from __future__ import annotations

import argparse
import logging
import time
import traceback
from pathlib import Path

from bench.config import CONFIG_DIR, load_config, read_yaml
from bench.report import load_records
from bench.results import append_records, make_record, records_path
from datamodules import DataFileError

log = logging.getLogger(__name__)

TABLE_GROUPS = {
    "mnist": ("inverse_flow_t2", "inverse_flow_t3", "inverse_flow_t4", "dfm_mnist"),
    "cifar10": (
        "inverse_flow_t5",
        "inverse_flow_t6",
        "cdflow_t2_cifar10",
        "iconvnet_t2",
        "dfm_t5_2",
    ),
    "imagenet": ("cdflow_t2_imagenet32", "dfm_compression"),
    "classification": ("iconvnet_t1", "inverse_flow_classifier"),
}


def row_paths(tables: list[str], rows: list[str] | None) -> list[Path]:
    paths = []
    for table in tables:
        for path in sorted((CONFIG_DIR / table).glob("*.yaml")):
            if rows and path.stem not in rows and read_yaml(path).get("row") not in rows:
                continue
            paths.append(path)
    return paths


def already_measured(config: dict, records: list[dict]) -> bool:
    """Whether a record of the row's profile already holds the row's metric."""
    from bench.run import task_of

    metric = task_of(config)["metric"]
    return any(
        r["table"] == config["table"]
        and r["row"] == config["row"]
        and r.get("profile") == config["profile"]
        and metric in r["metrics"]
        for r in records
    )


def record_skip(config: dict, results_dir: Path, reason: str) -> None:
    record = make_record(
        config["table"],
        config["row"],
        config["dataset"],
        {},
        device="-",
        profile=config["profile"],
        config=config,
    )
    record.update(status="skipped", reason=reason)
    append_records(records_path(results_dir, config["table"]), [record])


def run_dfm_compression(args: argparse.Namespace, results_dir: Path, records: list[dict]) -> None:
    """The DFM compression sweep (no row configs: photos x widths x depths), unless measured."""
    from bench.dfm import run_compression
    from bench.run import evaluation_device

    done = any(
        r["table"] == "dfm_compression" and r.get("profile") == args.profile for r in records
    )
    if done and not args.force:
        print(f"dfm_compression: already measured ({args.profile}); FORCE=1 to rerun")
        return
    print("dfm_compression: one Fourier Net per bundled photo against JPEG ...", flush=True)
    run_compression(args.profile, results_dir=results_dir, device=evaluation_device())


def run_tables(args: argparse.Namespace) -> int:
    tables = [t for group in args.tables for t in TABLE_GROUPS.get(group, (group,))]
    paths = row_paths(tables, args.rows)
    results_dir = Path(args.results_dir)
    records = load_records(results_dir).rows  # read once; the runs below only append
    if "dfm_compression" in tables and not args.rows:
        run_dfm_compression(args, results_dir, records)
    share = args.budget_minutes * 60 / max(len(paths), 1) if args.budget_minutes else None
    print(f"{len(paths)} rows in {', '.join(tables)} ({args.profile} profile)")
    missing: set[str] = set()  # data sets whose files are not available
    succeeded = 0
    for i, path in enumerate(paths, start=1):
        overrides = list(args.set)
        if share:
            overrides.append(f"trainer.max_time={{seconds: {int(share * 0.5)}}}")
        config = load_config(path, args.profile, overrides)
        if args.dataset and config["dataset"] in ("mnist", "fashion_mnist"):
            config["dataset"] = args.dataset
        label = f"[{i}/{len(paths)}] {config['table']} / {config['row']}"
        if config["dataset"] in missing:
            print(f"{label}: not run ({config['dataset']} data not available)")
            continue
        if not args.force and already_measured(config, records):
            print(f"{label}: already measured ({args.profile}); FORCE=1 to rerun")
            continue
        print(f"{label}: fit, test, time ...", flush=True)
        start = time.monotonic()
        try:
            from bench.run import fit_command, task_of

            record = fit_command(config, args)
            metric = task_of(config)["metric"]
            elapsed = time.monotonic() - start
            print(f"{label}: {metric} {record['metrics'][metric]:.3f} in {elapsed:.0f} s")
            succeeded += 1
        except DataFileError as err:  # rows of the same data set are not tried again
            missing.add(config["dataset"])
            print(f"\n{err}\n")
        except Exception as err:  # one broken row must not lose the others
            reason = f"{type(err).__name__}: {err}".splitlines()[0][:200]
            log.debug(traceback.format_exc())
            record_skip(config, results_dir, reason)
            print(f"{label}: skipped ({reason})")
    ran_compression = "dfm_compression" in tables and not args.rows
    status = 2 if missing and not (succeeded or ran_compression) else 0
    from bench.report import report

    result = report(results_dir)
    for table in tables:
        if table in result["tables"]:
            print("\n" + result["tables"][table].markdown)
    for problem in result["problems"]:
        print(problem)
    print(f"tables and plots written to {results_dir / 'tables'}")
    return status
