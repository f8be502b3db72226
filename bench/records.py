"""Run records and published values: the one place results are written and read.

A record (`Record`) is one JSON object per line in ``results/runs/<table>.jsonl``: table, row,
dataset, metrics, epochs, steps, profile, device, git commit, timestamp, config hash, W&B URL,
command, and optionally note, step_tested (the step of the checkpoint evaluated), data (what was
actually loaded: `datamodules.base.ImageDataModule.provenance`), status/reason (a skipped row)
and curve (the training curve).
`append_records` holds a file lock around read, rewrite to a temporary file and rename, so
concurrent writers lose nothing and a killed writer leaves the old or the new file, never half a
line. Every generated file goes through `write_atomic`, which keeps the usual permissions.

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
from typing import Any, TypedDict

from filelock import FileLock

from bench.config import PROFILE_RANK

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
    """One evaluation (DESIGN.md "Runs and results"); ``_source`` (file:line) is added on read."""

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
        old = path.read_text() if path.exists() else ""
        if old and not old.endswith("\n"):
            old += "\n"
        write_atomic(path, old + new)


def records_path(results_dir: Path, table: str) -> Path:
    return Path(results_dir) / "runs" / f"{table}.jsonl"


@dataclass
class Records:
    """Parsed run records, and the lines that could not be parsed (file:line: reason)."""

    rows: list[Record] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def load_records(results_dir: Path) -> Records:
    """Every record under ``results_dir/runs``, each with ``_source`` = file:line; malformed
    lines are reported in ``problems`` and skipped."""
    out = Records()
    for path in sorted((Path(results_dir) / "runs").glob("*.jsonl")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not {"table", "row", "metrics"} <= set(record):
                    raise ValueError("not a record (needs table, row, metrics)")
                if not isinstance(record["metrics"], dict):
                    raise ValueError("metrics must be a mapping")
            except (json.JSONDecodeError, ValueError) as err:
                problem = f"{path}:{number}: skipped malformed record ({err})"
                log.warning(problem)
                out.problems.append(problem)
                continue
            record["_source"] = f"{path.name}:{number}"
            out.rows.append(record)
    return out


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
