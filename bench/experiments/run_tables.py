"""`python -m bench run-tables`: what `make table-*` and `make demo` run.

For every row config of the chosen tables (or groups, `bench.catalog`) and every seed
(``--seeds K``: 0..K-1): skip it when a record of the same conditions (profile, seed, data set,
batch, step budget) already holds the row's headline metric (unless ``--force``), else fit, test
and time it; a row that fails is recorded as skipped with the reason, never silently dropped.
``--steps N`` or ``--budget-minutes M`` make every row train the same N optimizer steps
(`bench.experiments.budget`, `bench.protocol`): a time budget becomes one step count before
anything trains, never a per-row early stop. Tables without row configs run their experiment
(``experiment:`` in ``_table.yaml``). Then the report. Exit status: 0 when every requested row
ran or was already measured, 1 when a row failed (after the others ran and the report was
written), 2 when a data set was missing and nothing ran.
``--launcher local|slurm`` runs the same (row, seed) pairs as submitit jobs instead of one after
another in this process (`bench.experiments.launcher`).
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import replace
from pathlib import Path

from filelock import Timeout

from bench.catalog import resolve_tables, row_configs, row_label, table_meta
from bench.config import ConfigError, read_yaml
from bench.evaluators.timing import device_name
from bench.experiments.budget import load_budgeted, steps_within
from bench.experiments.callbacks import evaluation_device
from bench.experiments.dfm_compression import ran_profile_in_full, run_compression
from bench.experiments.options import SweepOptions
from bench.experiments.row import fit_command
from bench.experiments.run_dir import run_dir
from bench.protocol import record_seed
from bench.records import (
    Record,
    append_records,
    load_records,
    make_record,
    records_path,
    row_lock,
    write_atomic,
    write_record,
)
from bench.report.tables import report
from bench.schema import RowConfig
from bench.tasks import TASK_SPECS
from datamodules import DataFileError, make_datamodule
from datamodules.datasets import DEBIAN_FASHION_MNIST

log = logging.getLogger(__name__)

MNIST_LIKE = ("mnist", "fashion_mnist")


def row_paths(tables: list[str], rows: list[str] | None) -> list[Path]:
    """The row configs of ``tables``, only those named in ``rows`` (file stem or row label)
    when given; a name in ``rows`` that matches nothing is a `ConfigError`."""
    paths = [p for table in tables for p in row_configs(table)]
    if not rows:
        return paths
    names_of = {p: {p.stem, row_label(p)} for p in paths}  # each row YAML read once
    chosen = [p for p in paths if names_of[p] & set(rows)]
    known = set().union(*(names_of[p] for p in chosen))
    unmatched = [name for name in rows if name not in known]
    if unmatched:
        names = sorted({p.stem for p in paths})
        raise ConfigError(
            f"--rows {unmatched[0]!r} matches no row of {', '.join(tables)}; rows there: "
            f"{', '.join(names)}"
        )
    return chosen


def already_measured(config: RowConfig, records: list[Record]) -> bool:
    """Whether a record of the row under the same conditions (profile, seed, data set, and in
    an equal-budget run the step budget and batch) already holds the row's headline metric:
    such a seed is reused, not rerun."""
    metric = TASK_SPECS[config.task].metric
    budget = config.budget_steps
    return any(
        r["table"] == config.table
        and r["row"] == config.row
        and r.get("profile") == config.profile
        and record_seed(r) == config.seed
        and (budget is None or same_budget(r, config))
        and metric in r["metrics"]
        for r in records
    )


def same_budget(record: Record, config: RowConfig) -> bool:
    """Whether ``record`` was measured under ``config``'s equal-budget conditions."""
    return (
        record.get("budget_steps") == config.budget_steps
        and record.get("dataset") == config.dataset
        and record.get("batch_size") == config.data.batch_size
    )


def record_skip(
    config: RowConfig, results_dir: Path, reason: str, record_file: Path | None = None
) -> None:
    """Record the row as skipped with ``reason``: appended to its table's JSONL file, or
    written to ``record_file`` (a launcher job's own record file, `bench.records.write_record`)."""
    record = make_record(
        config.table,
        config.row,
        config.dataset,
        {},
        device="-",
        profile=config.profile,
        config=config.model_dump(),
        status="skipped",
        reason=reason,
    )
    if record_file is not None:
        write_record(record_file, record)
    else:
        append_records(records_path(results_dir, config.table), [record])


def run_experiment(
    table: str, sweep: SweepOptions, results_dir: Path, records: list[Record]
) -> bool:
    """A table filled by an experiment rather than row configs (the DFM compression sweep),
    unless measured; returns whether it ran or was measured."""
    if table_meta(table).experiment != "dfm_compression":
        return False
    done = any(r["table"] == table and ran_profile_in_full(r, sweep.profile) for r in records)
    if done and not sweep.force:
        print(f"{table}: already measured ({sweep.profile}); FORCE=1 to rerun")
        return True
    print(f"{table}: one Fourier Net per bundled photo against JPEG ...", flush=True)
    device = evaluation_device()
    run_compression(sweep.profile, results_dir=results_dir, device=device)
    log.info("compression sweep on %s done", device_name(device))
    return True


def keep_sample_grid(config: RowConfig, work_dir: Path, results_dir: Path) -> Path | None:
    """Copy the row's newest sample grid beside the tables (``tables/samples/<table>-<row
    config>.png``), so a run's samples sit next to its numbers."""
    grids = sorted((run_dir(config, work_dir) / "samples").glob("*.png"))
    grids = [g for g in grids if g.name.startswith(("step", "samples_"))]
    if not grids:
        return None
    target = (
        results_dir / "tables" / "samples" / f"{config.table}-{Path(config.config_path).stem}.png"
    )
    write_atomic(target, max(grids, key=lambda g: g.stat().st_mtime).read_bytes())
    return target


def row_config(
    path: Path, sweep: SweepOptions, budget_steps: int | None = None, seed: int | None = None
) -> RowConfig:
    """The row's validated config under ``--dataset`` (which replaces the data set of MNIST
    rows only, e.g. by ``fashion_mnist``), ``--set``, the equal step budget and the seed."""
    overrides = list(sweep.overrides)
    if sweep.dataset and read_yaml(path).get("dataset") in MNIST_LIKE:
        overrides.insert(0, f"dataset={sweep.dataset}")
    return load_budgeted(path, sweep.profile, overrides, budget_steps, seed)


def pair_label(i: int, total: int, config: RowConfig, seed: int | None) -> str:
    """``[i/total] <table> / <row> (seed k)``: how the progress lines name a (row, seed)."""
    label = f"[{i}/{total}] {config.table} / {config.row}"
    return label + (f" (seed {seed})" if seed is not None else "")


def seeds_of(sweep: SweepOptions) -> list[int | None]:
    """The seeds to train: 0..K-1 for ``--seeds K``, else the config's own seed (None)."""
    return list(range(sweep.seeds)) if sweep.seeds else [None]


def fit_rows(
    paths: list[Path], sweep: SweepOptions, records: list[Record], budget_steps: int | None = None
) -> tuple[int, int, set[str]]:
    """`run_rows` in this process, or with ``--launcher`` as jobs
    (`bench.experiments.launcher.launch_rows`); the same pairs, the same result."""
    if sweep.launcher:
        from bench.experiments.launcher import launch_rows

        return launch_rows(paths, sweep, records, budget_steps)
    return run_rows(paths, sweep, records, budget_steps)


def run_rows(
    paths: list[Path], sweep: SweepOptions, records: list[Record], budget_steps: int | None = None
) -> tuple[int, int, set[str]]:
    """Fit, test and time each row and seed not yet measured in ``records`` (same conditions);
    a row that fails is recorded as skipped with the reason. Returns (succeeded, failed, data
    sets whose files were missing)."""
    results_dir = sweep.run.results_dir
    missing: set[str] = set()  # data sets whose files are not available
    succeeded, failed = 0, 0
    runs = [(path, seed) for path in paths for seed in seeds_of(sweep)]
    for i, (path, seed) in enumerate(runs, start=1):
        config = row_config(path, sweep, budget_steps, seed)
        label = pair_label(i, len(runs), config, seed)
        if config.dataset in missing:
            print(f"{label}: not run ({config.dataset} data not available)")
            continue
        if not sweep.force and already_measured(config, records):
            print(f"{label}: already measured ({sweep.profile}); FORCE=1 to rerun")
            continue
        lock = row_lock(results_dir, config.table, path.stem, config.profile, config.seed)
        start = time.monotonic()
        try:
            with lock:  # another run-tables on this results dir skips the row meanwhile
                if not sweep.force and already_measured(config, load_records(results_dir).rows):
                    print(f"{label}: already measured ({sweep.profile}) by another run")
                    continue
                print(f"{label}: fit, test, time ...", flush=True)
                record = fit_command(config, sweep.run)
            metric = TASK_SPECS[config.task].metric
            elapsed = time.monotonic() - start
            value = record["metrics"].get(metric)
            result = f"{metric} {value:.3f}" if value is not None else f"no {metric} measured"
            print(f"{label}: {result} in {elapsed:.0f} s")
            keep_sample_grid(config, sweep.run.work_dir, results_dir)
            succeeded += 1
        except Timeout:
            print(f"{label}: skipped, another process is running it ({lock.lock_file})")
            continue
        except DataFileError as err:  # rows of the same data set are not tried again
            missing.add(config.dataset)
            print(f"\n{err}\n")
        except Exception as err:  # one broken row must not lose the others
            reason = f"{type(err).__name__}: {err}".splitlines()[0][:200]
            log.debug(traceback.format_exc())
            record_skip(config, results_dir, reason)
            print(f"{label}: skipped ({reason})")
            failed += 1
    return succeeded, failed, missing


def equal_budget(paths: list[Path], sweep: SweepOptions) -> int | None:
    """The step count every row trains: ``--steps``, else ``--budget-minutes`` turned into one
    (`bench.experiments.budget.steps_within`), else None (each row's own length)."""
    if sweep.steps:
        return sweep.steps
    if not sweep.budget_minutes:
        return None
    print(f"timing {len(paths)} rows to share {sweep.budget_minutes:g} minutes ...", flush=True)
    configs = [row_config(path, sweep) for path in paths]
    seeds, data_dir = len(seeds_of(sweep)), sweep.run.data_dir
    steps = steps_within(configs, sweep.budget_minutes, seeds, data_dir, evaluation_device())
    print(f"every row trains {steps} steps (equal budget)")
    return steps


def offline_demo_dataset(paths: list[Path], sweep: SweepOptions) -> SweepOptions:
    """The demo (``--profile demo`` without ``--dataset`` or ``--data_dir``) on a machine that
    cannot download MNIST: where the Debian package's Fashion-MNIST files are present, say so in
    one line and run the MNIST rows on them. Returns the sweep to run."""
    chosen = sweep.dataset or sweep.run.data_dir
    if sweep.profile != "demo" or chosen or not DEBIAN_FASHION_MNIST.is_dir():
        return sweep
    if not any(read_yaml(path).get("dataset") == "mnist" for path in paths):
        return sweep
    try:
        make_datamodule("mnist").setup()
    except DataFileError:
        print(
            f"MNIST is not available here (no files, download failed): the demo runs on the "
            f"Fashion-MNIST files of {DEBIAN_FASHION_MNIST} instead"
        )
        run = replace(sweep.run, data_dir=str(DEBIAN_FASHION_MNIST))
        return replace(sweep, dataset="fashion_mnist", run=run)
    return sweep


def run_tables(tables: list[str], sweep: SweepOptions, rows: list[str] | None = None) -> int:
    """Every row (or only ``rows``) of ``tables`` (names or groups) under ``sweep``, then the
    report; the exit status of the module docstring."""
    from bench.experiments.launcher import check_launcher_options

    check_launcher_options(sweep)  # before anything runs
    tables = resolve_tables(tables)
    paths = row_paths(tables, rows)
    for table in tables:
        if not row_configs(table) and not table_meta(table).experiment:
            raise ConfigError(f"table {table!r} has no row configs in bench/configs/{table}/")
    results_dir = sweep.run.results_dir
    records = load_records(results_dir).rows  # read once; the runs below only append
    ran_experiment = False
    if not rows:
        ran_experiment = any([run_experiment(t, sweep, results_dir, records) for t in tables])
    sweep = offline_demo_dataset(paths, sweep)
    budget = equal_budget(paths, sweep)
    print(f"{len(paths)} rows in {', '.join(tables)} ({sweep.profile} profile)")
    succeeded, failed, missing = fit_rows(paths, sweep, records, budget)
    status = 2 if missing and not (succeeded or ran_experiment) else 0
    if failed:
        status = 1
        print(f"{failed} of {len(paths)} rows failed; see their 'skipped' cells")
    result = report(results_dir)
    for table in tables:
        if table in result["tables"]:
            print("\n" + result["tables"][table].markdown)
    for problem in result["problems"]:
        print(problem)
    print(f"tables and plots written to {results_dir / 'tables'}")
    return status
