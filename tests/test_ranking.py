"""Seeds and ranks in the report: a trained cell aggregates its row's seeds under one set of
conditions (mean, sample std, n; a rerun of a seed counts once), and the Rank column ranks only
rows measured under identical conditions, marking those not significantly different from the
best by Welch's t-test."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import ttest_ind

from bench.protocol import WARMUP_RULE
from bench.report.ranking import aggregate, rank_rows, welch_p
from bench.report.tables import report

TABLE = "toy_t1"


def make(row: str, seed: int, bpd: float, *, steps: int = 1000, when: int = 0, **extra) -> dict:
    """A measured record of ``row``: demo profile, batch 32, mnist, 1000 steps unless told."""
    return {
        "table": TABLE,
        "row": row,
        "dataset": "mnist",
        "profile": "demo",
        "device": "cpu",
        "git_commit": "abc",
        "timestamp": f"2026-01-01T00:{when:02d}:{seed:02d}+00:00",
        "command": "python -m bench run-tables",
        "steps": steps,
        "batch_size": 32,
        "seed": seed,
        "metrics": {"bpd": bpd},
        **extra,
    }


def seeds(row: str, values: list[float], **extra) -> list[dict]:
    return [make(row, seed, value, **extra) for seed, value in enumerate(values)]


def render(tmp_path, records: list[dict], with_plots: bool = False) -> str:
    """The markdown of the toy table built from ``records`` in a fresh results folder."""
    (tmp_path / "published").mkdir(exist_ok=True)
    (tmp_path / "published" / "toy.csv").write_text(
        "paper,table,row,dataset,metric,value,std,unit,note\ntoy,toy_t1,A,mnist,bpd,1.0,,bits/dim,\n"
    )
    runs = tmp_path / "runs"
    runs.mkdir(exist_ok=True)
    (runs / f"{TABLE}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return report(tmp_path, with_plots=with_plots)["tables"][TABLE].markdown


def line_of(markdown: str, row: str) -> list[str]:
    """The cells of ``row``'s line in the table."""
    line = next(x for x in markdown.splitlines() if x.startswith(f"| {row} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_a_cell_reads_mean_sample_std_and_the_number_of_seeds(tmp_path):
    records = seeds("A", [1.0, 1.2, 1.4]) + seeds("B", [2.0])
    cell = aggregate([r for r in records if r["row"] == "A"], "bpd")
    assert cell.n == 3 and cell.mean == pytest.approx(1.2)
    assert cell.std == pytest.approx(np.std([1.0, 1.2, 1.4], ddof=1))  # sample std, not ddof=0
    markdown = render(tmp_path, records)
    assert "1.200 ± 0.200 (n=3) (demo: 1000 steps) [1–3]" in line_of(markdown, "A")
    assert "2.000 (demo: 1000 steps) [4]" in line_of(markdown, "B")  # one seed: as before
    assert "(n=N): mean ± sample std over N seeds" in markdown
    assert "[2] demo profile, mnist, 1000 steps of batch 32, seed 1, cpu, 2026-01-01" in markdown


def test_a_rerun_of_a_seed_counts_once_the_newest(tmp_path):
    records = seeds("A", [1.0, 1.2, 1.4]) + [make("A", 0, 9.0, when=0)]
    records[0]["timestamp"] = "2026-01-01T00:30:00+00:00"  # seed 0's rerun is the newest
    records.append(make("B", 0, 5.0))
    cell = aggregate([r for r in records if r["row"] == "A"], "bpd")
    assert cell.values == (1.0, 1.2, 1.4)
    assert "1.200 ± 0.200 (n=3)" in line_of(render(tmp_path, records), "A")[3]


def test_clearly_separated_rows_are_not_marked_and_overlapping_ones_are(tmp_path):
    best, far, near = [1.00, 1.01, 1.02], [2.00, 2.01, 2.02], [1.0, 1.3, 0.9]
    records = seeds("A", best) + seeds("B", far, compared_layer="mine") + seeds("C", near)
    markdown = render(tmp_path, records)
    assert line_of(markdown, "B")[0] == "B (user row)"  # a user row is ranked like the others
    p_far = ttest_ind(best, far, equal_var=False).pvalue
    p_near = ttest_ind(best, near, equal_var=False).pvalue
    assert p_far < 0.05 <= p_near
    assert line_of(markdown, "A")[1] == "1"
    assert line_of(markdown, "C")[1] == f"2 ≈ (p={p_near:.3f})"
    assert line_of(markdown, "B")[1] == "3 (p<0.001)"
    ranking = rank_rows({row: [r for r in records if r["row"] == row] for row in "ABC"})
    assert ranking.of("B").p_value == pytest.approx(p_far)
    assert (
        "Ranked: demo profile, 1000 steps of batch 32, mnist; by the seed mean of BPD" in markdown
    )
    assert "Welch's t-test, p ≥ 0.05" in markdown


def test_a_single_seed_gets_no_mark_and_says_so(tmp_path):
    markdown = render(tmp_path, seeds("A", [1.0, 1.1, 1.2]) + seeds("B", [1.25]))
    assert line_of(markdown, "A")[1] == "1"
    assert line_of(markdown, "B")[1] == "2 (single seed)"
    assert "≈ (" not in markdown
    assert "single seed: one seed on this row or the best, no test" in markdown


def test_rows_under_other_conditions_are_listed_not_ranked(tmp_path):
    records = seeds("A", [1.0, 1.1]) + seeds("B", [1.5, 1.6]) + seeds("C", [0.5, 0.6], steps=500)
    markdown = render(tmp_path, records)
    assert line_of(markdown, "C")[1] == "—"  # the lowest BPD, but trained for other steps
    assert "0.550 ± 0.071 (n=2) (demo: 500 steps)" in line_of(markdown, "C")[3]
    assert line_of(markdown, "A")[1] == "1"
    assert "Ranked: demo profile, 1000 steps of batch 32" in markdown
    assert "—: measured under other conditions or ended early, not ranked" in markdown


def test_the_ranked_group_has_the_most_rows_then_the_most_seeds():
    by_row = {
        "A": seeds("A", [1.0, 1.1], steps=500),
        "B": seeds("B", [1.5, 1.6], steps=500),
        "C": seeds("C", [0.5, 0.6, 0.7]),
        "D": seeds("D", [0.8, 0.9, 0.7]),
        "E": seeds("E", [0.1], steps=200),
    }
    ranking = rank_rows(by_row)
    assert ranking.key[1] == 1000 and [r.row for r in ranking.rows] == ["C", "D"]
    assert ranking.unranked == {"A": "other conditions", "B": "other conditions"} | {
        "E": "other conditions"
    }


def test_a_record_that_ended_early_is_shown_and_never_ranked(tmp_path):
    budget = {"budget_steps": 1000}
    records = seeds("A", [1.0, 1.1], **budget) + seeds("B", [1.5, 1.6], **budget)
    for row in ("C", "D", "E"):  # more rows than the finished group, all short of the budget
        records += seeds(row, [0.5, 0.6], steps=600, **budget)
    markdown = render(tmp_path, records)
    assert line_of(markdown, "C")[1] == "— (ended early)"
    assert "(ended early at 600 of 1000 steps)" in line_of(markdown, "C")[3]
    assert line_of(markdown, "A")[1] == "1" and line_of(markdown, "B")[1].startswith("2")
    assert f"Equal step budget: {WARMUP_RULE}." in markdown


def test_a_seed_that_ended_early_does_not_hide_the_finished_ones():
    records = seeds("A", [1.0, 1.1], budget_steps=1000)
    records.append(make("A", 2, 4.0, steps=10, when=5, budget_steps=1000))  # newest, failed
    cell = aggregate(records, "bpd")
    assert cell.values == (1.0, 1.1) and not cell.ended_early


def test_accuracy_ranks_higher_first_and_the_ranking_plot_is_written(tmp_path):
    def accurate(row: str, values: list[float]) -> list[dict]:
        out = seeds(row, values)
        for record in out:
            record["metrics"] = {"accuracy": record["metrics"].pop("bpd")}
        return out

    ranking = rank_rows({"A": accurate("A", [90.0, 91.0]), "B": accurate("B", [95.0, 96.0])})
    assert ranking.metric == "accuracy" and [r.row for r in ranking.rows] == ["B", "A"]
    render(tmp_path, seeds("A", [1.0, 1.1]) + seeds("B", [1.5, 1.6]), with_plots=True)
    assert (tmp_path / "tables" / f"{TABLE}_ranking.png").is_file()


def test_a_table_with_no_two_comparable_rows_has_no_rank_column(tmp_path):
    markdown = render(tmp_path, seeds("A", [1.0]) + seeds("B", [1.5], steps=500))
    assert "| Rank |" not in markdown
    assert "not ranked, no two rows have BPD measured under the same conditions" in markdown


def test_seeds_without_spread_compare_as_scipy_in_the_limit():
    assert welch_p([1.0, 1.0], [1.0, 1.0]) == 1.0  # scipy: nan; identical, so not different
    assert welch_p([1.0, 1.0], [2.0, 2.0]) == 0.0  # as scipy's (t = -inf), without its warning
    assert np.isnan(welch_p([1.0], [2.0, 2.5]))


def test_an_older_record_of_a_higher_profile_does_not_hide_the_equal_budget_sweep(tmp_path):
    """Rows with an older single `short` record (which `pick_record` prefers over demo) and a
    three-seed demo sweep: the sweep is the ranked group, and its cells show the sweep."""
    older = [make(row, 0, 3.0 + i, steps=200 + i, profile="short") for i, row in enumerate("AB")]
    sweep = seeds("A", [1.0, 1.1, 1.2], budget_steps=1000) + seeds(
        "B", [2.0, 2.1, 2.2], budget_steps=1000
    )
    markdown = render(tmp_path, older + sweep)
    assert line_of(markdown, "A")[1] == "1"
    assert line_of(markdown, "B")[1].startswith("2 (p")
    assert "1.100 ± 0.100 (n=3)" in line_of(markdown, "A")[3]
    assert "2.100 ± 0.100 (n=3)" in line_of(markdown, "B")[3]
    assert "Ranked: demo profile, 1000 steps of batch 32, mnist" in markdown
