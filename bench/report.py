"""`python -m bench report`: published and measured numbers side by side, from records alone.

Inputs: ``results/published/*.csv`` (the papers' numbers) and ``results/runs/*.jsonl`` (one
record per evaluation). For each table: ``results/tables/<table>.{md,csv,tex}`` laid out like the
paper's table (its rows in the paper's order, then rows only we measured), each metric as a
"paper" and an "ours" column, a sampling-time ratio to the paper's fastest row where the table
has ST, and plots. A measured cell is the newest record holding that metric (paper profile
before demo); it carries a reference [n] to the record's profile, device, date and command.
A cell with no record reads ``not run``; a row without a config reads ``not built``.
Malformed record lines are reported with file and line number and skipped.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.config import CONFIG_DIR, PROFILE_RANK, read_yaml
from bench.results import write_atomic

log = logging.getLogger(__name__)

PUBLISHED_COLUMNS = ["paper", "table", "row", "dataset", "metric", "value", "std", "unit", "note"]
METRIC_LABELS = {
    "bpd": "BPD",
    "nll": "NLL",
    "st_ms": "ST (ms)",
    "ft_ms": "FT (ms)",
    "params_m": "Param (M)",
    "fid": "FID",
    "accuracy": "Acc (%)",
    "mse": "MSE",
    "compression_pct": "Size (%)",
    "psnr": "PSNR (dB)",
    "jpeg_psnr": "JPEG PSNR (dB)",
    "ssim": "SSIM",
    "jpeg_ssim": "JPEG SSIM",
}
STD_OF = {"st_ms": "st_std", "ft_ms": "ft_std"}
TITLES = {
    "inverse_flow_t2": "Inverse-Flow Table 2: MNIST, L=2, K=4",
    "inverse_flow_t3": "Inverse-Flow Table 3: MNIST, L=2, K=16",
    "inverse_flow_t4": "Inverse-Flow Table 4: 9-layer linear flows on MNIST",
    "inverse_flow_t5": "Inverse-Flow Table 5: CIFAR-10, L=2, K=4",
    "inverse_flow_t6": "Inverse-Flow Table 6: CIFAR-10, L=2, K=16",
    "inverse_flow_classifier": "Inverse-Flow: MNIST classifier with inverse convolutions",
    "iconvnet_t1": "i-ConvNet Table 1: path to invertibility (CIFAR-10 accuracy)",
    "iconvnet_t2": "i-ConvNet Table 2: CIFAR-10 bits per dimension",
    "dfm_t5_2": "Deep Fourier Machines Table 5.2: CIFAR-10 FID",
    "convflow_mnist": "Other registry flows on MNIST (no published cells)",
    "dfm_mnist": "Deep Fourier Machines on MNIST (no published cells)",
    "dfm_compression": "Deep Fourier Machines: image compression against JPEG of the same size",
    "cdflow_t2_cifar10": "CDFlow Table 2, CIFAR-10 column: parameters and test BPD",
    "cdflow_t2_imagenet32": "CDFlow Table 2, ImageNet32 column: parameters and test BPD",
    "cdflow_t2_galaxy": "CDFlow Table 2, Galaxy column: parameters and test BPD",
}


@dataclass
class Records:
    """Parsed run records, and the lines that could not be parsed (file:line: reason)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def load_published(results_dir: Path) -> pd.DataFrame:
    frames = []
    for path in sorted((Path(results_dir) / "published").glob("*.csv")):
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


def load_records(results_dir: Path) -> Records:
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


def configured_rows() -> dict[str, dict[str, str]]:
    """table -> {row label: config path} for every row YAML."""
    out: dict[str, dict[str, str]] = {}
    for path in sorted(CONFIG_DIR.glob("*/*.yaml")):
        data = read_yaml(path)
        if "table" in data and "row" in data:
            out.setdefault(data["table"], {})[data["row"]] = str(
                path.relative_to(CONFIG_DIR.parent.parent)
            )
    return out


def pick_record(records: list[dict], metric: str, row: str | None = None) -> dict | None:
    """The record a cell shows: among those holding ``metric`` (of ``row``), the highest
    profile rank (paper, short, demo), then the newest."""
    holding = [
        r
        for r in records
        if isinstance(r["metrics"].get(metric), int | float) and (row is None or r["row"] == row)
    ]
    if not holding:
        return None
    return max(
        holding, key=lambda r: (PROFILE_RANK.get(r.get("profile"), 0), r.get("timestamp") or "")
    )


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    digits = 3 if abs(value) < 10 else 1
    text = f"{value:.{digits}f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" ± {std:.{digits}f}"
    return text


@dataclass
class TableReport:
    table: str
    markdown: str
    frame: pd.DataFrame
    references: list[str]


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


def _published_cell(pub: pd.DataFrame, row: str, metric: str) -> tuple[str, float | None]:
    found = published_value(pub, row, metric)
    if found is None:
        return "", None
    value, std, unit = found
    suffix = " s*" if unit == "s" else ""
    return _fmt(value, std) + suffix, value * unit_scale(unit)


def build_table(
    table: str, pub: pd.DataFrame, records: list[dict], configs: dict[str, str]
) -> TableReport:
    """One table: rows in the paper's order then measured-only rows; paper/ours per metric."""
    pub = pub[pub["table"] == table]
    metrics = [m for m in METRIC_LABELS if m in set(pub["metric"])]
    metrics += [
        m for m in METRIC_LABELS if m not in metrics and any(m in r["metrics"] for r in records)
    ]
    row_order = list(dict.fromkeys(pub["row"]))
    row_order += sorted({r["row"] for r in records} - set(row_order))
    references: list[str] = []
    ref_index: dict[str, int] = {}
    lines = []
    published_st: dict[str, float] = {}
    for row in row_order:
        mine = [r for r in records if r["row"] == row]
        skipped = [r for r in mine if r.get("status") == "skipped"]
        measured = [r for r in mine if r.get("status") != "skipped"]
        entry: dict[str, Any] = {"Method": row}
        for metric in metrics:
            label = METRIC_LABELS[metric]
            text, value = _published_cell(pub, row, metric)
            entry[f"{label} paper"] = text
            if metric == "st_ms" and value is not None:
                published_st[row] = value
            record = pick_record(measured, metric)
            if record is not None:
                key = record["_source"]
                if key not in ref_index:
                    ref_index[key] = len(references) + 1
                    references.append(_reference(ref_index[key], record))
                std = record["metrics"].get(STD_OF.get(metric, ""))
                cell = f"{_fmt(record['metrics'][metric], std)} [{ref_index[key]}]"
            elif skipped:
                cell = f"skipped ({skipped[-1].get('reason', 'no reason given')})"
            elif row not in configs:
                cell = "not built"
            else:
                cell = "not run"
            entry[f"{label} ours"] = cell
            entry[f"_{metric}"] = record["metrics"][metric] if record else None
        lines.append(entry)
    frame = pd.DataFrame(lines)
    if published_st:
        fastest = min(published_st, key=published_st.get)
        ours = {e["Method"]: e.get("_st_ms") for e in lines}
        frame[f"ST / {fastest} paper"] = [
            _fmt(published_st[r] / published_st[fastest]) if r in published_st else ""
            for r in frame["Method"]
        ]
        frame[f"ST / {fastest} ours"] = [
            _fmt(ours[r] / ours[fastest]) if ours.get(r) and ours.get(fastest) else ""
            for r in frame["Method"]
        ]
    visible = frame[[c for c in frame.columns if not c.startswith("_")]]
    markdown = _markdown(table, visible, references)
    return TableReport(table, markdown, frame, references)


def _reference(index: int, record: dict) -> str:
    when = (record.get("timestamp") or "")[:10]
    steps = f", {record['steps']} steps" if record.get("steps") else ""
    note = f"; {record['note']}" if record.get("note") else ""
    return (
        f"[{index}] {record.get('profile', '?')} profile, {record.get('dataset', '?')}{steps}, "
        f"{record.get('device', '?')}, {when}, commit {record.get('git_commit', '?')}, "
        f"{record['_source']}: `{record.get('command', '?')}`{note}"
    )


def _markdown(table: str, frame: pd.DataFrame, references: list[str]) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    parts = [f"## {TITLES.get(table, table)}", "", header, rule, *body, ""]
    parts.append(
        "`paper`: as printed (s* = printed in seconds). `ours`: measured, mean ± std; "
        "[n] names the record. `not run`: no record yet; `not built`: no model yet."
    )
    if references:
        parts += ["", *references]
    return "\n".join(parts) + "\n"


def _latex(frame: pd.DataFrame, title: str) -> str:
    def esc(text: str) -> str:
        for a, b in (
            ("\\", r"\textbackslash{}"),
            ("&", r"\&"),
            ("%", r"\%"),
            ("_", r"\_"),
            ("#", r"\#"),
            ("±", r"$\pm$"),
        ):
            text = text.replace(a, b)
        return text

    cols = "l" + "r" * (len(frame.columns) - 1)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{esc(title)}}}",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        " & ".join(esc(str(c)) for c in frame.columns) + r" \\",
        r"\midrule",
    ]
    lines += [
        " & ".join(esc(str(v)) for v in row) + r" \\" for row in frame.itertuples(index=False)
    ]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def report(results_dir: str | Path = "results", plots: bool = True) -> dict[str, Any]:
    """Write every table and plot; return {'tables': {...}, 'problems': [...]}."""
    results_dir = Path(results_dir)
    pub = load_published(results_dir)
    loaded = load_records(results_dir)
    configs = configured_rows()
    tables = sorted(set(pub["table"]) | {r["table"] for r in loaded.rows if r["table"] != "layers"})
    out_dir = results_dir / "tables"
    reports = {}
    for table in tables:
        records = [r for r in loaded.rows if r["table"] == table]
        rep = build_table(table, pub, records, configs.get(table, {}))
        visible = rep.frame[[c for c in rep.frame.columns if not c.startswith("_")]]
        write_atomic(out_dir / f"{table}.md", rep.markdown)
        write_atomic(out_dir / f"{table}.csv", visible.to_csv(index=False))
        write_atomic(out_dir / f"{table}.tex", _latex(visible, TITLES.get(table, table)))
        reports[table] = rep
        if plots:
            from bench import plots as plotting

            plotting.table_plots(table, pub[pub["table"] == table], records, out_dir)
    if plots:
        from bench import plots as plotting

        plotting.layer_plots([r for r in loaded.rows if r["table"] == "layers"], out_dir)
    if loaded.problems:
        write_atomic(out_dir / "PROBLEMS.txt", "\n".join(loaded.problems) + "\n")
    return {"tables": reports, "problems": loaded.problems}
