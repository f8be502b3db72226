"""Training pipeline: fit on synthetic data, exact resume, records, W&B fallback, NaN stop."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml

from bench import records as results_mod
from bench.records import RECORD_KEYS, append_records, make_record
from bench.tasks.flow import FlowTask, NonFiniteLossError
from datamodules import make_datamodule

SMALL_GLOW = {"input_shape": (1, 8, 8), "levels": 2, "steps": 2, "width": 16}


@pytest.fixture(autouse=True)
def float32_for_training():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(previous)


def synthetic(batch_size=32, seed=0):
    return make_datamodule(
        "synthetic", shape=(1, 8, 8), num_train=288, num_test=64, batch_size=batch_size, seed=seed
    )


def trainer(tmp_path, **kwargs) -> pl.Trainer:
    options = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        limit_val_batches=2,
        num_sanity_val_steps=0,
    )
    options.update(kwargs)
    return pl.Trainer(**options)


class LossRecorder(pl.Callback):
    def __init__(self):
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses[trainer.global_step] = float(outputs["loss"])


def test_fit_decreases_bpd_on_synthetic_data(tmp_path):
    pl.seed_everything(0)
    module = FlowTask("glow_mnist", SMALL_GLOW, lr=3e-3, num_samples=4)
    recorder = LossRecorder()
    trainer(tmp_path, max_steps=60, callbacks=[recorder]).fit(module, datamodule=synthetic())
    losses = list(recorder.losses.values())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    assert list((tmp_path / "samples").glob("*.png")), "a sample grid is saved each validation"


def test_resume_gives_the_same_next_step_loss(tmp_path):
    def run(directory, epochs, ckpt=None):
        pl.seed_everything(0)
        module = FlowTask("glow_mnist", SMALL_GLOW, lr=1e-3, num_samples=0)
        recorder = LossRecorder()
        checkpoint = pl.callbacks.ModelCheckpoint(dirpath=directory, save_last=True)
        t = trainer(directory, max_epochs=epochs, callbacks=[recorder, checkpoint])
        t.fit(module, datamodule=synthetic(), ckpt_path=ckpt)
        return recorder.losses

    straight = run(tmp_path / "a", 2)
    first = run(tmp_path / "b", 1)  # the "killed" run: stops after one epoch
    resumed = run(tmp_path / "b", 2, ckpt=str(tmp_path / "b" / "last.ckpt"))
    next_step = min(resumed)
    assert next_step == max(first) + 1
    assert resumed[next_step] == pytest.approx(straight[next_step], abs=1e-6)
    assert resumed[max(resumed)] == pytest.approx(straight[max(straight)], abs=1e-5)


def test_non_finite_loss_stops_with_a_clear_message(tmp_path, monkeypatch):
    module = FlowTask("glow_mnist", SMALL_GLOW, num_samples=0)
    monkeypatch.setattr(module.flow, "log_prob", lambda x: torch.full((len(x),), float("nan")))
    with pytest.raises(NonFiniteLossError, match="non-finite training loss.*No checkpoint was"):
        trainer(tmp_path, max_steps=5).fit(module, datamodule=synthetic())


def test_non_finite_loss_names_the_checkpoint_that_exists(tmp_path, monkeypatch):
    module = FlowTask("glow_mnist", SMALL_GLOW, num_samples=0)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "c", save_last=True)
    trainer(tmp_path, max_epochs=1, callbacks=[checkpoint]).fit(module, datamodule=synthetic())
    monkeypatch.setattr(module.flow, "log_prob", lambda x: torch.full((len(x),), float("nan")))
    last = str(tmp_path / "c" / "last.ckpt")
    with pytest.raises(NonFiniteLossError, match=f"last good checkpoint is kept \\({last}\\)"):
        t = trainer(tmp_path, max_epochs=2, callbacks=[checkpoint])
        t.fit(module, datamodule=synthetic(), ckpt_path=last)


def test_auxiliary_loss_hook_is_added_to_the_loss():
    pl.seed_everything(0)
    module = FlowTask("snf_mnist_linear9", {"input_shape": (1, 8, 8), "layers": 3, "blocks": 3})
    module.train()
    x = synthetic().dataset("train").images[:4].float()
    loss = module.training_step((x, None), 0)
    bpd = module.flow.bpd(x).mean()
    assert module.flow.auxiliary_loss().shape == (4,)  # per example, not summed over the batch
    aux = module.flow.auxiliary_loss().mean() / (64 * torch.log(torch.tensor(2.0)))
    assert aux > 0
    torch.testing.assert_close(loss, bpd + aux, rtol=1e-4, atol=1e-2)


def test_ema_weights_are_used_for_evaluation(tmp_path):
    pl.seed_everything(0)
    module = FlowTask("glow_mnist", SMALL_GLOW, lr=3e-3, ema_decay=0.9, num_samples=0)
    trainer(tmp_path, max_steps=5).fit(module, datamodule=synthetic())
    assert module.eval_model() is module.ema.module
    flow_params = dict(module.flow.named_parameters())
    diffs = [(p - flow_params[n]).abs().max() for n, p in module.ema.module.named_parameters()]
    assert max(diffs) > 0


def write_config(tmp_path: Path, **overrides) -> Path:
    config = {
        "table": "pipeline_test",
        "row": "Glow (tiny)",
        "model": "glow_mnist",
        "model_kwargs": SMALL_GLOW,
        "dataset": "synthetic",
        "data": {
            "shape": [1, 8, 8],
            "num_train": 160,
            "num_test": 32,
            "batch_size": 16,
            "val_size": 32,
        },
        "trainer": {
            "max_steps": 12,
            "max_epochs": -1,
            "limit_val_batches": 1,
            "enable_progress_bar": False,
        },
        "evaluate": {"st_runs": 2, "ft_runs": 2, "per_sample_calls": 10},
    }
    config.update(overrides)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def cli(*argv) -> int:
    from bench.__main__ import main

    return main(list(argv))


def paths(config: Path, results: Path, work: Path) -> list[str]:
    """The CLI arguments naming a row config, a results folder and a work folder."""
    return ["--config", str(config), "--results_dir", str(results), "--work_dir", str(work)]


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_record(record: dict) -> None:
    assert set(RECORD_KEYS) <= set(record)
    assert record["metrics"] and all(isinstance(v, float) for v in record["metrics"].values())
    assert record["device"] and record["git_commit"] and record["command"].startswith("python")


@pytest.fixture(scope="module")
def tiny_row(tmp_path_factory) -> dict:
    """One CLI run of the tiny row that several tests read (one fit, not one per test): fit 12
    steps, test, time (records in ``r``); then a resume with a changed recipe (refused), and a
    resume to 20 steps from a copy of the work folder (records in ``r20``)."""
    import shutil

    tmp = tmp_path_factory.mktemp("tiny_row")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        config = write_config(tmp)
        common = paths(config, tmp / "r", tmp / "o")
        rcs = [cli(command, *common) for command in ("fit", "test", "time")]
        records = read_records(tmp / "r" / "runs" / "pipeline_test.jsonl")
        refused = ["--resume", "--set", "module.lr=3e-4"]
        with pytest.MonkeyPatch.context() as mp:
            err = tmp / "refused.err"
            with err.open("w") as handle:
                mp.setattr("sys.stderr", handle)
                refused_rc = cli("fit", *common, *refused)
        after_refused = read_records(tmp / "r" / "runs" / "pipeline_test.jsonl")
        shutil.copytree(tmp / "o", tmp / "copy")
        longer = ["--resume", "--set", "trainer.max_steps=20"]
        resumed_rc = cli("fit", *paths(config, tmp / "r20", tmp / "copy"), *longer)
    finally:
        torch.set_default_dtype(previous)
    return {
        "dir": tmp,
        "common": common,
        "rcs": rcs,
        "records": records,
        "refused_rc": refused_rc,
        "refused_err": err.read_text(),
        "records_after_refused": after_refused,
        "resumed_rc": resumed_rc,
        "resumed": read_records(tmp / "r20" / "runs" / "pipeline_test.jsonl"),
    }


def test_cli_fit_then_test_then_time_append_records(tiny_row):
    assert tiny_row["rcs"] == [0, 0, 0]
    records, common = tiny_row["records"], tiny_row["common"]
    timing = [f"{p}_{s}" for p in ("st", "ft") for s in ("ms", "std", "median", "iqr")]
    train_step = [f"train_step_{s}" for s in ("ms", "std", "median", "iqr")]
    assert [sorted(r["metrics"]) for r in records] == [
        sorted(["bpd", "nll", "params_m", *timing, "st_per_sample_ms"])
        + ["val_bpd_end", "val_bpd_start"],
        sorted(["bpd", "nll", "params_m"]),
        sorted([*timing, "params_m", "st_per_sample_ms", *train_step]),
    ]
    for record in records:
        check_record(record)
    assert records[0]["steps"] == 12 and records[0]["profile"] == "paper"
    assert records[0]["step_tested"] == records[1]["step_tested"] <= 12
    assert records[0]["data"]["dataset"] == "synthetic"
    assert records[0]["data"]["examples"] == {"train": 128, "val": 32, "test": 32}
    assert records[0]["command"] == "python -m bench fit " + " ".join(common)
    assert records[2]["command"].startswith("python -m bench time --config")
    from bench.experiments.run_dir import checkpoint_step

    last = tiny_row["dir"] / "o" / "pipeline_test" / "tiny" / "paper" / "checkpoints" / "last.ckpt"
    assert checkpoint_step(last) == 12  # saved where training stopped, mid-epoch (8 per epoch)


@pytest.mark.parametrize(
    "model, kwargs",
    [
        ("ffjord_cifar10", {"hidden": [4], "blocks": 1, "rtol": 1e-3, "atol": 1e-3}),
        ("iresnet_cifar10", {"levels": 2, "steps": 1, "width": 4}),
    ],
)
def test_models_whose_density_needs_autograd_validate_test_and_time(tmp_path, model, kwargs):
    """FFJORD's trace and the residual flows' logdet series differentiate inside evaluation:
    Lightning's default inference mode refused that (validation failed before training)."""
    config = write_config(
        tmp_path,
        model=model,
        model_kwargs={"input_shape": [1, 8, 8], **kwargs},
        trainer={
            "max_steps": 2,
            "max_epochs": -1,
            "limit_val_batches": 1,
            "limit_test_batches": 1,
            "enable_progress_bar": False,
        },
        evaluate={"st_runs": 1, "ft_runs": 1, "per_sample_calls": 0},
    )
    common = paths(config, tmp_path / "results", tmp_path / "outputs")
    assert cli("fit", *common) == 0
    (record,) = read_records(tmp_path / "results" / "runs" / "pipeline_test.jsonl")
    assert record["metrics"]["logdet_estimated"] == 1 and record["steps"] == 2
    assert record["metrics"]["params_m"] > 0 and record["metrics"]["bpd"] > 0


def test_cli_resume_continues_from_last_checkpoint(tiny_row):
    assert tiny_row["resumed_rc"] == 0
    first, (resumed,) = tiny_row["records"][0], tiny_row["resumed"]
    assert [first["steps"], resumed["steps"]] == [12, 20]
    assert len(resumed["curve"]["train_step"]) > len(first["curve"]["train_step"])
    assert (
        resumed["curve"]["train_step"][: len(first["curve"]["train_step"])]
        == (first["curve"]["train_step"])
    )  # the resumed record keeps the points before the stop


@pytest.fixture(scope="module")
def straight_twenty(tmp_path_factory) -> dict:
    """The record of one uninterrupted CLI fit of 20 steps (timing off), the reference of the
    resumed fits below (one fit for all of them)."""
    tmp = tmp_path_factory.mktemp("straight")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        config = write_config(tmp, evaluate={"timing": False})
        argv = paths(config, tmp / "ra", tmp / "a")
        assert cli("fit", *argv, "--set", "trainer.max_steps=20") == 0
    finally:
        torch.set_default_dtype(previous)
    (whole,) = read_records(tmp / "ra" / "runs" / "pipeline_test.jsonl")
    return whole


def best_so_far(checkpoint: Path) -> float | None:
    """The best validation score that a checkpoint's ModelCheckpoint state holds."""
    state = torch.load(checkpoint, weights_only=True)["callbacks"]
    (kept,) = [v for k, v in state.items() if k.startswith("ModelCheckpoint")]
    score = kept["best_model_score"]
    return None if score is None else float(score)


@pytest.mark.parametrize("stop", [8, 12])
def test_cli_resumed_fit_records_the_uninterrupted_run(tmp_path, stop, straight_twenty):
    """The audit's case through the CLI: a fit stopped at `stop` steps (8: an epoch's last
    batch, 8 batches per epoch; 12: mid-epoch) and resumed to 20 records the same test BPD
    and the same training curve as one fit of 20 steps, to the bit. The stopped fit's
    last.ckpt knows the best validation so far, the step-8 one included (else a resumed fit
    would overwrite best.ckpt with a worse model that the uninterrupted one would not keep)."""
    config = write_config(tmp_path, evaluate={"timing": False})
    twenty = ["--set", "trainer.max_steps=20"]
    split = ["--config", str(config), "--results_dir", str(tmp_path / "rb")]
    work = ["--work_dir", str(tmp_path / "b")]
    assert cli("fit", *split, *work, "--set", f"trainer.max_steps={stop}") == 0
    checkpoints = tmp_path / "b" / "pipeline_test" / "tiny" / "paper" / "checkpoints"
    last, best = (best_so_far(checkpoints / name) for name in ("last.ckpt", "best.ckpt"))
    assert last == best and best is not None  # the step-8 validation's score
    assert cli("fit", *split, *work, "--resume", *twenty) == 0
    whole = straight_twenty
    resumed = read_records(tmp_path / "rb" / "runs" / "pipeline_test.jsonl")[-1]
    assert resumed["metrics"]["bpd"] == whole["metrics"]["bpd"]
    assert resumed["curve"] == whole["curve"]
    assert (resumed["steps"], resumed["step_tested"]) == (whole["steps"], whole["step_tested"])


@pytest.mark.slow
def test_fit_killed_after_a_checkpoint_resumes_to_the_same_record(tmp_path):
    """SIGKILL a fit as soon as its first last.ckpt exists, resume it with --resume: the record
    equals an uninterrupted fit's (test BPD, curve, steps)."""
    import signal
    import subprocess
    import sys
    import time

    config = write_config(tmp_path, evaluate={"timing": False})
    env = {**os.environ, "WANDB_MODE": "disabled"}

    def fit(name, *extra):
        argv = [sys.executable, "-m", "bench", "fit", "--config", str(config), "--set"]
        argv += ["trainer.max_steps=40", "--results_dir", str(tmp_path / f"r{name}")]
        argv += ["--work_dir", str(tmp_path / name), *extra]
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    assert fit("a").wait(timeout=600) == 0
    killed = fit("b")
    last = tmp_path / "b" / "pipeline_test" / "tiny" / "paper" / "checkpoints" / "last.ckpt"
    while not last.exists() and killed.poll() is None:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL, "the fit ended before it could be killed"
    assert not (tmp_path / "rb" / "runs" / "pipeline_test.jsonl").exists()  # no record yet
    assert fit("b", "--resume").wait(timeout=600) == 0
    (whole,) = read_records(tmp_path / "ra" / "runs" / "pipeline_test.jsonl")
    (resumed,) = read_records(tmp_path / "rb" / "runs" / "pipeline_test.jsonl")
    assert resumed["metrics"]["bpd"] == whole["metrics"]["bpd"]
    assert (resumed["curve"], resumed["steps"]) == (whole["curve"], whole["steps"])


def test_resume_refuses_a_changed_recipe_and_keeps_one_checkpoint_set(tiny_row):
    assert tiny_row["refused_rc"] == 2
    err = tiny_row["refused_err"]
    assert "differs from the run" in err and "module.lr (0.001 -> 0.0003)" in err
    assert len(tiny_row["records_after_refused"]) == len(tiny_row["records"])  # nothing added
    assert tiny_row["resumed_rc"] == 0
    checkpoints = tiny_row["dir"] / "copy" / "pipeline_test" / "tiny" / "paper" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.ckpt", "last.ckpt"]


def test_config_errors_are_clear(tmp_path):
    from bench.config import load_config, parse_override

    with pytest.raises(FileNotFoundError, match="nope.yaml not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="key.sub=value"):
        parse_override("lr")
    assert parse_override("module.lr=3e-4") == {"module": {"lr": 3e-4}}


def test_results_append_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "runs" / "t.jsonl"
    record = make_record("t", "row", "mnist", {"bpd": 1.0}, device="cpu")
    append_records(path, [record])
    before = path.read_text()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("writer killed mid-write")

    monkeypatch.setattr(results_mod.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        append_records(path, [record] * 1000)
    assert path.read_text() == before  # old content intact, every line valid JSON
    assert [json.loads(line) for line in before.splitlines()]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_wandb_failure_falls_back_to_csv(tmp_path, monkeypatch):
    import pytorch_lightning.loggers as loggers

    from bench.experiments.row import make_logger
    from bench.schema import RowConfig

    config = RowConfig(table="t", row="r", model="m", dataset="d", config_path="x.yaml")
    assert isinstance(make_logger(config, tmp_path), loggers.CSVLogger)  # disabled in tests

    def unreachable(*args, **kwargs):
        raise ConnectionError("W&B unreachable")

    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setattr(loggers, "WandbLogger", unreachable)
    assert isinstance(make_logger(config, tmp_path), loggers.CSVLogger)


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow  # 400 steps on the real files: 35 s of the fast loop's 3 min; CI runs it
@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist absent")
def test_fashion_mnist_integration_small_glow(tmp_path):
    """python -m bench fit of a small Glow on the real Fashion-MNIST files, a few hundred steps."""
    from bench.config import load_config
    from bench.experiments.row import build

    config_path = Path("bench/configs/inverse_flow_t2/glow_mnist_small.yaml")
    overrides = [
        "dataset=fashion_mnist",
        "trainer.max_steps=400",
        "evaluate.timing=false",
        "trainer.enable_progress_bar=false",
        "data.subset=6000",
    ]
    config = load_config(config_path, "demo", overrides)
    pl.seed_everything(0)
    datamodule, module = build(config, str(FASHION))
    x, _ = next(iter(datamodule.test_dataloader()))
    with torch.no_grad():
        step0 = module.flow.eval().bpd(x).mean().item()
    assert (
        cli(
            "fit",
            "--config",
            str(config_path),
            "--profile",
            "demo",
            "--data_dir",
            str(FASHION),
            "--results_dir",
            str(tmp_path / "r"),
            "--work_dir",
            str(tmp_path / "o"),
            "--set",
            *overrides,
        )
        == 0
    )
    (record,) = read_records(tmp_path / "r" / "runs" / "inverse_flow_t2.jsonl")
    assert record["dataset"] == "fashion_mnist" and record["steps"] == 400
    assert record["metrics"]["bpd"] < 5.0
    assert step0 - record["metrics"]["bpd"] >= 2.0, (step0, record["metrics"]["bpd"])


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one(tmp_path):
    """Two gloo processes reach the same validation BPD as one process (within tolerance)."""
    import subprocess
    import sys

    config = write_config(
        tmp_path, trainer={"max_steps": 20, "max_epochs": -1, "enable_progress_bar": False}
    )
    bpds = []
    for devices, batch in (("1", 16), ("2", 8)):  # same global batch
        out = tmp_path / f"r{devices}"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench",
                "fit",
                "--config",
                str(config),
                "--accelerator",
                "cpu",
                "--devices",
                devices,
                "--strategy",
                "ddp" if devices == "2" else "auto",
                "--results_dir",
                str(out),
                "--work_dir",
                str(tmp_path / f"o{devices}"),
                "--set",
                f"data.batch_size={batch}",
                "evaluate.timing=false",
            ],
            check=True,
            env={**os.environ, "WANDB_MODE": "disabled"},
            timeout=600,
        )
        (record,) = read_records(out / "runs" / "pipeline_test.jsonl")
        bpds.append(record["metrics"]["bpd"])
    assert abs(bpds[0] - bpds[1]) < 0.1, bpds


def test_parser_accepts_every_command():
    from bench.__main__ import build_parser

    parser = build_parser()
    for command in ("fit", "test", "time"):
        args = parser.parse_args([command, "--config", "x.yaml"])
        assert isinstance(args, argparse.Namespace) and args.profile == "paper"


def test_train_step_timing_steps_a_copy_and_leaves_the_weights(tmp_path):
    from bench.evaluators.timing import time_train_step

    module = FlowTask("glow_mnist", SMALL_GLOW, lr=1e-2, num_samples=0)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    timing = time_train_step(module, batch_size=4, runs=3)
    assert timing.runs == 3 and timing.median_ms > 0 and timing.iqr_ms >= 0
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_wandb_gets_the_record_and_the_comparison_table(tmp_path):
    from bench.experiments.row import log_tables

    class FakeWandb:
        def __init__(self):
            self.tables = {}

        def log_table(self, key, columns=None, data=None, dataframe=None):
            self.tables[key] = dataframe if dataframe is not None else (columns, data)

    results = tmp_path / "r"
    record = make_record(
        "inverse_flow_t2", "Inverse-Flow", "fashion_mnist", {"bpd": 4.8}, device="cpu"
    )
    record["profile"], record["steps"] = "demo", 300
    append_records(results / "runs" / "inverse_flow_t2.jsonl", [record])
    logger = FakeWandb()
    log_tables(logger, record, results)
    columns, data = logger.tables["record"]
    assert dict(zip(columns, data[0], strict=True))["metrics/bpd"] == "4.8"
    table = logger.tables["table/inverse_flow_t2"]
    row = table[table["Method"] == "Inverse-Flow"].iloc[0]
    assert row["BPD paper"] == "0.620" and row["BPD ours"].startswith("4.800 (F-MNIST, demo")
    log_tables(object(), record, results)  # a logger without tables: nothing to do


def test_the_record_keeps_the_validation_bpd_before_and_after_training(tmp_path):
    config = write_config(
        tmp_path,
        trainer={
            "max_steps": 24,
            "max_epochs": -1,
            "limit_val_batches": 2,
            "num_sanity_val_steps": 2,
            "enable_progress_bar": False,
        },
        module={"lr": 3e-3},
        evaluate={"timing": False},
    )
    argv = ["--config", str(config), "--results_dir", str(tmp_path / "r")]
    assert cli("fit", *argv, "--work_dir", str(tmp_path / "o")) == 0
    (record,) = read_records(tmp_path / "r" / "runs" / "pipeline_test.jsonl")
    curve, metrics = record["curve"], record["metrics"]
    assert curve["val_step"] == [0, 8, 16, 24]  # before training, then each epoch
    assert metrics["val_bpd_start"] == curve["val_bpd"][0] and len(set(curve["val_bpd"])) == 4
    assert metrics["val_bpd_end"] == curve["val_bpd"][-1] < metrics["val_bpd_start"] - 0.5


def run_losses(directory: Path, steps: int, ckpt: str | None = None) -> dict[int, float]:
    """Loss per step of a seeded fit of the tiny Glow (resumed from ``ckpt``), saving
    ``directory/last.ckpt`` at the last step."""
    from bench.experiments.callbacks import SaveLastStep

    pl.seed_everything(0)
    module = FlowTask("glow_mnist", SMALL_GLOW, lr=1e-3, num_samples=0)
    recorder = LossRecorder()
    last = SaveLastStep(directory / "last.ckpt")
    t = trainer(directory, max_steps=steps, max_epochs=-1, callbacks=[recorder, last])
    t.fit(module, datamodule=synthetic(), ckpt_path=ckpt)
    return recorder.losses


@pytest.fixture(scope="module")
def straight_sixteen(tmp_path_factory) -> dict[int, float]:
    """The losses of one uninterrupted fit of 16 steps, the reference of every stop below."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        return run_losses(tmp_path_factory.mktemp("straight16"), 16)
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("stop", [10, 7, 14])
def test_resume_mid_epoch_repeats_the_uninterrupted_run_exactly(tmp_path, stop, straight_sixteen):
    """A run stopped by max_steps (7 batches per epoch: mid-epoch at 10, on an epoch's last
    batch at 7 and 14) and resumed from its last.ckpt trains on the same batches with the same
    losses as a run that never stopped: the loader's position inside the epoch is part of the
    checkpoint, and a stop on the last batch resumes at the next epoch's first batch."""
    first = run_losses(tmp_path / "b", stop)
    resumed = run_losses(tmp_path / "b", 16, ckpt=str(tmp_path / "b" / "last.ckpt"))
    assert sorted(first) == list(range(1, stop + 1))
    assert sorted(resumed) == list(range(stop + 1, 17))
    assert {**first, **resumed} == straight_sixteen


def test_each_row_of_run_tables_gets_its_own_wandb_run(tmp_path, monkeypatch):
    """Offline W&B: two fits in one process (what run-tables does) make two runs, not one
    shared run logging both rows."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    config = write_config(tmp_path, evaluate={"timing": False})
    for name in ("a", "b"):
        argv = ["fit", "--config", str(config), "--results_dir", str(tmp_path / "r")]
        assert cli(*argv, "--work_dir", str(tmp_path / name), "--set", "wandb.tags=[t]") == 0
    urls = [
        r.get("wandb_url") for r in read_records(tmp_path / "r" / "runs" / "pipeline_test.jsonl")
    ]
    runs = sorted(p.name for p in (tmp_path).glob("*/pipeline_test/tiny/paper/wandb/offline-run-*"))
    assert len(runs) == 2 and len(set(runs)) == 2, (runs, urls)


class SignalAtLastStep(pl.Callback):
    """Sets the preemption signal as the fit's last batch (the last of epoch 2) starts."""

    def __init__(self, preemption):
        self.preemption = preemption

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == trainer.num_training_batches - 1:
            self.preemption.signum = 15


def test_a_preemption_at_the_last_step_of_an_epoch_saves_it(tmp_path):
    """No validation (as the GAN), two epochs, the signal during the very last step: training
    ends with last.ckpt saved at that step, then `Preempted` (the requeued job resumes from
    there, not from scratch)."""
    from types import SimpleNamespace

    from bench.experiments.callbacks import Preempted, PreemptionStop, SaveLastStep

    preemption = SimpleNamespace(signum=None, training=False, install=lambda: None)
    save_last = SaveLastStep(tmp_path / "last.ckpt")
    saved = []
    save = save_last.save
    save_last.save = lambda trainer: (save(trainer), saved.append(trainer.global_step))
    callbacks = [save_last, PreemptionStop(preemption, save_last), SignalAtLastStep(preemption)]
    module = FlowTask("glow_mnist", SMALL_GLOW, lr=1e-3, num_samples=0)
    fit = trainer(tmp_path, max_epochs=2, limit_val_batches=0, callbacks=callbacks)
    with pytest.raises(Preempted, match="the end of training"):
        fit.fit(module, datamodule=synthetic())
    steps_per_epoch = fit.num_training_batches
    assert saved == [2 * steps_per_epoch]
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == saved[-1]
