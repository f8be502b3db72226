"""Run records: one JSON object per line in ``results/runs/<table>.jsonl``, written atomically.

A record (DESIGN.md): table, row, dataset, metrics, epochs, steps, profile, device, git commit,
timestamp, config hash, W&B URL, command. An append rewrites the file into a temporary file in
the same directory and renames it over the old one, so a killed writer leaves either the old or
the new file, never half a line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

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

METRIC_KEYS = ("bpd", "nll", "st_ms", "st_std", "ft_ms", "ft_std", "params_m", "fid", "accuracy")


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
    curve: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    record = {
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
    if curve:
        record["curve"] = curve
    return record


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Append records as JSON lines, atomically (the whole file is replaced at once)."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    new = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    write_atomic(path, old + new)


def records_path(results_dir: Path, table: str) -> Path:
    return Path(results_dir) / "runs" / f"{table}.jsonl"
