"""Run records and published values: the one place results are written and read.

A record (`Record`) is one JSON object per line in ``results/runs/<table>.jsonl``: table, row,
dataset, metrics, epochs, steps, profile, device, git commit, timestamp, config hash, W&B URL,
command, and optionally note, step_tested (the step of the checkpoint evaluated), data (what was
actually loaded: `datamodules.base.ImageDataModule.provenance`), status/reason (a skipped row)
and curve (the training curve).
`append_records` holds a file lock around read, rewrite to a temporary file and rename, so
concurrent writers lose nothing and a killed writer leaves the old or the new file, never half a
line. A job of the launcher (`bench.experiments.launcher`) writes its record to a file of its own
instead, ``results/runs/<table>/<row config>/<profile>-seed<k>-<job id>.json``
(`job_record_path`, `write_record`): written once by one process, atomically, so no lock is
needed on a shared file system where locks are unreliable; `load_records` reads those files
beside the JSONL files. Every generated file goes through `write_atomic`, which keeps the usual
permissions.

`METRICS` names every metric a table can show, its column label and its spread. The papers'
numbers are read by `bench.published`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock
from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic validates a TypedDict from here on 3.11

from bench.schema import PROFILE_RANK

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metric:
    """A table column: its label, the metric holding its spread (std) if any, and, for
    timings, the prefix of its median and interquartile range (``<prefix>_median``, ``_iqr``)
    which a cell shows in preference to mean +- std when the record has them. ``trained``: the
    value depends on training, so a cell names its data set and profile where they differ
    from the paper's (`bench.report.conditions`)."""

    label: str
    std: str | None = None
    robust: str | None = None
    trained: bool = False  # depends on training: a cell says when its conditions differ


# Column order of every table; a new metric is one line here.
METRICS: dict[str, Metric] = {
    "bpd": Metric("BPD", trained=True),
    "nll": Metric("NLL", trained=True),
    "st_ms": Metric("ST (ms)", "st_std", "st"),
    "ft_ms": Metric("FT (ms)", "ft_std", "ft"),
    "train_step_ms": Metric("Train step (ms)", "train_step_std", "train_step"),
    "params_m": Metric("Param (M)"),
    "val_bpd_start": Metric("Val BPD at step 0", trained=True),
    "val_bpd_end": Metric("Val BPD at the end", trained=True),
    "fid": Metric("FID", trained=True),
    "accuracy": Metric("Acc (%)", trained=True),
    "mse": Metric("MSE", trained=True),
    "compression_pct": Metric("Size (%)"),
    "psnr": Metric("PSNR (dB)", "psnr_std"),
    "jpeg_psnr": Metric("JPEG PSNR (dB)"),
    "ssim": Metric("SSIM", "ssim_std"),
    "jpeg_ssim": Metric("JPEG SSIM"),
}


class Record(TypedDict, total=False):
    """One evaluation, one line of ``results/runs/<table>.jsonl`` (module docstring);
    ``_source`` (file:line) is added on read."""

    table: str
    row: str
    dataset: str
    metrics: dict[str, Any]
    epochs: float | None
    steps: int | None
    profile: str
    device: str
    git_commit: str
    timestamp: str
    config_hash: str
    wandb_url: str | None
    command: str
    note: str
    step_tested: int | None
    data: dict[str, Any]
    status: str
    reason: str
    curve: dict[str, list[float]]
    compared_layer: str  # a user row: the layer `python -m bench compare` put in the slot
    cells: dict[str, str]  # metric -> text a cell shows instead of a number (why there is none)
    seed: int  # the config's seed (records older than the field: 0)
    batch_size: int  # the training batch
    budget_steps: int  # an equal-budget run's step count for every row (bench.protocol)
    _source: str


# The keys every record has (the others are optional).
RECORD_KEYS = (
    "table",
    "row",
    "dataset",
    "metrics",
    "epochs",
    "steps",
    "profile",
    "device",
    "git_commit",
    "timestamp",
    "config_hash",
    "wandb_url",
    "command",
)
# The keys a record must have to be shown; the others of `RECORD_KEYS` are missing from some
# old records, and the tables show "?" for them.
REQUIRED_KEYS = ("table", "row", "metrics")
_RECORD_TYPES = TypeAdapter(Record)


def record_problem(record: Any) -> str | None:
    """What is wrong with a parsed record line, or None for a valid record: a mapping with
    `REQUIRED_KEYS`, every key of `Record` of its declared type (strictly: no text for a
    number, no number for a text), and a ``table`` that is a safe file name
    (`check_path_name`). This is the one definition of a valid record."""
    if not isinstance(record, dict):
        return f"not a record: a JSON {type(record).__name__}, not an object"
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        return f"not a record: no {', '.join(missing)}"
    try:
        _RECORD_TYPES.validate_python(record, strict=True)
        check_path_name(record["table"], "table")
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"'{where}' = {first['input']!r}: {first['msg'].lower()}"
    except ValueError as err:
        return str(err)
    return None


def check_path_name(name: str, what: str) -> str:
    """``name`` if it is safe as one component of a path (a table, a row config's file name, a
    compared layer's name): not empty, not ``.`` or ``..``, no ``/``, ``\\`` or NUL, no leading
    ``.`` (a hidden file) or ``-``; else a `ValueError` naming ``what``. Every name the suite
    puts in a path passes here first, so none leaves the results or work directory."""
    bad = (
        not isinstance(name, str)
        or not name.strip()
        or name.startswith((".", "-"))
        or any(c in name for c in "/\\\0")
    )
    if bad:
        raise ValueError(
            f"{what} {name!r} cannot name a file: use letters, digits, '_', '-' and '.', with no "
            "'/' and no leading '.' or '-'"
        )
    return name


# The command line of the running `python -m bench` call (set by bench.__main__.main), recorded
# in every record so each measured cell names the command that produced it.
current_command: list[str] = []


def git_commit() -> str:
    """HEAD's short hash, or $CONVFLOW_COMMIT where the checkout has no git (a copied tree)."""
    if os.environ.get("CONVFLOW_COMMIT"):
        return os.environ["CONVFLOW_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def config_hash(config: dict[str, Any]) -> str:
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def make_record(
    table: str,
    row: str,
    dataset: str,
    metrics: dict[str, Any],
    *,
    device: str,
    profile: str = "paper",
    epochs: float | None = None,
    steps: int | None = None,
    config: dict[str, Any] | None = None,
    wandb_url: str | None = None,
    command: str | None = None,
    **extra: Any,
) -> Record:
    """A new record; ``extra`` (note, status, reason, curve, ...) is kept when not None."""
    record: Record = {
        "table": table,
        "row": row,
        "dataset": dataset,
        "metrics": metrics,
        "epochs": epochs,
        "steps": steps,
        "profile": profile,
        "device": device,
        "git_commit": git_commit(),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config_hash": config_hash(config or {}),
        "wandb_url": wandb_url,
        "command": command
        or " ".join(["python", "-m", "bench", *(current_command or sys.argv[1:])]),
    }
    record.update({k: v for k, v in extra.items() if v is not None})  # type: ignore[typeddict-item]
    return record


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write ``content`` to ``path`` via a temporary file in the same folder and `os.replace`,
    with the permissions a plain ``open(path, "w")`` would give (0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content.encode() if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def lock_for(path: Path) -> FileLock:
    """The inter-process lock guarding ``path`` (a hidden ``.<name>.lock`` beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.parent / f".{path.name}.lock"))


def append_records(path: Path, records: list[Record]) -> None:
    """Append records as JSON lines: under `lock_for`, the whole file is replaced at once."""
    path = Path(path)
    new = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    with lock_for(path):
        old = path.read_bytes() if path.exists() else b""  # bytes: a bad line stays as it is
        if old and not old.endswith(b"\n"):
            old += b"\n"
        write_atomic(path, old + new.encode())


def records_path(results_dir: Path, table: str) -> Path:
    return Path(results_dir) / "runs" / f"{check_path_name(table, 'table')}.jsonl"


def job_record_path(
    results_dir: Path, table: str, row_config_name: str, profile: str, seed: int, job_id: str
) -> Path:
    """Where a launcher job writes its one record:
    ``runs/<table>/<row config>/<profile>-seed<seed>-<job id>.json``."""
    names = [
        check_path_name(table, "table"),
        check_path_name(row_config_name, "row config"),
        check_path_name(f"{profile}-seed{seed}-{job_id}.json", "job record"),
    ]
    return Path(results_dir, "runs", *names)


def write_record(path: Path, record: Record) -> None:
    """One record as its own JSON file (`job_record_path`), written atomically: no lock."""
    write_atomic(Path(path), json.dumps(record, sort_keys=True) + "\n")


class ResultsDirError(FileNotFoundError):
    """A results directory records cannot be written to (a file in its path, read-only, full)."""


def check_writable(results_dir: Path) -> None:
    """Raise `ResultsDirError` (one line) unless a record can be written under
    ``results_dir/runs``: creates the folder, writes and removes a small file there. Run before
    training, so a fit does not discover after hours that its record has nowhere to go."""
    runs = Path(results_dir) / "runs"
    try:
        runs.mkdir(parents=True, exist_ok=True)
        write_atomic(runs / ".write-check", b"0" * 4096)
        (runs / ".write-check").unlink()
    except OSError as err:
        reason = err.strerror or str(err)
        raise ResultsDirError(
            f"results dir {results_dir} cannot hold records: {reason} ({err.filename or runs}); "
            "pass another --results_dir"
        ) from None


def row_lock(
    results_dir: Path, table: str, row_config_name: str, profile: str, seed: int
) -> FileLock:
    """The lock a process holds while it fits one row (table, row config, profile, seed) into
    ``results_dir``: ``runs/.<table>.<row config>.<profile>.seed<seed>.lock``. It never waits
    (``timeout=0``): entering it raises `filelock.Timeout` when another process runs the row,
    which then skips it instead of training it a second time."""
    names = [check_path_name(table, "table"), check_path_name(row_config_name, "row config")]
    runs = Path(results_dir) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    return FileLock(str(runs / f".{names[0]}.{names[1]}.{profile}.seed{seed}.lock"), timeout=0)


@dataclass
class Records:
    """Parsed run records, and the lines that could not be parsed (file:line: reason)."""

    rows: list[Record] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def load_records(results_dir: Path) -> Records:
    """Every valid record (`record_problem`) under ``results_dir/runs``: the lines of
    ``runs/*.jsonl``, each with ``_source`` = file:line, and the launcher jobs' record files
    (`job_record_path`), each with ``_source`` = its path under ``runs``. A line or file that is
    not UTF-8, not JSON or not a valid record is reported in ``problems`` (where: why) and
    skipped; the others are kept."""
    runs = Path(results_dir) / "runs"
    out = Records()
    for path in sorted(runs.glob("*.jsonl")):
        for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
            if raw.strip():
                _parse(raw, f"{path}:{number}", f"{path.name}:{number}", out)
    for path in sorted(runs.glob("*/*/*.json")):
        _parse(path.read_bytes(), str(path), path.relative_to(runs).as_posix(), out)
    return out


def _parse(raw: bytes, where: str, source: str, out: Records) -> None:
    """Add the record ``raw`` holds to ``out.rows`` (with ``_source``), else why not to
    ``out.problems``."""
    try:
        record = json.loads(raw.decode("utf-8"))
        problem = record_problem(record)
    except UnicodeDecodeError as err:
        problem = f"not UTF-8 text (byte {err.start})"
    except json.JSONDecodeError as err:
        problem = f"not JSON ({err})"
    if problem:
        problem = f"{where}: skipped malformed record ({problem})"
        log.warning(problem)
        out.problems.append(problem)
        return
    record["_source"] = source
    out.rows.append(record)


def pick_record(records: list[Record], metric: str, row: str | None = None) -> Record | None:
    """The record a cell shows: among those holding ``metric`` (of ``row``) or a text for its
    cell (``cells``), the highest profile rank (paper, short, demo), then the newest."""
    holding = [
        r
        for r in records
        if (isinstance(r["metrics"].get(metric), int | float) or metric in r.get("cells", {}))
        and (row is None or r["row"] == row)
    ]
    if not holding:
        return None
    return max(
        holding, key=lambda r: (PROFILE_RANK.get(r.get("profile"), 0), r.get("timestamp") or "")
    )


def measured_value(record: Record, metric: str) -> tuple[float, float | None, str]:
    """(value, spread, kind) a cell shows for ``metric``: the median and IQR where the record
    has them (kind ``"median"``), else the value and its std (kind ``"mean"``); nan where the
    record holds only a text for the cell (``cells``)."""
    values, robust = record["metrics"], METRICS[metric].robust
    if robust and isinstance(values.get(f"{robust}_median"), int | float):
        return values[f"{robust}_median"], values.get(f"{robust}_iqr"), "median"
    std = values.get(METRICS[metric].std or "")
    return values.get(metric, float("nan")), std, "mean"  # nan: the record's cell says why
