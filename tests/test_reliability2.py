"""Reliability, round two (issue 24): each numbered item as a user meets it on the command line.

Every test drives `bench.__main__.main` (or the function a command calls) on small generated
data and tiny configs; no test trains more than a few steps."""

from __future__ import annotations

import errno
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from filelock import Timeout
from PIL import Image

from bench.__main__ import main
from datamodules import DataFileError, make_datamodule
from tests.test_datamodules import write_idx

ROOT = Path(__file__).resolve().parents[1]
TINY_GLOW = {"input_shape": [1, 8, 8], "levels": 2, "steps": 1, "width": 8}
EXAMPLE = "examples/householder.py:HouseholderConv1x1"
# compare options that keep a run short where a refusal is missing (the tests then fail fast)
SHORT_COMPARE = ["--no-fit", "--runs", "1", "--layer-batch", "2", "--dataset", "synthetic"]


@pytest.fixture(autouse=True)
def float32_and_no_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(previous)


def row_yaml(folder: Path, name: str = "tiny", **overrides) -> Path:
    """A tiny Glow row on generated 8x8 images (outside bench/configs)."""
    config = {
        "table": "reliability_test",
        "row": "Glow (tiny)",
        "model": "glow_mnist",
        "model_kwargs": TINY_GLOW,
        "dataset": "synthetic",
        "data": {
            "shape": [1, 8, 8],
            "num_train": 64,
            "num_test": 16,
            "batch_size": 8,
            "val_size": 16,
        },
        "trainer": {"max_steps": 2, "max_epochs": -1, "limit_val_batches": 1},
        "evaluate": {"st_runs": 1, "ft_runs": 1, "per_sample_calls": 2},
        "wandb": {"enabled": False},
    }
    config.update(overrides)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def save_task_checkpoint(path: Path, model: str, model_kwargs: dict, step: int = 0) -> None:
    """A checkpoint as Lightning writes it (state, hyperparameters, step), without a fit."""
    from bench.tasks.flow import FlowTask

    task = FlowTask(model, model_kwargs, num_samples=0)
    state = {
        "state_dict": task.state_dict(),
        "hyper_parameters": dict(task.hparams),
        "global_step": step,
        "epoch": 0,
        "pytorch-lightning_version": pl.__version__,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def row_args(config: Path, tmp_path: Path) -> list[str]:
    return [
        "--config",
        config,
        "--results_dir",
        tmp_path / "r",
        "--work_dir",
        tmp_path / "o",
    ]


# 1. Another row's checkpoint is refused, naming what differs.


@pytest.mark.parametrize("command", ["test", "time"])
def test_1_a_checkpoint_of_another_model_is_refused(tmp_path, capsys, command):
    config = row_yaml(tmp_path)
    other = tmp_path / "other.ckpt"
    save_task_checkpoint(other, "inverse_flow_mnist_k4", {"input_shape": [1, 8, 8], "width": 8})
    code, _, err = run(capsys, command, *row_args(config, tmp_path), "--checkpoint", other)
    line = one_line(err)
    assert code == 2 and "holds model 'inverse_flow_mnist_k4', the config 'glow_mnist'" in line
    assert not (tmp_path / "r" / "runs" / "reliability_test.jsonl").exists()


def test_1_a_checkpoint_with_other_model_kwargs_is_refused_and_its_own_is_used(tmp_path, capsys):
    config = row_yaml(tmp_path)
    wider = tmp_path / "wider.ckpt"
    save_task_checkpoint(wider, "glow_mnist", {**TINY_GLOW, "width": 16})
    code, _, err = run(capsys, "test", *row_args(config, tmp_path), "--checkpoint", wider)
    assert code == 2 and "model_kwargs.width 16, the config 8" in one_line(err)
    own = tmp_path / "own.ckpt"
    save_task_checkpoint(own, "glow_mnist", dict(TINY_GLOW), step=5)
    code, out, err = run(capsys, "test", *row_args(config, tmp_path), "--checkpoint", own)
    assert code == 0, err
    (record,) = [json.loads(x) for x in (tmp_path / "r/runs/reliability_test.jsonl").open()]
    assert record["step_tested"] == 5 and record["row"] == "Glow (tiny)"


# 2. No name leads a file out of the results or work directory.


def test_2_a_table_that_leaves_the_results_dir_is_refused(tmp_path, capsys):
    config = row_yaml(tmp_path / "rows")
    args = ["time", *row_args(config, tmp_path), "--set", "table=../../escaped"]
    code, _, err = run(capsys, *args)
    assert code == 2 and "table '../../escaped' cannot name a file" in one_line(err)
    assert not list(tmp_path.rglob("escaped*"))


def runs_folder(results: Path) -> Path:
    """``results/runs``, beside an empty ``published/`` (the report then builds only the
    tables of the records, not every published table)."""
    (results / "published").mkdir(parents=True)
    (results / "runs").mkdir()
    return results / "runs"


def test_2_a_record_whose_table_leaves_tables_is_skipped(tmp_path, capsys):
    runs = runs_folder(tmp_path / "r")
    good = {"table": "toy_t1", "row": "A", "metrics": {"bpd": 1.0}, "profile": "demo"}
    lines = [json.dumps({**good, "table": "../../x"}), json.dumps(good)]
    (runs / "toy_t1.jsonl").write_text("\n".join(lines) + "\n")
    code, out, err = run(capsys, "report", "--results_dir", tmp_path / "r", "--no-plots")
    assert code == 0 and "toy_t1.jsonl:1: skipped malformed record (table '../../x'" in err
    assert not list(tmp_path.glob("x.*")) and (tmp_path / "r/tables/toy_t1.md").is_file()


def test_2_compare_name_dot_dot_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = ["compare", EXAMPLE, "--tables", "inverse_flow_t2", "--name", "..", *SHORT_COMPARE]
    code, _, err = run(capsys, *args, "--results_dir", tmp_path / "r", "--work_dir", tmp_path)
    assert code == 2 and "--name '..' cannot name a file" in one_line(err)
    assert not (tmp_path / "r").exists()


def test_2_a_row_config_name_is_checked_for_the_run_dir():
    from bench.config import ConfigError
    from bench.experiments.run_dir import run_dir
    from bench.schema import RowConfig

    config = RowConfig(table="t", row="r", model="m", dataset="d", config_path="rows/...yaml")
    with pytest.raises(ConfigError, match="row config name '..' cannot name a file"):
        run_dir(config, "work")


# 3. One bad record is skipped with file:line and why; the others render.


BAD_RECORDS = {
    "cells a list": {"cells": ["x"]},
    "profile a list": {"profile": ["demo"]},
    "timestamp an int": {"timestamp": 3},
    "row null": {"row": None},
}


@pytest.mark.parametrize("bad", list(BAD_RECORDS))
def test_3_a_record_of_the_wrong_type_is_skipped_and_the_others_render(tmp_path, capsys, bad):
    runs = runs_folder(tmp_path)
    good = {"table": "toy_t1", "row": "A", "metrics": {"bpd": 1.25}, "profile": "demo"}
    good["timestamp"] = "2026-01-01T00:00:00+00:00"
    lines = [json.dumps({**good, "row": "B", **BAD_RECORDS[bad]}), json.dumps(good)]
    (runs / "toy_t1.jsonl").write_text("\n".join(lines) + "\n")
    code, out, err = run(capsys, "report", "--results_dir", tmp_path, "--no-plots", "--print")
    assert code == 0, err
    assert "toy_t1.jsonl:1: skipped malformed record" in one_line(err)
    assert "| A |" in out and "1.250" in out


def test_3_a_line_that_is_not_utf8_is_skipped_and_the_others_render(tmp_path, capsys):
    runs = runs_folder(tmp_path)
    good = {"table": "toy_t1", "row": "A", "metrics": {"bpd": 1.25}, "profile": "demo"}
    data = json.dumps({**good, "row": "B"}).encode().replace(b'"B"', b'"\xff"')
    (runs / "toy_t1.jsonl").write_bytes(data + b"\n" + json.dumps(good).encode() + b"\n")
    code, out, err = run(capsys, "report", "--results_dir", tmp_path, "--no-plots", "--print")
    assert code == 0 and "toy_t1.jsonl:1: skipped malformed record (not UTF-8" in one_line(err)
    assert "| A |" in out
    from bench.records import append_records

    append_records(runs / "toy_t1.jsonl", [good])  # appending keeps the file, bad line included
    assert (runs / "toy_t1.jsonl").read_bytes().startswith(data)


# 4. A compared layer cannot take a baseline row's run directory.


def test_4_compare_refuses_the_config_name_of_a_row(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = ["compare", EXAMPLE, "--tables", "inverse_flow_t2", "--name", "glow_mnist_small"]
    args += [*SHORT_COMPARE, "--results_dir", tmp_path / "r", "--work_dir", tmp_path / "o"]
    code, _, err = run(capsys, *args)
    assert code == 2 and "'glow_mnist_small' is the config file name of a row" in one_line(err)
    assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists()


# 5. Data files and checkpoints are loaded without running code.


class RunsCode:
    """Unpickling this calls os.system: what a crafted data file does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_5_a_crafted_galaxy_pickle_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "galaxy.pkl").write_bytes(pickle.dumps((RunsCode(marker), None, None)))
    with pytest.raises(DataFileError, match="asks for posix.system.*refused"):
        make_datamodule("galaxy", data_dir=tmp_path, batch_size=2, val_size=2).setup()
    assert not marker.exists()


def test_5_a_crafted_cifar_batch_is_refused_and_a_real_one_loads(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8), "labels": [1] * 8}
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    dm = make_datamodule("cifar10", data_dir=tmp_path, batch_size=4, val_size=8, download=False)
    dm.setup()
    assert len(dm.dataset("train")) == 32
    marker = tmp_path / "ran"
    (root / "test_batch").write_bytes(pickle.dumps({"data": RunsCode(marker), "labels": []}))
    with pytest.raises(DataFileError, match="test_batch is not a CIFAR-10 batch.*refused"):
        make_datamodule("cifar10", data_dir=tmp_path, download=False).setup()
    assert not marker.exists()


def test_5_the_checkpoint_step_is_read_weights_only(tmp_path):
    from bench.config import ConfigError
    from bench.experiments.run_dir import checkpoint_step

    marker = tmp_path / "ran"
    torch.save({"state_dict": {}, "global_step": RunsCode(marker)}, tmp_path / "bad.ckpt")
    with pytest.raises(ConfigError, match="bad.ckpt cannot be read"):
        checkpoint_step(tmp_path / "bad.ckpt")
    assert not marker.exists()


# 6. Every --set counts.


@pytest.mark.parametrize("command", ["config", "test", "time", "fit"])
def test_6_a_second_set_adds_to_the_first(command):
    from bench.__main__ import build_parser

    argv = [command, "--config", "x.yaml", "--set", "module.lr=0.5", "--set", "trainer.max_steps=7"]
    assert build_parser().parse_args(argv).set == ["module.lr=0.5", "trainer.max_steps=7"]


def test_6_config_shows_both_sets(tmp_path, capsys):
    config = row_yaml(tmp_path)
    args = ["config", "--config", config, "--set", "module.lr=0.5", "--set", "trainer.max_steps=7"]
    code, out, _ = run(capsys, *args)
    resolved = yaml.safe_load(out)
    assert code == 0 and resolved["module"]["lr"] == 0.5
    assert resolved["trainer"]["max_steps"] == 7


@pytest.mark.parametrize(
    "parser_args",
    [
        ["run-tables", "--tables", "mnist", "--set", "a=1", "--set", "b=2"],
        ["compare", "x.py:L", "--tables", "t", "--set", "a=1", "--set", "b=2"],
    ],
)
def test_6_run_tables_and_compare_merge_sets(parser_args):
    from bench.__main__ import build_parser

    assert build_parser().parse_args(parser_args).set == ["a=1", "b=2"]


# 7. Values out of range are one line and exit 2, before anything runs.


@pytest.mark.parametrize(
    "override, message",
    [
        ("module.lr=-1", "'module.lr' = -1: input should be greater than 0"),
        ("data.batch_size=0", "'data.batch_size' = 0: input should be greater than or equal to 1"),
        ("data.batch_size=-5", "'data.batch_size' = -5"),
        ("data.num_workers=-1", "'data.num_workers' = -1"),
        ("data.subset=1", "'data.subset' = 1: input should be greater than or equal to 5"),
        ("data.val_size=0", "'data.val_size' = 0"),
        ("trainer.max_steps=0", "max_steps must be -1 (no limit) or at least 1, got 0"),
    ],
)
def test_7_a_value_out_of_range_is_one_line(tmp_path, capsys, override, message):
    config = row_yaml(tmp_path)
    code, _, err = run(capsys, "fit", *row_args(config, tmp_path), "--set", override)
    assert code == 2 and message in one_line(err)
    assert not (tmp_path / "o").exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run-tables", "--budget-minutes", "0", "--tables", "no_such"], "must be above 0"),
        (["run-tables", "--budget-minutes", "-3", "--tables", "no_such"], "must be above 0"),
        (["compare", "x.py:L", "--tables", "no_such", "--runs", "0"], "must be at least 1"),
        (["compare", "x.py:L", "--tables", "no_such", "--layer-batch", "0"], "must be at least 1"),
        (["layers", "--runs", "0", "--family", "no_such"], "must be at least 1"),
    ],
)
def test_7_a_command_line_number_out_of_range_is_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err.strip().splitlines()[-1]


# 8. dfm-compress: cells, seeds, crop and photos are checked before anything trains.


@pytest.mark.parametrize(
    "cell, message",
    [
        ("40x2", "width 40: input should be less than or equal to 16"),
        ("0x3", "width 0: input should be greater than or equal to 1"),
        ("2x-1", "depth -1: input should be greater than or equal to 1"),
    ],
)
def test_8_a_cell_out_of_range_is_refused(tmp_path, capsys, cell, message):
    args = ["--photos", tmp_path / "missing.png", "--crop", "16", "--steps", "1"]
    code, _, err = run(capsys, "dfm-compress", "--cells", cell, *args, "--results_dir", tmp_path)
    assert code == 2 and message in one_line(err)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option", [["--seeds", "0"], ["--crop", "0"], ["--steps", "0"]])
def test_8_seeds_crop_and_steps_out_of_range_are_refused(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as exit_info:
        main(["dfm-compress", *option, "--photos", "missing.png", "--results_dir", str(tmp_path)])
    assert exit_info.value.code == 2 and "out of range" in capsys.readouterr().err


def bad_photos(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    Image.new("RGB", (1, 1)).save(folder / "tiny.png")
    Image.new("RGB", (64, 64), "red").save(folder / "full.png")
    (folder / "truncated.png").write_bytes((folder / "full.png").read_bytes()[:60])
    (folder / "notes.png").write_text("not an image")
    (folder / "photos").mkdir()
    return {
        "missing": folder / "missing.png",
        "1x1": folder / "tiny.png",
        "folder": folder / "photos",
        "not an image": folder / "notes.png",
        "truncated": folder / "truncated.png",
    }


@pytest.mark.parametrize("kind", ["missing", "1x1", "folder", "not an image", "truncated"])
def test_8_a_bad_photo_is_one_line_and_nothing_trains(tmp_path, capsys, kind):
    photo = bad_photos(tmp_path / "p")[kind]
    args = ["dfm-compress", "--photos", "astronaut", photo, "--crop", "16", "--steps", "1"]
    code, out, err = run(capsys, *args, "--results_dir", tmp_path / "r")
    assert code == 2 and f"photo {photo}:" in one_line(err)
    assert not (tmp_path / "r" / "runs").exists()


# 9. Unreadable checkpoints, unwritable results dirs and data that does not fit: one line.


@pytest.mark.parametrize("content", [b"", b"this is text\n", "truncated"])
@pytest.mark.parametrize("command", ["test", "time", "resume"])
def test_9_an_unreadable_checkpoint_is_one_line(tmp_path, capsys, content, command):
    config = row_yaml(tmp_path)
    good = tmp_path / "good.ckpt"
    save_task_checkpoint(good, "glow_mnist", dict(TINY_GLOW))
    data = good.read_bytes()[:300] if content == "truncated" else content
    checkpoint = tmp_path / "o/reliability_test/tiny/paper/checkpoints/last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(data)
    if command == "resume":
        args = ["fit", *row_args(config, tmp_path), "--resume"]
    else:
        args = [command, *row_args(config, tmp_path), "--checkpoint", checkpoint]
    code, _, err = run(capsys, *args)
    assert code == 2 and f"checkpoint {checkpoint} cannot be read" in one_line(err)


def test_9_a_results_dir_under_a_file_is_refused_before_training(tmp_path, capsys):
    config = row_yaml(tmp_path)
    (tmp_path / "file").write_text("")
    args = ["fit", "--config", config, "--results_dir", tmp_path / "file" / "r"]
    code, _, err = run(capsys, *args, "--work_dir", tmp_path / "o")
    assert code == 2 and "cannot hold records: Not a directory" in one_line(err)
    assert not (tmp_path / "o").exists()  # nothing trained


def test_9_a_full_disk_is_found_before_training(tmp_path, capsys, monkeypatch):
    import bench.records

    def full(path, content):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(bench.records, "write_atomic", full)
    code, _, err = run(capsys, "fit", *row_args(row_yaml(tmp_path), tmp_path))
    assert code == 2 and "cannot hold records: No space left on device" in one_line(err)
    assert not (tmp_path / "o").exists()


def test_9_images_of_the_wrong_size_are_one_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 10)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 14, 56)), True)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (n,)), True)
    config = row_yaml(tmp_path / "rows", dataset="mnist", data={"batch_size": 4, "val_size": 4})
    args = ["fit", *row_args(config, tmp_path), "--data_dir", tmp_path]
    code, _, err = run(capsys, *args)
    assert code == 2 and "mnist train images in" in one_line(err)
    assert "are (1, 14, 56), expected (1, 28, 28)" in err


def test_9_fewer_images_than_one_batch_is_one_line(tmp_path, capsys):
    config = row_yaml(tmp_path)
    args = ["fit", *row_args(config, tmp_path), "--set", "data.batch_size=64"]
    code, _, err = run(capsys, *args)
    assert code == 2 and "do not fill one batch of 64" in one_line(err)


# 10. Checkpoints are written to a temporary file and renamed.


def test_10_an_interrupted_checkpoint_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import bench.records
    from bench.config import load_config
    from bench.experiments.callbacks import AtomicCheckpointIO
    from bench.experiments.row import trainer_for

    config = load_config(row_yaml(tmp_path))
    launch = {"accelerator": "cpu", "devices": 1}
    trainer = trainer_for(config, tmp_path / "run", launch, logger=False)
    checkpoint_io = trainer.strategy.checkpoint_io
    assert isinstance(checkpoint_io, AtomicCheckpointIO)  # best.ckpt and last.ckpt alike
    last = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint_io.save_checkpoint({"global_step": 1, "state_dict": {}}, last)

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(bench.records.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        checkpoint_io.save_checkpoint({"global_step": 2, "state_dict": {}}, last)
    assert torch.load(last, weights_only=True)["global_step"] == 1
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]  # no temporary file left


# 11. A row that another process is running is skipped, not trained twice.


def test_11_a_row_locked_by_another_run_is_skipped(tmp_path, capsys, monkeypatch):
    from bench.experiments import run_tables
    from bench.experiments.options import RunOptions, SweepOptions
    from bench.records import row_lock

    def no_fit(config, args):
        raise AssertionError("the locked row was trained")

    monkeypatch.setattr(run_tables, "fit_command", no_fit)
    path = ROOT / "bench/configs/inverse_flow_t2/glow_mnist_small.yaml"
    args = SweepOptions(profile="demo", run=RunOptions(results_dir=tmp_path, work_dir=tmp_path))
    with row_lock(tmp_path, "inverse_flow_t2", "glow_mnist_small", "demo", 0):
        succeeded, failed, _ = run_tables.run_rows([path], args, [])
    out = capsys.readouterr().out
    assert (succeeded, failed) == (0, 0)
    assert "Glow (small): skipped, another process is running it" in out
    assert not (tmp_path / "runs" / "inverse_flow_t2.jsonl").exists()


def test_11_the_lock_never_waits_and_is_per_row_profile_and_seed(tmp_path):
    from bench.records import row_lock

    with row_lock(tmp_path, "t", "row", "demo", 0):
        with pytest.raises(Timeout):
            with row_lock(tmp_path, "t", "row", "demo", 0):
                pass
        with row_lock(tmp_path, "t", "row", "demo", 1), row_lock(tmp_path, "t", "row", "paper", 0):
            pass


# 12. report removes only what it wrote.


def test_12_report_keeps_a_users_files_in_tables(tmp_path, capsys):
    runs = runs_folder(tmp_path)
    record = {"table": "toy_t1", "row": "A", "metrics": {"bpd": 1.0}, "profile": "demo"}
    (runs / "toy_t1.jsonl").write_text(json.dumps(record) + "\n")
    tables = tmp_path / "tables"
    tables.mkdir()
    notes = [tables / "notes.md", tables / "my_t9.csv", tables / "draft.tex"]
    for path in notes:
        path.write_text("mine")
    assert main(["report", "--results_dir", str(tmp_path), "--no-plots"]) == 0
    assert all(path.read_text() == "mine" for path in notes)
    manifest = json.loads((tables / ".manifest.json").read_text())
    assert "toy_t1.md" in manifest and "notes.md" not in manifest
    (runs / "toy_t1.jsonl").unlink()  # the table is gone: its files are stale, the notes are not
    assert main(["report", "--results_dir", str(tmp_path), "--no-plots"]) == 0
    assert "removed stale" in capsys.readouterr().out
    assert not (tables / "toy_t1.md").exists() and all(path.is_file() for path in notes)


# 13. compare refuses a --set that replaces the compared layer.


@pytest.mark.parametrize("override", ["model_kwargs.conv=finc", "model_kwargs={conv: finc}"])
def test_13_compare_refuses_a_set_of_the_slot(tmp_path, capsys, monkeypatch, override):
    monkeypatch.chdir(ROOT)
    args = ["compare", EXAMPLE, "--tables", "inverse_flow_t2", *SHORT_COMPARE, "--set", override]
    code, _, err = run(capsys, *args, "--results_dir", tmp_path / "r", "--work_dir", tmp_path)
    assert code == 2 and "model_kwargs.conv is the slot that takes the compared layer" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
