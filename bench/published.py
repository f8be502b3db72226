"""The papers' numbers: ``results/published/*.csv``, one row per printed value with
`PUBLISHED_COLUMNS` (paper, table, row, dataset, metric, value, std, unit, note). A results folder
may hold its own ``published/`` copy; otherwise the suite's (`PUBLISHED_DIR`) is used.
``results/published/param_exceptions.yaml`` (`param_exceptions`) says which printed parameter
counts our row models do not match, and why."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

PUBLISHED_COLUMNS = ["paper", "table", "row", "dataset", "metric", "value", "std", "unit", "note"]

# The papers' numbers shipped with the suite: used by a results folder without its own copy
# (the demo's results/demo, a user's scratch folder).
PUBLISHED_DIR = Path(__file__).resolve().parents[1] / "results" / "published"
PARAM_EXCEPTIONS = PUBLISHED_DIR / "param_exceptions.yaml"


def published_dir(results_dir: Path) -> Path:
    """``results_dir/published`` when it exists, else the suite's `PUBLISHED_DIR`."""
    own = Path(results_dir) / "published"
    return own if own.is_dir() else PUBLISHED_DIR


def load_published(results_dir: Path) -> pd.DataFrame:
    """Every ``*.csv`` of `published_dir`, one row per published number."""
    frames = []
    for path in sorted(published_dir(results_dir).glob("*.csv")):
        frame = pd.read_csv(
            path,
            dtype={"std": float, "value": float},
            keep_default_na=False,
            na_values={"std": [""], "value": [""]},
        )
        missing = set(PUBLISHED_COLUMNS) - set(frame.columns)
        if missing:
            raise ValueError(f"{path} lacks columns {sorted(missing)}")
        frames.append(frame[PUBLISHED_COLUMNS])
    if not frames:
        return pd.DataFrame(columns=PUBLISHED_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def published_value(pub: pd.DataFrame, row: str, metric: str):
    """(value, std or None, unit) as printed for a row's metric, or None."""
    hit = pub[(pub["row"] == row) & (pub["metric"] == metric)]
    if hit.empty:
        return None
    entry = hit.iloc[0]
    std = None if pd.isna(entry["std"]) else float(entry["std"])
    return float(entry["value"]), std, entry["unit"]


def unit_scale(unit: str) -> float:
    """Times printed in seconds are compared in milliseconds."""
    return 1000.0 if unit == "s" else 1.0


def param_exceptions(path: Path = PARAM_EXCEPTIONS) -> dict[tuple[str, str], dict]:
    """(table, row) -> ``{"tolerance": float | None, "reason": str}``: the printed parameter
    counts (metric ``params_m``) our models do not match within the usual tolerance, with how
    far they may be instead (None: not comparable) and why."""
    entries = yaml.safe_load(Path(path).read_text()) or []
    return {
        (e["table"], e["row"]): {"tolerance": e["tolerance"], "reason": e["reason"]}
        for e in entries
    }
