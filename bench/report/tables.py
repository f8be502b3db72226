"""`python -m bench report`: published and measured numbers side by side, from records alone.

Inputs: ``results/published/*.csv`` (the papers' numbers) and ``results/runs/*.jsonl`` (one
record per evaluation). For each table: ``results/tables/<table>.{md,csv,tex}`` laid out like the
paper's table (its rows in the paper's order, then rows only we measured), each metric as a
"paper" and an "ours" column, a sampling-time ratio to the paper's fastest row where the table
has ST, and plots. A measured cell is the newest record holding that metric (paper profile
before demo); it carries a reference [n] to the record's profile, device, date and command. A
trained metric's cell aggregates that row's seeds measured under the same conditions,
``mean ± std (n=N)``, and a ``Rank`` column ranks the rows measured under identical conditions
by the headline metric with a mark on those not significantly different from the best
(`bench.report.ranking`).
A cell with no record reads ``not run``; a row without a config reads ``not built``. A row whose
records come from ``python -m bench compare`` (they name the ``compared_layer``) is marked
``(user row)``.
Malformed record lines are reported with file and line number and skipped.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.catalog import row_configs, table_meta
from bench.config import CONFIG_DIR, read_yaml
from bench.published import load_published, published_value, unit_scale
from bench.records import METRICS, load_records, measured_value, write_atomic
from bench.report import plots
from bench.report.conditions import condition_label, preprocessing_notes
from bench.report.fidelity import write_fidelity
from bench.report.ranking import (
    aggregate,
    choose_record,
    early_text,
    rank_cell,
    rank_rows,
    ranking_note,
)

log = logging.getLogger(__name__)


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
    metrics = [m for m in METRICS if m in set(pub["metric"])]
    metrics += [
        m
        for m in METRICS
        if m not in metrics and any(m in r["metrics"] or m in r.get("cells", {}) for r in records)
    ]
    row_order = list(dict.fromkeys(pub["row"]))
    row_order += sorted({r["row"] for r in records} - set(row_order))
    cite = _Citations()
    lines = []
    published_st: dict[str, float] = {}
    medians = False  # whether a timing cell shows a median (the legend then says so)
    by_row = {row: [r for r in records if r["row"] == row] for row in row_order}
    measured_by_row = {
        row: [r for r in mine if r.get("status") != "skipped"] for row, mine in by_row.items()
    }
    ranking = rank_rows(measured_by_row)
    for row in row_order:
        skipped = [r for r in by_row[row] if r.get("status") == "skipped"]
        measured = measured_by_row[row]
        user_row = any(r.get("compared_layer") for r in measured)
        entry: dict[str, Any] = {"Method": f"{row} (user row)" if user_row else row, "_row": row}
        if ranking is not None and ranking.rows:  # a column only where rows are ranked
            entry["Rank"] = rank_cell(ranking, row)
        for metric in metrics:
            label = METRICS[metric].label
            text, value = _published_cell(pub, row, metric)
            entry[f"{label} paper"] = text
            if metric == "st_ms" and value is not None:
                published_st[row] = value
            record = choose_record(measured, metric)
            if record is not None:
                said = record.get("cells", {}).get(metric)
                if said is not None:  # no number, and the record says why
                    cell = f"{said} [{cite(record)}]"
                else:
                    key = ranking.key if ranking is not None else None
                    cell, kind = _measured_cell(record, measured, metric, pub, row, cite, key)
                    medians |= kind == "median"
            elif skipped:
                cell = f"skipped ({skipped[-1].get('reason', 'no reason given')})"
            elif row not in configs:
                cell = "not built"
            else:
                cell = "not run"
            entry[f"{label} ours"] = cell
            numeric = record is not None and metric not in record.get("cells", {})
            entry[f"_{metric}"] = measured_value(record, metric)[0] if numeric else None
            entry[f"_{metric}_device"] = record.get("device") if numeric else None
        lines.append(entry)
    frame = pd.DataFrame(lines)
    if published_st:
        fastest = min(published_st, key=published_st.get)
        ours = {e["_row"]: (e.get("_st_ms"), e.get("_st_ms_device")) for e in lines}
        frame[f"ST / {fastest} paper"] = [
            _fmt(published_st[r] / published_st[fastest]) if r in published_st else ""
            for r in frame["_row"]
        ]
        reference = ours.get(fastest, (None, None))
        frame[f"ST / {fastest} ours"] = [
            _fmt(ours[r][0] / reference[0])
            if ours[r][0] and reference[0] and ours[r][1] == reference[1]  # one device only
            else ""
            for r in frame["_row"]
        ]
    visible = frame[[c for c in frame.columns if not c.startswith("_")]]
    notes = preprocessing_notes({row: configs[row] for row in row_order if row in configs})
    ranked = ranking_note(ranking) if ranking is not None else ""
    markdown = _markdown(table, visible, cite.references, medians, notes, ranked)
    return TableReport(table, markdown, frame, cite.references)


class _Citations:
    """The references [n] of a table, one per record, numbered in the order cells cite them."""

    def __init__(self) -> None:
        self.references: list[str] = []
        self.index: dict[str, int] = {}

    def __call__(self, record: dict) -> int:
        key = record["_source"]
        if key not in self.index:
            self.index[key] = len(self.references) + 1
            self.references.append(_reference(self.index[key], record))
        return self.index[key]

    def many(self, records: list[dict]) -> str:
        """``3``, ``3, 7`` or ``3–5`` (three or more consecutive numbers)."""
        numbers = sorted({self(r) for r in records})
        runs: list[list[int]] = []
        for n in numbers:
            if runs and n == runs[-1][-1] + 1:
                runs[-1].append(n)
            else:
                runs.append([n])
        return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def _measured_cell(
    record: dict,
    measured: list[dict],
    metric: str,
    pub: pd.DataFrame,
    row: str,
    cite: _Citations,
    ranked_key: tuple | None = None,
) -> tuple[str, str]:
    """(cell, kind) of a measured number: a trained metric aggregated over the row's seeds
    (`ranking.aggregate`: ``mean ± std (n=N)``, under the ranked conditions ``ranked_key`` where
    the row has records there), a timing as its median (IQR) where recorded;
    the conditions where they differ from the paper's, and the records cited."""
    seeds = aggregate(measured, metric, ranked_key) if METRICS[metric].trained else None
    if seeds is not None:
        record = seeds.chosen
        early = early_text(record)
        condition = condition_label(record, metric, paper_dataset(pub, row))
        condition += f" ({early})" if early else ""
        return f"{seeds.text(_fmt)}{condition} [{cite.many(list(seeds.records))}]", "mean"
    value, spread, kind = measured_value(record, metric)
    text = _fmt(value) + f" (IQR {_fmt(spread)})" if kind == "median" else _fmt(value, spread)
    condition = condition_label(record, metric, paper_dataset(pub, row))
    return f"{text}{condition} [{cite(record)}]", kind


def paper_dataset(pub: pd.DataFrame, row: str) -> str | None:
    """The data set the paper measured ``row`` on (else the table's most common), or None."""
    mine = pub[pub["row"] == row]["dataset"]
    pool = mine if not mine.empty else pub["dataset"]
    return None if pool.empty else str(pool.mode().iloc[0])


def _reference(index: int, record: dict) -> str:
    when = (record.get("timestamp") or "")[:10]
    steps = f", {record['steps']} steps" if record.get("steps") else ""
    steps += f" of batch {record['batch_size']}" if record.get("batch_size") else ""
    steps += f", budget {record['budget_steps']} steps" if record.get("budget_steps") else ""
    steps += f", seed {record['seed']}" if "seed" in record else ""
    note = f"; {record['note']}" if record.get("note") else ""
    return (
        f"[{index}] {record.get('profile', '?')} profile, {record.get('dataset', '?')}{steps}, "
        f"{record.get('device', '?')}, {when}, commit {record.get('git_commit', '?')}, "
        f"{record['_source']}: `{record.get('command', '?')}`{note}"
    )


def _markdown(
    table: str,
    frame: pd.DataFrame,
    references: list[str],
    medians: bool,
    notes: list[str],
    ranked: str = "",
) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    parts = [f"## {table_meta(table).title}", "", header, rule, *body, ""]
    if ranked:
        parts += [ranked, ""]
    parts.append(
        "`paper`: as printed (s* = printed in seconds). `ours`: measured, mean ± std; "
        "[n] names the record. `not run`: no record yet; `not built`: no model yet."
        + (" Timings with (IQR): median and interquartile range of the runs." if medians else "")
        + (
            " (n=N): mean ± sample std over N seeds, trained under the same conditions."
            if frame.apply(lambda column: column.astype(str).str.contains(r"\(n=\d+\)")).any().any()
            else ""
        )
        + " A measured cell names its data set and profile where they differ from the paper's."
        + (
            " (user row): a layer compared with `python -m bench compare`, not a row of the suite."
            if frame["Method"].str.endswith(" (user row)").any()
            else ""
        )
    )
    if notes:
        parts += ["", "Preprocessing (inside each model; BPD counts it):", *notes]
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
            ("≈", r"$\approx$"),
            ("—", "---"),
            ("–", "--"),
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


def configured_rows() -> dict[str, dict[str, str]]:
    """table -> {row label: config path} for every row YAML."""
    out: dict[str, dict[str, str]] = {}
    for path in row_configs():
        data = read_yaml(path)
        if "row" in data:
            table = data.get("table", path.parent.name)
            out.setdefault(table, {})[data["row"]] = str(path.relative_to(CONFIG_DIR.parent.parent))
    return out


def write_table(rep: TableReport, out_dir: Path) -> list[Path]:
    """``<table>.md``, ``.csv`` and ``.tex``; returns the paths written."""
    visible = rep.frame[[c for c in rep.frame.columns if not c.startswith("_")]]
    outputs = {
        out_dir / f"{rep.table}.md": rep.markdown,
        out_dir / f"{rep.table}.csv": visible.to_csv(index=False),
        out_dir / f"{rep.table}.tex": _latex(visible, table_meta(rep.table).title),
    }
    for path, text in outputs.items():
        write_atomic(path, text)
    return list(outputs)


MANIFEST = ".manifest.json"  # in tables/: the files the last report wrote


def read_manifest(out_dir: Path) -> set[str]:
    """The names of the files earlier reports wrote in ``out_dir`` (empty when there is no
    readable manifest: then nothing is removed)."""
    try:
        names = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return set()
    return {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()


def write_manifest(out_dir: Path, names: set[str]) -> None:
    write_atomic(out_dir / MANIFEST, json.dumps(sorted(names), indent=1) + "\n")


def remove_stale(
    out_dir: Path, tables: set[str], written: set[Path], with_plots: bool = True
) -> list[Path]:
    """Remove what an earlier report wrote (its manifest, `MANIFEST`) and this one no longer
    does: tables that are gone, plots not drawn this time (kept when this report draws none).
    Files the report did not write (a user's notes, figures of other commands) are never
    removed. Writes the new manifest. ``tables``: kept for callers, unused."""
    previous = read_manifest(out_dir)
    names = {path.name for path in written}
    kept = {n for n in previous - names if not with_plots and n.endswith(".png")}
    stale = []
    for name in sorted(previous - names - kept):
        path = out_dir / name
        if path.parent == out_dir and path.is_file():  # a name, never a path elsewhere
            path.unlink()
            stale.append(path)
    write_manifest(out_dir, names | kept)
    return stale


def table_report(results_dir: str | Path, table: str) -> TableReport:
    """One table built from the records, nothing written (what W&B logs after a run)."""
    records = [r for r in load_records(Path(results_dir)).rows if r["table"] == table]
    pub = load_published(Path(results_dir))
    return build_table(table, pub, records, configured_rows().get(table, {}))


def report(
    results_dir: str | Path = "results",
    with_plots: bool = True,
    tables: list[str] | None = None,
    extra_results: list[Path] = (),
) -> dict[str, Any]:
    """Write every table and plot (or only ``tables``, then nothing is removed as stale), from
    the records of ``results_dir`` and of ``extra_results`` (other results folders, read only);
    return {'tables': {...}, 'problems': [...], 'removed': [...]}."""
    results_dir = Path(results_dir)
    pub = load_published(results_dir)
    loaded = load_records(results_dir)
    for extra in extra_results:
        if Path(extra).resolve() != results_dir.resolve():
            more = load_records(Path(extra))
            for record in more.rows:  # references name the other folder's file
                record["_source"] = f"{Path(extra) / 'runs' / record['_source']}"
            loaded.rows += more.rows
            loaded.problems += more.problems
    configs = configured_rows()
    every = sorted(set(pub["table"]) | {r["table"] for r in loaded.rows if r["table"] != "layers"})
    chosen = tables is not None
    tables = [t for t in every if not chosen or t in tables]
    out_dir = results_dir / "tables"
    reports, written = {}, set()
    for table in tables:
        records = [r for r in loaded.rows if r["table"] == table]
        rep = build_table(table, pub, records, configs.get(table, {}))
        written.update(write_table(rep, out_dir))
        reports[table] = rep
        if with_plots:
            written.update(plots.table_plots(table, pub[pub["table"] == table], records, out_dir))
    if chosen:  # nothing removed; what was written joins the manifest
        write_manifest(out_dir, read_manifest(out_dir) | {p.name for p in written})
        return {"tables": reports, "problems": loaded.problems, "removed": []}
    if with_plots:
        layer_records = [r for r in loaded.rows if r["table"] == "layers"]
        written.update(plots.layer_plots(layer_records, out_dir))
    fidelity = write_fidelity(results_dir, out_dir)
    if fidelity is not None:
        written.add(fidelity)
        tables.append("fidelity")  # not a table of records, but not stale either
    problems_file = out_dir / "PROBLEMS.txt"
    if loaded.problems:
        write_atomic(problems_file, "\n".join(loaded.problems) + "\n")
        written.add(problems_file)
    removed = remove_stale(out_dir, set(tables), written, with_plots)
    return {"tables": reports, "problems": loaded.problems, "removed": removed}
