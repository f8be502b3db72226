"""Seeds and ranks: each trained cell aggregated over its seeds, and the rows of a table ranked
with the uncertainty of that order.

Aggregation (`aggregate`). A cell of a trained metric (`bench.records.METRICS`, ``trained``)
shows the row's records under the ranked conditions where it has any, else the record
`choose_record` picks (`bench.records.pick_record`: highest profile, then the newest; a record
that ended early only where the row has no other) together with every other record of that row
measured under the same `bench.protocol.conditions`: the newest record per
seed (`bench.protocol.record_seed`; a rerun of a seed replaces it) gives ``mean ± std (n=N)``,
std the sample standard deviation (ddof=1). One seed reads as a plain value.

Ranking (`rank_rows`). A table ranks its rows by the seed mean of its headline metric
(`HEADLINE`: the first of bpd, accuracy, mse, fid, nll that a record holds; lower is better,
accuracy higher) over the rows of ONE conditions group: the group with the most rows (ties: more
seeds, then the newest record), a row counting in every group it has finished records in. Rows
measured under other conditions, and rows whose record ended early
(`bench.protocol.ended_early`), are listed but not ranked. Each ranked row is compared with the
best by Welch's t-test (`welch_p`, unequal variances) on the seed values; ``≈`` marks a row
whose difference from the best is not significant (p >= `ALPHA`). With a single seed on either
side there is no test and the cell says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from bench.protocol import (
    WARMUP_RULE,
    conditions,
    describe_conditions,
    ended_early,
    record_seed,
)
from bench.records import METRICS, Record, measured_value, pick_record

ALPHA = 0.05  # significance level of the test against the best row
# The metric a table is ranked by, in order of preference, and whether higher is better.
HEADLINE: dict[str, bool] = {
    "bpd": False,
    "accuracy": True,
    "mse": False,
    "fid": False,
    "nll": False,
}
NOT_RANKED = "—"


def _numeric(record: Record, metric: str) -> bool:
    value = record["metrics"].get(metric)
    return isinstance(value, int | float) and not isinstance(value, bool)


def early_text(record: Record) -> str:
    """``ended early at 300 of 1000 steps`` (``""`` for a record that did not end early)."""
    if not ended_early(record):
        return ""
    return f"ended early at {record.get('steps')} of {record['budget_steps']} steps"


def choose_record(records: list[Record], metric: str) -> Record | None:
    """The record a cell shows (`pick_record`); for a trained metric one that ended early only
    where the row has no other, so a failed seed does not hide the finished ones."""
    if METRICS[metric].trained:
        finished = [r for r in records if not ended_early(r)]
        return pick_record(finished, metric) or pick_record(records, metric)
    return pick_record(records, metric)


def newest_per_seed(records: Iterable[Record]) -> list[Record]:
    """The newest record of each seed (a rerun replaces the earlier one), by seed."""
    newest: dict[int, Record] = {}
    for record in records:
        seed = record_seed(record)
        if seed not in newest or (record.get("timestamp") or "") >= (
            newest[seed].get("timestamp") or ""
        ):
            newest[seed] = record
    return [newest[seed] for seed in sorted(newest)]


@dataclass(frozen=True)
class Aggregate:
    """A cell's seeds: the records used (newest per seed), their values, mean and sample std
    (None for one seed), under ``key`` (`bench.protocol.conditions`)."""

    metric: str
    key: tuple
    records: tuple[Record, ...]
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float | None:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else None

    @property
    def chosen(self) -> Record:
        """The newest record of the cell: the one whose conditions the cell names."""
        return max(self.records, key=lambda r: r.get("timestamp") or "")

    @property
    def ended_early(self) -> bool:
        return ended_early(self.chosen)

    def text(self, fmt: Callable[..., str]) -> str:
        """``mean ± std (n=N)``; one seed: the record's value as a single cell shows it."""
        if self.n == 1:
            value, spread, _ = measured_value(self.records[0], self.metric)
            return fmt(value, spread)
        return f"{fmt(self.mean, self.std)} (n={self.n})"


def aggregate(records: list[Record], metric: str, key: tuple | None = None) -> Aggregate | None:
    """The seeds of one row's cell for ``metric``: the finished records under the conditions
    ``key`` (the ranked group's) where the row has any, else the records under the conditions
    of the record `choose_record` picks (and, like it, ended early or not); newest per seed.
    None where no record holds a number for it."""
    if key is not None:
        group = [
            r
            for r in records
            if _numeric(r, metric) and conditions(r) == key and not ended_early(r)
        ]
        if group:
            return _seeds(group, metric, key)
    chosen = choose_record(records, metric)
    if chosen is None or not _numeric(chosen, metric):
        return None
    key, early = conditions(chosen), ended_early(chosen)
    group = [
        r
        for r in records
        if _numeric(r, metric) and conditions(r) == key and ended_early(r) == early
    ]
    return _seeds(group, metric, key)


def _seeds(group: list[Record], metric: str, key: tuple) -> Aggregate:
    seeds = newest_per_seed(group)
    values = tuple(float(r["metrics"][metric]) for r in seeds)
    return Aggregate(metric, key, tuple(seeds), values)


def headline_metric(records: Iterable[Record]) -> str | None:
    """The first `HEADLINE` metric a record holds a number for, or None."""
    held = {m for r in records for m in HEADLINE if _numeric(r, m)}
    return next((m for m in HEADLINE if m in held), None)


def welch_p(a: Iterable[float], b: Iterable[float]) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances) of two seed samples; nan where
    undefined (fewer than two values on a side, or no spread on both)."""
    from scipy.stats import ttest_ind  # scipy is heavy: only when a table is ranked

    a, b = list(a), list(b)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if np.std(a) == 0 and np.std(b) == 0:
        return 1.0 if np.mean(a) == np.mean(b) else 0.0  # no spread: scipy's limits (nan, 0)
    with warnings.catch_warnings():  # one constant side: scipy warns of precision, rightly
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttest_ind(a, b, equal_var=False).pvalue)


@dataclass(frozen=True)
class Ranked:
    """A ranked row: its place, seeds, and the test against the best (p None: no test)."""

    row: str
    rank: int
    seeds: Aggregate
    p_value: float | None = None
    single_seed: bool = False  # this row or the best has one seed: no test

    @property
    def similar(self) -> bool:
        """Not significantly different from the best (p >= `ALPHA`)."""
        return self.p_value is not None and not self.p_value < ALPHA


@dataclass
class Ranking:
    """A table's ranking: by ``metric`` under ``key``; ``rows`` best first; ``unranked``: row ->
    why it is not ranked (``other conditions`` or ``ended early``)."""

    metric: str
    key: tuple | None
    rows: list[Ranked] = field(default_factory=list)
    unranked: dict[str, str] = field(default_factory=dict)

    def of(self, row: str) -> Ranked | None:
        return next((r for r in self.rows if r.row == row), None)

    @property
    def equal_budget(self) -> bool:
        """Whether the ranked records come from an equal-budget run (`budget_steps`)."""
        return any("budget_steps" in rec for r in self.rows for rec in r.seeds.records)


def _group_order(group: dict[str, Aggregate]) -> tuple:
    """Most rows, then most seeds, then the newest record."""
    newest = max(a.chosen.get("timestamp") or "" for a in group.values())
    return (len(group), sum(a.n for a in group.values()), newest)


def condition_groups(records_by_row: dict[str, list[Record]], metric: str) -> dict[tuple, dict]:
    """Conditions key -> {row: its seeds under that key}, over every finished record: a row
    measured under several conditions (an older single run and an equal-budget sweep) is in
    each of their groups."""
    groups: dict[tuple, dict[str, Aggregate]] = {}
    for row, records in records_by_row.items():
        finished = [r for r in records if _numeric(r, metric) and not ended_early(r)]
        for key in dict.fromkeys(conditions(r) for r in finished):
            groups.setdefault(key, {})[row] = aggregate(records, metric, key)
    return groups


def rank_rows(records_by_row: dict[str, list[Record]]) -> Ranking | None:
    """Rank the rows (row -> its measured records) by the seed mean of the headline metric, in
    the conditions group with the most rows (ties: more seeds, then the newest); None where no
    record holds a headline metric. Fewer than two rows in that group: nothing is ranked
    (``key`` None)."""
    metric = headline_metric(r for rows in records_by_row.values() for r in rows)
    if metric is None:
        return None
    ranking = Ranking(metric, None)
    groups = condition_groups(records_by_row, metric)
    best_group = max(groups.values(), key=_group_order, default={})
    if len(best_group) >= 2:
        ranking.key = next(iter(best_group.values())).key
        higher = HEADLINE[metric]
        order = sorted(best_group.items(), key=lambda kv: -kv[1].mean if higher else kv[1].mean)
        best = order[0][1]
        for place, (row, cell) in enumerate(order, start=1):
            single = min(best.n, cell.n) == 1
            p = None if place == 1 or single else welch_p(best.values, cell.values)
            ranking.rows.append(Ranked(row, place, cell, p, single))
    ranked = {r.row for r in ranking.rows}
    for row, records in records_by_row.items():
        holding = [r for r in records if _numeric(r, metric)]
        if holding and row not in ranked:
            early = all(ended_early(r) for r in holding) or any(
                ended_early(r) and r.get("budget_steps") == _budget(ranking) for r in holding
            )
            ranking.unranked[row] = "ended early" if early else "other conditions"
    return ranking


def _budget(ranking: Ranking) -> int | None:
    """The step budget of the ranked records (None: not an equal-budget ranking)."""
    for ranked in ranking.rows:
        for record in ranked.seeds.records:
            return record.get("budget_steps")
    return None


def rank_cell(ranking: Ranking, row: str) -> str:
    """The Rank column: ``1``, ``2 (p=0.003)``, ``3 ≈ (p=0.41)``, ``2 (single seed)``, ``—``
    (other conditions), ``— (ended early)``, or ``""`` for a row without the metric."""
    ranked = ranking.of(row)
    if ranked is None:
        why = ranking.unranked.get(row)
        if why is None:
            return ""
        return NOT_RANKED if why == "other conditions" else f"{NOT_RANKED} ({why})"
    if ranked.single_seed:
        return f"{ranked.rank} (single seed)"
    if ranked.p_value is None:
        return str(ranked.rank)
    mark = " ≈" if ranked.similar else ""
    return f"{ranked.rank}{mark} ({_p_text(ranked.p_value)})"


def _p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def ranking_note(ranking: Ranking) -> str:
    """The line under a ranked table: what was ranked, under which conditions, what the marks
    mean, and the warm-up rule where an equal-budget run is ranked; where nothing could be
    ranked, why (``""`` for a table with a single measured row)."""
    label = METRICS[ranking.metric].label
    better = "higher" if HEADLINE[ranking.metric] else "lower"
    if ranking.key is None:
        if len(ranking.unranked) < 2:
            return ""  # one measured row: nothing to rank, nothing to say
        return (
            f"Rank: not ranked, no two rows have {label} measured under the same conditions "
            "(profile, steps, batch, data set)."
        )
    text = (
        f"Ranked: {describe_conditions(ranking.key)}; by the seed mean of {label} ({better} is "
        f"better). ≈: not significantly different from the best (Welch's t-test, p ≥ {ALPHA}); "
        "p: that test's p-value; single seed: one seed on this row or the best, no test; "
        f"{NOT_RANKED}: measured under other conditions or ended early, not ranked."
    )
    if ranking.equal_budget:
        text += f" Equal step budget: {WARMUP_RULE}."
    return text
