"""Report: published CSVs against the schema, synthetic records to the expected markdown,
`not run` cells, malformed records reported with file and line, deterministic output."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.fidelity import row_configs_on_disk
from bench.published import PUBLISHED_COLUMNS, load_published
from bench.records import load_records
from bench.report.conditions import preprocessing_of
from bench.report.tables import report

ROOT = Path(__file__).resolve().parents[1]


def test_published_csvs_follow_the_schema():
    for path in sorted((ROOT / "results" / "published").glob("*.csv")):
        frame = pd.read_csv(path, keep_default_na=False)
        assert list(frame.columns) == PUBLISHED_COLUMNS, path
        assert pd.to_numeric(frame["value"]).notna().all(), path
        stds = frame["std"].replace("", None).dropna()
        assert pd.to_numeric(stds).ge(0).all(), path
        assert frame[["paper", "table", "row", "dataset", "metric"]].ne("").all().all(), path
        assert not frame.duplicated(["table", "row", "dataset", "metric"]).any(), path


def test_no_published_value_is_copied_into_the_run_records():
    published = load_published(ROOT / "results")
    loaded = load_records(ROOT / "results")
    assert not loaded.problems, loaded.problems
    for record in loaded.rows:
        hits = published[
            (published["table"] == record["table"]) & (published["row"] == record["row"])
        ]
        for metric, value in record["metrics"].items():
            if metric == "params_m":  # counted from our models, chosen to match the papers
                continue
            same = hits[(hits["metric"] == metric) & (hits["value"] == value)]
            assert same.empty, (record["_source"], metric, value)


@pytest.fixture
def results(tmp_path):
    pub = tmp_path / "published"
    pub.mkdir()
    (pub / "toy.csv").write_text(
        "paper,table,row,dataset,metric,value,std,unit,note\n"
        "toy,toy_t1,Fast,mnist,st_ms,10.0,1.0,ms,\n"
        "toy,toy_t1,Fast,mnist,bpd,1.5,,bits/dim,\n"
        "toy,toy_t1,Slow,mnist,st_ms,2.0,0.5,s,\n"
        "toy,toy_t1,Slow,mnist,bpd,1.2,,bits/dim,\n"
    )
    runs = tmp_path / "runs"
    runs.mkdir()
    record = {
        "table": "toy_t1",
        "row": "Fast",
        "dataset": "mnist",
        "profile": "demo",
        "device": "cpu",
        "git_commit": "abc",
        "timestamp": "2026-01-01T00:00:00+00:00",
        "command": "python -m bench fit --config x.yaml",
        "epochs": 1,
        "steps": 10,
        "metrics": {"bpd": 1.7, "st_ms": 20.0, "st_std": 2.0},
    }
    lines = [json.dumps(record), "{not json", json.dumps({"table": "toy_t1"})]
    (runs / "toy_t1.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_synthetic_records_render_to_expected_markdown(results):
    out = report(results, with_plots=False)
    markdown = out["tables"]["toy_t1"].markdown
    expected_rows = [
        "| Method | BPD paper | BPD ours | ST (ms) paper | ST (ms) ours | ST / Fast paper | "
        "ST / Fast ours |",
        "| Fast | 1.500 | 1.700 (demo: 10 steps) [1] | 10.0 ± 1.0 | 20.0 ± 2.0 [1] | 1.000 | "
        "1.000 |",
        "| Slow | 1.200 | not built | 2.000 ± 0.500 s* | not built | 200.0 |  |",
    ]
    for line in expected_rows:
        assert line in markdown, markdown
    assert (
        "[1] demo profile, mnist, 10 steps, cpu, 2026-01-01, commit abc, toy_t1.jsonl:1: "
        "`python -m bench fit --config x.yaml`" in markdown
    )
    assert (results / "tables" / "toy_t1.md").read_text() == markdown
    assert (results / "tables" / "toy_t1.tex").read_text().startswith(r"\begin{table}")


def test_malformed_records_are_reported_with_file_and_line(results):
    out = report(results, with_plots=False)
    assert len(out["problems"]) == 2
    assert "toy_t1.jsonl:2: skipped malformed record" in out["problems"][0]
    assert "toy_t1.jsonl:3: skipped malformed record" in out["problems"][1]
    assert "toy_t1.jsonl:2" in (results / "tables" / "PROBLEMS.txt").read_text()


def test_rows_with_a_config_but_no_record_read_not_run(tmp_path):
    shutil.copytree(ROOT / "results" / "published", tmp_path / "published")
    out = report(tmp_path, with_plots=False)
    markdown = out["tables"]["inverse_flow_t2"].markdown
    assert "| Inverse-Flow | 0.620 | not run |" in markdown
    assert "Woodbury" in out["tables"]["inverse_flow_t5"].markdown


def test_report_is_deterministic_including_plots(results):
    report(results)
    first = {p.name: p.read_bytes() for p in (results / "tables").iterdir()}
    report(results)
    second = {p.name: p.read_bytes() for p in (results / "tables").iterdir()}
    assert first == second
    assert "toy_t1_timing.png" in first


def test_committed_records_regenerate_the_committed_tables(tmp_path):
    """The report of results/runs reproduces results/tables (md, csv, tex) byte for byte: a
    change to the report or the records module that moves a cell fails here."""
    for folder in ("published", "runs"):
        shutil.copytree(ROOT / "results" / folder, tmp_path / folder)
    out = report(tmp_path, with_plots=False)
    assert out["tables"] and not out["problems"]
    for table in out["tables"]:
        for suffix in (".md", ".csv", ".tex"):
            committed = ROOT / "results" / "tables" / f"{table}{suffix}"
            regenerated = tmp_path / "tables" / f"{table}{suffix}"
            assert regenerated.read_text() == committed.read_text(), committed.name


def test_report_removes_what_it_no_longer_writes_and_keeps_other_commands_files(results):
    tables = results / "tables"
    tables.mkdir()
    stale = [tables / name for name in ("old_t9.md", "old_t9.csv", "old_t9.tex")]
    stale += [tables / "old_t9_params_bpd.png", tables / "toy_t1_curves.png"]
    kept = [tables / "scaling_fourier.png", tables / "dfm_compression_examples.png"]
    for path in stale + kept:
        path.write_text("old")
    # an earlier report wrote the stale files (its manifest says so), not the kept ones
    (tables / ".manifest.json").write_text(json.dumps([p.name for p in stale]))
    out = report(results)
    assert sorted(out["removed"]) == sorted(stale)
    assert all(path.is_file() for path in kept)
    assert (tables / "toy_t1.md").is_file() and (tables / "toy_t1_timing.png").is_file()


def test_timing_cells_show_median_and_iqr_when_recorded(results):
    path = results / "runs" / "toy_t1.jsonl"
    record = json.loads(path.read_text().splitlines()[0])
    record["metrics"].update(st_ms=30.0, st_std=20.0, st_median=12.0, st_iqr=1.5)
    record["row"], record["timestamp"] = "Slow", "2030-01-01T00:00:00+00:00"
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    markdown = report(results, with_plots=False)["tables"]["toy_t1"].markdown
    assert "| 12.0 (IQR 1.500) [" in markdown and "30.0 ± 20.0" not in markdown
    assert "median and interquartile range" in markdown


def test_cells_name_their_data_set_and_profile_and_notes_list_preprocessing(tmp_path, monkeypatch):
    """The notes come from the row configs and the builders' declared preprocessing: the
    report builds no model (a Flow built here fails the test)."""

    def no_model(*args, **kwargs):
        raise AssertionError("the report built a model")

    monkeypatch.setattr("models.core.Flow.__init__", no_model)
    preprocessing_of.cache_clear()
    shutil.copytree(ROOT / "results" / "published", tmp_path / "published")
    runs = tmp_path / "runs"
    runs.mkdir()
    common = {"table": "inverse_flow_t2", "timestamp": "2026-01-01T00:00:00+00:00"}
    records = [
        {**common, "row": "Inverse-Flow", "dataset": "fashion_mnist", "profile": "demo"}
        | {"steps": 300, "metrics": {"bpd": 4.81, "st_ms": 5.0, "st_std": 0.1}},
        {**common, "row": "SNF", "dataset": "mnist", "profile": "paper", "steps": 60000}
        | {"metrics": {"bpd": 1.05}},
    ]
    (runs / "inverse_flow_t2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    markdown = report(tmp_path, with_plots=False)["tables"]["inverse_flow_t2"].markdown
    assert "| 4.810 (F-MNIST, demo: 300 steps) [2] |" in markdown
    assert "| 5.000 ± 0.100 [2] |" in markdown  # a timing does not depend on the data
    assert "| 1.050 [1] |" in markdown  # the paper's data set and profile: no label
    assert "- Inverse-Flow: uniform dequantization, x / 256, logit (alpha 1e-07)" in markdown
    assert "- Emerging: uniform dequantization, x / 256, shift to [-0.5, 0.5)" in markdown
    assert "alpha 0.05" not in markdown  # Glow (small), alpha 0.05, has no cell here


def test_the_fidelity_table_is_rendered_and_kept(tmp_path):
    shutil.copytree(ROOT / "results" / "published", tmp_path / "published")
    shutil.copy(ROOT / "results" / "fidelity.csv", tmp_path / "fidelity.csv")
    out = report(tmp_path, with_plots=False)
    markdown = (tmp_path / "tables" / "fidelity.md").read_text()
    assert "| gradient rule |" in markdown and "selfnorm.py" in markdown
    entries, per_row = markdown.split("### Sources per row")
    for part, columns in ((entries, 6), (per_row, 7)):
        rows = [line for line in part.splitlines() if line.startswith("|")]
        separators = {len(re.findall(r"(?<!\\)\|", line)) for line in rows}
        assert separators == {columns + 1}  # a '|' inside a cell is escaped
    # every row YAML has a line, with the source of each kind of decision
    assert "| inverse_flow_t2 | finc_mnist_k4 | - | ours | authors' code |" in per_row
    assert per_row.count("\n| ") == 1 + len(row_configs_on_disk(ROOT / "bench" / "configs"))
    assert tmp_path / "tables" / "fidelity.md" not in out["removed"]
