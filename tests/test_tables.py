"""`python -m bench run-tables` (what make table-* and make demo run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from bench.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


TINY_DFM = [
    "data.shape=[1,28,28]",
    "data.num_train=48",
    "data.num_test=16",
    "data.val_size=16",
    "data.subset=null",
    "trainer.max_steps=3",
    "trainer.enable_progress_bar=false",
    "model_kwargs.width=2",
    "model_kwargs.depth=2",
    "model_kwargs.latent=4",
    "model_kwargs.decoder_hidden=[8]",
]


def test_a_failing_row_is_recorded_as_skipped_and_the_exit_status_says_so(
    tmp_path, capsys, monkeypatch
):
    from bench.experiments import run_tables

    def failing_fit(config, args):  # a row that fails while it trains (a bad lr is refused
        raise ValueError("Invalid learning rate: nan")  # before anything runs: issue 24)

    monkeypatch.setattr(run_tables, "fit_command", failing_fit)
    torch.set_default_dtype(torch.float32)
    argv = ["run-tables", "--tables", "dfm_mnist", "--profile", "demo", "--dataset", "synthetic"]
    argv += ["--results_dir", str(tmp_path / "r"), "--work_dir", str(tmp_path / "o")]
    code = main([*argv, "--set", *TINY_DFM])
    out = capsys.readouterr().out
    assert code == 1 and "1 of 1 rows failed" in out
    (record,) = [json.loads(x) for x in (tmp_path / "r/runs/dfm_mnist.jsonl").open()]
    assert record["status"] == "skipped" and "learning rate" in record["reason"]


def test_run_tables_trains_a_dfm_row_and_reports_its_metric(tmp_path, capsys):
    torch.set_default_dtype(torch.float32)
    code = main(
        [
            "run-tables",
            "--tables",
            "dfm_mnist",
            "--profile",
            "demo",
            "--dataset",
            "synthetic",
            "--results_dir",
            str(tmp_path / "r"),
            "--work_dir",
            str(tmp_path / "o"),
            "--set",
            *TINY_DFM,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "dfm_mnist / Fourier Net (MNIST): mse" in out
    (record,) = [json.loads(x) for x in (tmp_path / "r/runs/dfm_mnist.jsonl").open()]
    assert record["profile"] == "demo" and "mse" in record["metrics"]
    assert "## Deep Fourier Machines on MNIST" in out
    assert (tmp_path / "r/tables/samples/dfm_mnist-dfm_mnist.png").is_file()


def test_demo_records_stay_apart_from_the_committed_ones():
    """make demo writes its records to results/demo (ignored by git) and its tables show
    those beside the suite's published numbers, never the committed records."""
    makefile = (ROOT / "Makefile").read_text()
    assert "DEMO_RESULTS ?= results/demo" in makefile
    demo_recipe = makefile.split("\ndemo:")[1].split("\n\n")[0]
    assert "--results_dir $(DEMO_RESULTS)" in demo_recipe
    assert "results/demo/" in (ROOT / ".gitignore").read_text().splitlines()


def test_a_results_folder_without_published_numbers_uses_the_suites(tmp_path):
    from bench.report.tables import report

    markdown = report(tmp_path / "demo", with_plots=False)["tables"]["inverse_flow_t2"].markdown
    assert "| Inverse-Flow | 0.620 | not run |" in markdown


def test_missing_data_says_how_to_provide_it_and_fails_when_nothing_ran(tmp_path, capsys):
    shutil.copytree(ROOT / "results" / "published", tmp_path / "r" / "published")
    code = main(
        [
            "run-tables",
            "--tables",
            "inverse_flow_t2",
            "--profile",
            "demo",
            "--data_dir",
            str(tmp_path / "empty"),
            "--results_dir",
            str(tmp_path / "r"),
            "--work_dir",
            str(tmp_path / "o"),
            "--set",
            "data.download=false",
        ]
    )
    out = capsys.readouterr().out
    assert code == 2
    assert "dataset-fashion-mnist" in out and "DATASET=fashion_mnist" in out
    assert "not run (mnist data not available)" in out
    assert "| Inverse-Flow | 0.620 | not run |" in out
