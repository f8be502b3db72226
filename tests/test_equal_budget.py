"""The equal-budget, multi-seed protocol: one step count for every row, seeds reused not rerun,
the warm-up cap, and what a record of such a run says."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bench.config import CONFIG_DIR
from bench.experiments import budget as budget_module
from bench.experiments import run_tables
from bench.experiments.options import RunOptions, SweepOptions
from bench.protocol import (
    WARMUP_CAP,
    budget_overrides,
    capped_warmup,
    conditions,
    ended_early,
    record_seed,
    steps_for_budget,
    validation_interval,
)
from bench.records import load_records, make_record
from bench.tasks.flow import FlowTask

T2 = sorted(p for p in (CONFIG_DIR / "inverse_flow_t2").glob("*.yaml") if p.stem[0] != "_")
T4 = sorted(p for p in (CONFIG_DIR / "inverse_flow_t4").glob("*.yaml") if p.stem[0] != "_")


def test_a_time_budget_is_the_largest_step_count_every_row_fits():
    times = {"fast": 0.1, "slow": 0.3}
    steps = steps_for_budget(60, times, seeds=2)  # half of 60 s for 2 seeds of 0.4 s a step
    assert steps == 37
    assert 2 * steps * sum(times.values()) <= 30 < 2 * (steps + 1) * sum(times.values())
    assert steps_for_budget(0.01, times) == 1  # never zero steps


def test_budget_minutes_give_every_row_of_a_table_the_same_steps(monkeypatch, capsys):
    """Timed rows of different speeds all train the one count; the demo's own 300 caps it."""
    speeds = iter([0.02, 0.5, 0.1, 0.3, 0.05])
    monkeypatch.setattr(budget_module, "seconds_per_step", lambda *a: next(speeds))
    args = SweepOptions(profile="demo", budget_minutes=5, seeds=1)
    steps = run_tables.equal_budget(T2, args)
    assert steps == int(0.5 * 300 / (0.02 + 0.5 + 0.1 + 0.3 + 0.05))
    configs = [run_tables.row_config(p, args, steps, 0) for p in T2]
    assert {c.trainer.max_steps for c in configs} == {steps}
    assert {c.budget_steps for c in configs} == {steps}
    assert all(c.trainer.max_epochs == -1 and c.trainer.max_time is None for c in configs)
    assert f"every row trains {steps} steps" in capsys.readouterr().out
    args = replace(args, budget_minutes=1000)  # more than the demo's 300 steps: they stay
    speeds = iter([0.02, 0.5, 0.1, 0.3, 0.05])
    monkeypatch.setattr(budget_module, "seconds_per_step", lambda *a: next(speeds))
    assert run_tables.equal_budget(T2, args) == 300


def test_the_warm_up_cap_is_one_rule_for_every_row():
    """Table 4's rows warm up over 5,000 steps (SNF code): at 2,000 steps all are capped to
    200; a row without a warm-up keeps none."""
    args = SweepOptions(profile="paper")
    configs = {p.stem: run_tables.row_config(p, args, 2000, 0) for p in T4}
    assert {c.module.warmup_max_steps for c in configs.values()} == {200}
    assert capped_warmup(5000, 2000) == int(WARMUP_CAP * 2000) == 200
    task = FlowTask(
        model="exact_mnist_linear9", **configs["exact_mnist_linear9"].module.model_dump()
    )
    assert task.optim["warmup_steps"] == 200
    task = FlowTask(
        model="inverse_conv_mnist_linear9",
        **configs["inverse_conv_mnist_linear9"].module.model_dump(),
    )
    assert task.optim["warmup_steps"] == configs["inverse_conv_mnist_linear9"].module.warmup_steps
    epochs = FlowTask(
        model="exact_mnist_linear9", warmup_epochs=1, steps_per_epoch=550, warmup_max_steps=20
    )
    assert epochs.optim["warmup_steps"] == 20  # warm-ups in epochs are capped too


def test_budget_overrides_refuse_zero_steps_and_validate_at_each_quarter():
    with pytest.raises(ValueError, match="at least 1"):
        budget_overrides(0)
    assert validation_interval(2000) == 500 and validation_interval(3) == 1


def fake_record(config: dict) -> dict:
    return make_record(
        config.table,
        config.row,
        config.dataset,
        {"bpd": 1.0},
        device="cpu",
        profile=config.profile,
        steps=config.budget_steps,
        seed=config.seed,
        batch_size=config.data.batch_size,
        budget_steps=config.budget_steps,
    )


def test_seeds_already_measured_are_reused_not_rerun(tmp_path, monkeypatch, capsys):
    fitted: list[tuple[str, int]] = []

    def fit(config, args):
        fitted.append((config.row, config.seed))
        record = fake_record(config)
        path = tmp_path / "runs" / f"{config.table}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        return record

    monkeypatch.setattr(run_tables, "fit_command", fit)
    monkeypatch.setattr(run_tables, "keep_sample_grid", lambda *a: None)
    args = SweepOptions(
        profile="demo",
        dataset="fashion_mnist",
        seeds=2,
        run=RunOptions(results_dir=tmp_path, work_dir=tmp_path / "o"),
    )
    rows = T2[:2]
    run_tables.run_rows(rows, args, load_records(tmp_path).rows, 50)
    assert sorted(fitted) == sorted(
        (run_tables.row_config(p, args).row, s) for p in rows for s in (0, 1)
    )
    fitted.clear()
    run_tables.run_rows(rows, args, load_records(tmp_path).rows, 50)
    assert fitted == []  # every (row, seed) measured under these conditions: reused
    assert capsys.readouterr().out.count("already measured") == 4
    args = replace(args, seeds=3)
    run_tables.run_rows(rows, args, load_records(tmp_path).rows, 50)
    assert sorted(s for _, s in fitted) == [2, 2]  # only the new seed
    fitted.clear()
    run_tables.run_rows(rows, args, load_records(tmp_path).rows, 60)  # another budget: new runs
    assert len(fitted) == 6


def test_conditions_and_ended_early_read_the_record():
    record = {
        "profile": "demo",
        "steps": 90,
        "batch_size": 32,
        "dataset": "fashion_mnist",
        "data": {"examples": {"train": 1600}},
        "device": "cpu",
        "budget_steps": 100,
    }
    assert conditions(record) == ("demo", 90, 32, "fashion_mnist", 1600)
    assert conditions(record, with_device=True)[-1] == "cpu"
    assert ended_early(record) and not ended_early({**record, "steps": 100})
    assert not ended_early({"steps": 5})  # not an equal-budget record
    assert record_seed({}) == 0 and record_seed({"seed": 2}) == 2


def test_fit_with_seeds_and_steps_records_each_seed_at_the_budget(tmp_path):
    from tests.test_pipeline import cli, paths, read_records, write_config

    config = write_config(tmp_path, evaluate={"timing": False}, module={"warmup_steps": 50})
    common = paths(config, tmp_path / "results", tmp_path / "outputs")
    assert cli("fit", *common, "--seeds", "2", "--steps", "6") == 0
    records = read_records(tmp_path / "results" / "runs" / "pipeline_test.jsonl")
    assert [r["seed"] for r in records] == [0, 1]
    assert all(r["steps"] == r["budget_steps"] == 6 and r["batch_size"] == 16 for r in records)
    assert all(
        r["step_tested"] in (3, 6) for r in records
    )  # validated at 1, 2, ..., 6 (6 // 4 = 1)
    assert records[0]["metrics"]["bpd"] != records[1]["metrics"]["bpd"]  # the seeds differ
    runs = sorted(p.name for p in (tmp_path / "outputs" / "pipeline_test" / "tiny").iterdir())
    assert runs == ["paper", "paper-seed1"]  # the seeds keep their own checkpoints
    saved = (tmp_path / "outputs" / "pipeline_test" / "tiny" / "paper" / "config.yaml").read_text()
    assert "warmup_max_steps: 1" in saved


def test_seeds_and_steps_must_be_positive(capsys):
    from tests.test_pipeline import cli

    with pytest.raises(SystemExit) as exit_:
        cli("run-tables", "--tables", "inverse_flow_t2", "--seeds", "0")
    assert exit_.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_a_row_without_a_timing_step_does_not_stop_the_budget(monkeypatch, capsys):
    """The demo's DFM generator has no random-batch training step to time: it is said so and
    the step count comes from the other rows."""

    def timed(config, *args):
        if config.task == "dfm":
            raise AttributeError("'FourierGenerator' object has no attribute 'input_shape'")
        return 0.1

    monkeypatch.setattr(budget_module, "seconds_per_step", timed)
    paths = [T2[0], CONFIG_DIR / "dfm_mnist" / "dfm_mnist.yaml"]
    args = SweepOptions(profile="demo")
    configs = [run_tables.row_config(p, args) for p in paths]
    assert budget_module.steps_within(configs, 0.5, 1, None, "cpu") == 150
    assert "not timed (its task has no timing step)" in capsys.readouterr().out
