"""Plots of the report (matplotlib, Agg): timing bars with error bars (paper vs ours), parameter
count vs BPD, BPD training curves from the records, the ranking (seed mean ± std of the ranked
rows, each seed a dot), and layer-benchmark ratios."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.protocol import describe_conditions  # noqa: E402
from bench.published import published_value, unit_scale  # noqa: E402
from bench.records import METRICS, measured_value, pick_record, write_atomic  # noqa: E402
from bench.report.ranking import HEADLINE, rank_rows  # noqa: E402

PNG_METADATA = {"Software": None}  # byte-identical output for the same records
# The per-table plots, named <table>_<kind>.png; the report removes those it no longer writes.
TABLE_PLOTS = ("timing", "params_bpd", "curves", "ranking")


def save_figure(fig, path: Path) -> Path:
    """Render ``fig`` to PNG and write it atomically (`bench.records.write_atomic`)."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110, metadata=PNG_METADATA)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
    return path


def _published(pub: pd.DataFrame, row: str, metric: str) -> tuple[float, float]:
    """(value, std) in comparable units, NaN when the paper has no such cell."""
    found = published_value(pub, row, metric)
    if found is None:
        return np.nan, 0.0
    value, std, unit = found
    return value * unit_scale(unit), (std or 0.0) * unit_scale(unit)


def timing_bars(table: str, pub: pd.DataFrame, records: list[dict], out_dir: Path) -> Path | None:
    metrics = [m for m in ("st_ms", "ft_ms") if m in set(pub["metric"])]
    if not metrics:
        return None
    rows = list(dict.fromkeys(pub["row"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        x = np.arange(len(rows))
        paper = [_published(pub, r, metric) for r in rows]
        ours = []
        for r in rows:
            rec = pick_record(records, metric, r)
            value, spread, _ = measured_value(rec, metric) if rec else (np.nan, 0.0, "")
            ours.append((value, spread or 0.0))
        ax.bar(
            x - 0.2,
            [p[0] for p in paper],
            0.4,
            yerr=[p[1] for p in paper],
            label="paper",
            capsize=3,
        )
        ax.bar(
            x + 0.2, [o[0] for o in ours], 0.4, yerr=[o[1] for o in ours], label="ours", capsize=3
        )
        ax.set_xticks(x, rows, rotation=30, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel(f"{metric.split('_')[0].upper()} (ms, log scale)")
        ax.legend(fontsize=8)
    fig.suptitle(f"{table}: sampling (ST) and forward (FT) time", fontsize=10)
    return save_figure(fig, out_dir / f"{table}_timing.png")


def params_vs_bpd(table: str, pub: pd.DataFrame, records: list[dict], out_dir: Path) -> Path | None:
    if not {"bpd", "params_m"} <= set(pub["metric"]) and not any(
        {"bpd", "params_m"} <= set(r.get("metrics", {})) for r in records
    ):
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    rows = list(dict.fromkeys([*pub["row"], *(r["row"] for r in records)]))
    for row in rows:
        p, b = _published(pub, row, "params_m")[0], _published(pub, row, "bpd")[0]
        if not (np.isnan(p) or np.isnan(b)):
            ax.scatter(p, b, marker="o", color="tab:blue")
            ax.annotate(row, (p, b), fontsize=7)
        rp, rb = pick_record(records, "params_m", row), pick_record(records, "bpd", row)
        if rp and rb:
            ax.scatter(
                rp["metrics"]["params_m"], rb["metrics"]["bpd"], marker="x", color="tab:orange"
            )
            ax.annotate(
                f"{row} ({rb.get('profile')})",
                (rp["metrics"]["params_m"], rb["metrics"]["bpd"]),
                fontsize=7,
                color="tab:orange",
            )
    ax.set_xscale("log")
    ax.set_xlabel("parameters (M, log scale)")
    ax.set_ylabel("test BPD")
    ax.set_title(f"{table}: parameters vs BPD (o paper, x ours)", fontsize=10)
    return save_figure(fig, out_dir / f"{table}_params_bpd.png")


def training_curves(table: str, records: list[dict], out_dir: Path) -> Path | None:
    curves = [r for r in records if r.get("curve", {}).get("train_step")]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for record in sorted(curves, key=lambda r: (r["row"], r.get("timestamp") or "")):
        curve = record["curve"]
        label = f"{record['row']} ({record.get('profile')})"
        (line,) = ax.plot(curve["train_step"], curve["train_bpd"], lw=1, alpha=0.6, label=label)
        if curve.get("val_step"):
            ax.plot(curve["val_step"], curve["val_bpd"], "o-", color=line.get_color(), ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("BPD (line: train, dots: validation)")
    ax.set_title(f"{table}: training curves", fontsize=10)
    ax.legend(fontsize=7)
    return save_figure(fig, out_dir / f"{table}_curves.png")


def _user_row(records) -> bool:
    return any(r.get("compared_layer") for r in records)


def ranking_plot(table: str, records: list[dict], out_dir: Path) -> Path | None:
    """``<table>_ranking.png``: the ranked rows (`bench.report.ranking.rank_rows`), best at the
    top, as seed mean ± sample std with each seed's value a dot; ≈ marks a row not
    significantly different from the best. None where nothing is ranked."""
    rows = sorted({r["row"] for r in records})
    ranking = rank_rows({row: [r for r in records if r["row"] == row] for row in rows})
    if ranking is None or not ranking.rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.45 * len(ranking.rows)))
    y = np.arange(len(ranking.rows))[::-1]
    for place, ranked in zip(y, ranking.rows, strict=True):
        seeds = ranked.seeds
        colour = "tab:blue" if ranked.rank == 1 or ranked.similar else "tab:red"
        colour = "tab:gray" if ranked.single_seed and ranked.rank > 1 else colour
        ax.errorbar(
            seeds.mean, place, xerr=seeds.std or 0.0, fmt="o", color=colour, capsize=4, ms=7
        )
        ax.scatter(seeds.values, [place] * seeds.n, s=12, color="k", alpha=0.5, zorder=3)
    labels = [
        f"{r.rank}. {r.row}{' (user row)' if _user_row(r.seeds.records) else ''}"
        f"{' ≈' if r.similar else ''} (n={r.seeds.n})"
        for r in ranking.rows
    ]
    ax.set_yticks(y, labels, fontsize=8)
    better = "higher" if HEADLINE[ranking.metric] else "lower"
    ax.margins(x=0.08, y=0.25)
    ax.set_xlabel(
        f"{METRICS[ranking.metric].label} ({better} is better): seed mean ± std, dots: seeds\n"
        "blue: best or ≈ (Welch p ≥ 0.05), red: worse (p < 0.05), gray: single seed, no test",
        fontsize=8,
    )
    ax.set_title(f"{table}: ranking\n{describe_conditions(ranking.key)}", fontsize=9)
    return save_figure(fig, out_dir / f"{table}_ranking.png")


def table_plots(table: str, pub: pd.DataFrame, records: list[dict], out_dir: Path) -> list[Path]:
    """Every `TABLE_PLOTS` kind that has data; returns the paths written."""
    measured = [r for r in records if r.get("status") != "skipped"]
    written = (
        timing_bars(table, pub, measured, out_dir),
        params_vs_bpd(table, pub, measured, out_dir),
        training_curves(table, measured, out_dir),
        ranking_plot(table, measured, out_dir),
    )
    return [path for path in written if path is not None]


def layer_plots(records: list[dict], out_dir: Path) -> list[Path]:
    """Inverse-conv benchmark: ratio to conv2d per shape and method, one panel per pass."""
    rows = [r for r in records if r["row"].startswith("inverse_conv/")]
    if not rows:
        return []
    parsed = []
    for r in rows:
        _, method, what, shape = r["row"].split("/")
        parsed.append(
            (
                r["device"],
                shape,
                method,
                what,
                r["metrics"]["ratio_to_conv2d"],
                r.get("timestamp") or "",
            )
        )
    frame = pd.DataFrame(parsed, columns=["device", "shape", "method", "pass", "ratio", "ts"])
    frame = frame.sort_values("ts").groupby(["device", "shape", "method", "pass"]).last()
    frame = frame.reset_index()
    devices = sorted(frame["device"].unique())
    methods = sorted(set(frame["method"]) - {"conv2d"})
    colours = dict(zip(methods, plt.get_cmap("tab10").colors, strict=False))
    fig, axes = plt.subplots(len(devices), 2, figsize=(11, 3.6 * len(devices)), squeeze=False)
    for i, device in enumerate(devices):
        for j, what in enumerate(("solve", "backward")):
            ax = axes[i][j]
            sub = frame[(frame["device"] == device) & (frame["pass"] == what)]
            table = sub.pivot(index="shape", columns="method", values="ratio")
            table.plot.bar(ax=ax, logy=True, rot=0, color=[colours[m] for m in table.columns])
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_ylabel("time / conv2d (log)")
            ax.set_title(f"{what}, {device}", fontsize=9)
            ax.legend(fontsize=7)
    return [save_figure(fig, out_dir / "layers_inverse_conv.png")]


def fourier_scaling(rows: list[dict], path: Path) -> Path:
    """Log-log time against size: structured (N log N) vs dense (N^3) routes."""
    frame = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, family, xlabel in (
        (axes[0], "channels", "channels C (8x8 images)"),
        (axes[1], "spatial", "image side N (N x N, one channel)"),
    ):
        sub = frame[frame["family"] == family]
        for (layer, what), group in sub.groupby(["layer", "pass"]):
            group = group.sort_values("size")
            ax.errorbar(
                group["size"],
                group["ms"],
                yerr=group["std_ms"],
                marker="o",
                label=f"{layer} {what}",
                capsize=2,
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("time (ms, log)")
        ax.legend(fontsize=7)
    fig.suptitle(f"Fourier-domain layers vs dense routes ({frame['device'].iloc[0]})", fontsize=10)
    return save_figure(fig, path)


def compare_layers_plot(frame: pd.DataFrame, highlight: str, title: str, path: Path) -> Path:
    """``python -m bench compare``'s layer timing: per pass (density, sampling, backward) the
    median time / conv2d of each layer at each of the slot's shapes (log scale); the compared
    layer ``highlight`` is drawn first, with a black edge."""
    passes = [p for p in ("density", "sampling", "backward") if p in set(frame["pass"])]
    layers = [highlight, *sorted(set(frame["layer"]) - {highlight})]
    colours = dict(zip(layers, plt.get_cmap("tab10").colors, strict=False))
    fig, axes = plt.subplots(1, len(passes), figsize=(4.2 * len(passes), 3.6), squeeze=False)
    for ax, what in zip(axes[0], passes, strict=False):
        sub = frame[frame["pass"] == what]
        table = sub.pivot_table(
            index="shape", columns="layer", values="ratio_to_conv2d", sort=False
        )
        table = table[[name for name in layers if name in table.columns]]
        bars = table.plot.bar(ax=ax, logy=True, rot=0, color=[colours[n] for n in table.columns])
        for patch in bars.containers[0]:
            patch.set_edgecolor("black")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_ylabel("time / conv2d 3x3 (log)")
        ax.set_xlabel("C x H x W")
        ax.set_title(what, fontsize=9)
        ax.get_legend().remove()
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
