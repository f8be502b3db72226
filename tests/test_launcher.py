"""`run-tables --launcher local|slurm` (issue 27): one submitit job per (row, seed), preemption
safe, each job's record in a file of its own.

The jobs train two rows of Inverse-Flow Table 4 shrunk to 8x8 generated images (``TINY``) for a
few steps. The tests that train them run several processes on the CPU and are marked slow;
the others drive the launcher's decisions, records and scripts without training."""

from __future__ import annotations

import functools
import os
import re
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest
import submitit
import torch

from bench import records
from bench.__main__ import build_parser, main
from bench.experiments import launcher
from bench.experiments.callbacks import STEP_FILE
from bench.experiments.options import SweepOptions
from bench.experiments.run_dir import run_dir
from bench.experiments.run_tables import row_config, row_paths
from bench.records import job_record_path, load_records, make_record, write_record
from bench.report.tables import report
from bench.schema import RowConfig

ROWS = ["exact_mnist_linear9", "emerging_mnist_linear9"]
STEPS = 8  # 7 batches an epoch: the runs cross an epoch's end; validation every 2 steps
TINY = [  # the rows' architecture at 8x8 on generated images, one batch per evaluation
    "evaluate.timing=false",
    "data.shape=[1,8,8]",
    "data.num_train=64",
    "data.num_test=16",
    "data.batch_size=8",
    "model_kwargs.input_shape=[1,8,8]",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
]


def tables_argv(folder: Path, *extra: str, rows=ROWS, seeds: int = 2) -> list[str]:
    """run-tables of ``rows`` x ``seeds`` of Table 4 (tiny), results and outputs in folder."""
    return [
        "run-tables",
        "--tables",
        "inverse_flow_t4",
        "--rows",
        *rows,
        "--profile",
        "demo",
        "--seeds",
        str(seeds),
        "--steps",
        str(STEPS),
        "--dataset",
        "synthetic",
        "--results_dir",
        str(folder / "r"),
        "--work_dir",
        str(folder / "o"),
        *extra,
        "--set",
        *TINY,
    ]


def parse(argv: list[str]) -> SweepOptions:
    """The sweep a run-tables or compare command line runs."""
    return SweepOptions.from_args(build_parser().parse_args(argv))


def configs(sweep: SweepOptions) -> list[RowConfig]:
    """The (row, seed) configs of a run-tables command of `ROWS`, in its order."""
    paths = row_paths(["inverse_flow_t4"], ROWS)
    return [row_config(p, sweep, sweep.steps, s) for p in paths for s in range(sweep.seeds)]


def measured(config: RowConfig, bpd: float = 7.0) -> dict:
    """A record of ``config``'s row under its conditions, as a fit writes it."""
    return make_record(
        config.table,
        config.row,
        config.dataset,
        {"bpd": bpd},
        device="cpu",
        profile=config.profile,
        seed=config.seed,
        batch_size=config.data.batch_size,
        budget_steps=config.budget_steps,
    )


def job_file(results: Path, config: RowConfig, job_id: str) -> Path:
    stem = Path(config.config_path).stem
    return job_record_path(results, config.table, stem, "demo", config.seed, job_id)


def bpds(results: Path) -> dict[tuple[str, int], float]:
    return {(r["row"], r["seed"]): r["metrics"]["bpd"] for r in load_records(results).rows}


# --- records, reruns, scripts, options: no training -------------------------------------


def test_job_record_files_are_read_beside_the_jsonl_by_the_report(tmp_path):
    args = parse(tables_argv(tmp_path))
    pairs = {(Path(c.config_path).stem, c.seed): c for c in configs(args)}
    first, second = pairs["exact_mnist_linear9", 0], pairs["exact_mnist_linear9", 1]
    results = tmp_path / "r"
    records.append_records(records.records_path(results, "inverse_flow_t4"), [measured(first)])
    target = job_file(results, second, "4242")
    write_record(target, measured(second, 6.5))
    (target.parent / "demo-seed9-1.json").write_text("{not json")
    assert target == results / "runs/inverse_flow_t4/exact_mnist_linear9/demo-seed1-4242.json"
    loaded = load_records(results)
    sources = sorted(r["_source"] for r in loaded.rows)
    assert sources == [
        "inverse_flow_t4.jsonl:1",
        "inverse_flow_t4/exact_mnist_linear9/demo-seed1-4242.json",
    ]
    (problem,) = loaded.problems
    assert "exact_mnist_linear9/demo-seed9-1.json: skipped malformed record (not JSON" in problem
    tables = report(results, with_plots=False, tables=["inverse_flow_t4"])["tables"]
    markdown = tables["inverse_flow_t4"].markdown
    assert "6.750 ± 0.354 (n=2)" in markdown  # both records, one cell: mean and std of 7, 6.5
    assert "exact_mnist_linear9/demo-seed1-4242.json" in markdown  # the reference names it


def test_a_rerun_skips_the_pairs_with_a_record(tmp_path, capsys):
    args = parse(tables_argv(tmp_path, "--launcher", "local"))
    every = configs(args)
    results = tmp_path / "r"
    for number, config in enumerate(every[:3]):
        write_record(job_file(results, config, str(number)), measured(config))
    paths = row_paths(["inverse_flow_t4"], ROWS)
    pending = launcher.pending_pairs(paths, args, load_records(results).rows, STEPS)
    assert [(p.config.row, p.seed) for p in pending] == [(every[3].row, 1)]
    write_record(job_file(results, every[3], "3"), measured(every[3]))
    capsys.readouterr()
    assert launcher.launch_rows(paths, args, load_records(results).rows, STEPS) == (0, 0, set())
    out = capsys.readouterr().out
    assert out.count("already measured") == 4 and "submitted" not in out


def test_the_slurm_script_carries_partition_time_gpus_and_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr(launcher.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    options = ["--launcher", "slurm", "--slurm-partition", "gpu", "--slurm-time", "1-12:00:00"]
    options += ["--gpus-per-job", "1", "--cpus-per-job", "8", "--slurm-option", "account=abc"]
    options += ["--slurm-option", "mem=32G"]
    args = parse(tables_argv(tmp_path, *options))
    launcher.check_launcher_options(args)
    executor = launcher.make_executor(args, tmp_path / "jobs")
    script = executor._make_submission_file_text("python -u -m submitit.core._submit x", "uid")
    for line in [
        "#SBATCH --partition=gpu",
        "#SBATCH --time=2160",  # minutes
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --account=abc",
        "#SBATCH --mem=32G",
        "#SBATCH --signal=USR2@90",  # submitit's warning before the time limit: requeue
    ]:
        assert line in script.splitlines()
    assert f"#SBATCH --error={tmp_path / 'jobs'}/%j_0_log.err" in script.splitlines()


@pytest.mark.parametrize(
    "options, message",
    [
        (["--slurm-partition", "gpu"], "--slurm-partition needs --launcher local or --launcher"),
        (["--max-parallel", "2"], "--max-parallel needs --launcher local or --launcher slurm"),
        (["--launcher", "local", "--slurm-time", "60"], "--slurm-time needs --launcher slurm"),
        (["--launcher", "local", "--gpus-per-job", "2"], "a job trains one row on one device"),
        (["--launcher", "slurm", "--slurm-time", "60"], "SLURM's sbatch and srun not found"),
        (["--launcher", "local", "--slurm-option", "x"], "needs --launcher slurm"),
    ],
)
def test_job_options_are_refused_in_one_line(tmp_path, capsys, monkeypatch, options, message):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    assert main(tables_argv(tmp_path, *options)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "runs").exists()  # refused before anything ran


def test_compare_takes_the_same_job_options(tmp_path, capsys):
    argv = ["compare", "examples/householder.py:HouseholderConv1x1", "--tables", "inverse_flow_t4"]
    assert main([*argv, "--slurm-partition", "gpu", "--results_dir", str(tmp_path)]) == 2
    assert "--slurm-partition needs --launcher local or --launcher" in capsys.readouterr().err
    args = parse([*argv, "--launcher", "local", "--max-parallel", "3", "--cpus-per-job", "2"])
    # what the table's rows and the user row are fitted with
    assert (args.launcher, args.max_parallel, args.cpus_per_job) == ("local", 3, 2)


def test_a_refused_submission_is_one_line_and_cancels_the_jobs_submitted(
    tmp_path, monkeypatch, capsys
):
    class Refusing:
        def update_parameters(self, **parameters):
            pass

        def submit(self, job):
            raise submitit.core.utils.FailedJobError("sbatch: error: invalid partition: gpu")

    monkeypatch.setattr(launcher, "make_executor", lambda *a: Refusing())
    args = parse(tables_argv(tmp_path, "--launcher", "local"))
    paths = row_paths(["inverse_flow_t4"], ROWS)
    with pytest.raises(launcher.ConfigError, match="submission refused: sbatch: error: invalid"):
        launcher.launch_rows(paths, args, [], STEPS)
    assert "stopped: cancelled 0 jobs" in capsys.readouterr().out


def test_slurm_needs_a_time_limit_and_steps_rather_than_minutes(tmp_path, monkeypatch):
    monkeypatch.setattr(launcher.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    args = parse(tables_argv(tmp_path, "--launcher", "slurm"))
    with pytest.raises(launcher.ConfigError, match="needs --slurm-time"):
        launcher.check_launcher_options(args)
    args = parse(tables_argv(tmp_path, "--launcher", "slurm", "--slurm-time", "2:00:00"))
    args = replace(args, budget_minutes=30)
    with pytest.raises(launcher.ConfigError, match="give --steps N with --launcher slurm"):
        launcher.check_launcher_options(args)


def test_a_slurm_time_is_read_as_minutes(capsys):
    times = {"90": 90, "90:30": 91, "2:00:00": 120, "1-0": 1440, "1-02:30": 1590}
    for text, minutes in times.items():
        assert parse(tables_argv(Path("x"), "--slurm-time", text)).slurm_time == minutes
    with pytest.raises(SystemExit):
        parse(tables_argv(Path("x"), "--slurm-time", "soon"))
    assert "'soon' is not a SLURM time" in capsys.readouterr().err


def test_local_gpu_jobs_get_one_gpu_each(tmp_path, monkeypatch):
    """With GPUs, each local job gets its own (CUDA_VISIBLE_DEVICES), at most one job per GPU;
    on the CPU, --max-parallel jobs (default 1). The job here only reports what it sees."""
    monkeypatch.setattr(launcher, "visible_gpus", lambda: [0, 3])
    args = parse(tables_argv(tmp_path, "--launcher", "local", "--max-parallel", "4"))
    assert launcher.job_slots(args, 4) == [(0,), (3,)]
    args = replace(args, gpus_per_job=0)
    assert launcher.job_slots(args, 4) == [()] * 4
    args = replace(args, max_parallel=None)
    assert launcher.job_slots(args, 4) == [()]
    seen = functools.partial(os.getenv, "CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(launcher, "RowJob", lambda *a: seen)
    pair = launcher.Pair("[1/1] row", Path("row.yaml"), 0, configs(args)[0])
    executor = launcher.make_executor(args, tmp_path / "jobs")
    launcher.submit(executor, pair, args, STEPS, (3,))
    assert pair.job.result() == "3"


@pytest.fixture(params=["default", "ignored"])
def sigint(request):
    """The launcher's SIGINT handling: Python's default, or ignored (a script's background
    command), which job processes would inherit."""
    previous = signal.getsignal(signal.SIGINT)
    if request.param == "ignored":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield request.param
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_cancels_the_jobs_submitted(tmp_path, monkeypatch, capsys, sigint):
    """Ctrl-C (or a failure) cancels the jobs, and their processes end, also when the launcher
    itself runs with SIGINT ignored."""
    monkeypatch.setattr(launcher, "RowJob", lambda *a: functools.partial(time.sleep, 120))
    jobs = []

    def interrupted(pair, args, tally):
        jobs.append(pair.job)
        raise KeyboardInterrupt

    monkeypatch.setattr(launcher, "follow", interrupted)
    args = parse(tables_argv(tmp_path, "--launcher", "local", "--max-parallel", "2"))
    paths = row_paths(["inverse_flow_t4"], ROWS)
    with pytest.raises(SystemExit) as stop:
        launcher.launch_rows(paths, args, [], STEPS)
    assert stop.value.code == 130
    out = capsys.readouterr().out
    assert f"interrupted: cancelled 2 jobs ({jobs[0].job_id}, " in out
    assert "Run the same command again" in out
    deadline = time.monotonic() + 30
    while not jobs[0].done() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert jobs[0].done()  # its process ended


# --- jobs that train ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def in_process(tmp_path_factory) -> dict:
    """The in-process loop's records of the 2 rows x 2 seeds: {(row, seed): record}."""
    folder = tmp_path_factory.mktemp("in_process")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # as a job's fresh process
    try:
        assert main(tables_argv(folder)) == 0
    finally:
        torch.set_default_dtype(previous)
    return {(r["row"], r["seed"]): r for r in load_records(folder / "r").rows}


@pytest.mark.slow
def test_four_parallel_jobs_give_the_bpds_of_the_in_process_loop(in_process, tmp_path, capsys):
    argv = tables_argv(tmp_path, "--launcher", "local", "--max-parallel", "4")
    assert main(argv) == 0
    out = capsys.readouterr().out
    files = sorted((tmp_path / "r" / "runs").glob("inverse_flow_t4/*/*.json"))
    assert len(files) == 4 and not (tmp_path / "r/runs/inverse_flow_t4.jsonl").exists()
    assert bpds(tmp_path / "r") == {key: r["metrics"]["bpd"] for key, r in in_process.items()}
    lines = out.splitlines()
    submitted = [i for i, line in enumerate(lines) if "submitted as job" in line]
    finished = [i for i, line in enumerate(lines) if re.search(r": bpd \d", line)]
    assert len(submitted) == 4 and len(finished) == 4 and max(submitted) < min(finished)
    assert "): running" in out and "## Inverse-Flow Table 4" in out
    assert main(argv) == 0  # the same command again: every pair has its record
    again = capsys.readouterr().out
    assert again.count("already measured") == 4 and "submitted" not in again


@pytest.mark.slow
def test_a_job_killed_by_sigterm_is_requeued_and_ends_as_an_uninterrupted_run(in_process, tmp_path):
    args = parse(tables_argv(tmp_path, "--launcher", "local", rows=ROWS[:1], seeds=1))
    (pair,) = launcher.pending_pairs(row_paths(["inverse_flow_t4"], ROWS[:1]), args, [], STEPS)
    launcher.submit(launcher.make_executor(args, tmp_path / "jobs"), pair, args, STEPS, ())
    step_file = run_dir(pair.config, args.run.work_dir) / STEP_FILE
    deadline = time.monotonic() + 300
    while not step_file.exists() and not pair.job.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert step_file.exists(), "the job never trained a step"
    os.kill(pair.job._process.pid, signal.SIGTERM)  # the job's controller passes it on
    while not pair.job.done() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pair.job.done(), "the requeued job did not finish"
    resumed = pair.job.result()
    log = pair.job.paths.stdout.read_text()
    stopped = re.search(r"SIGTERM: preempted at step (\d+), last.ckpt saved", log)
    assert stopped and int(stopped.group(1)) < STEPS, log  # mid-training
    assert "Requeued job" in log
    whole = in_process[(pair.config.row, 0)]
    assert resumed["metrics"]["bpd"] == whole["metrics"]["bpd"]
    assert (resumed["curve"], resumed["steps"]) == (whole["curve"], whole["steps"])
    assert load_records(tmp_path / "r").rows[0]["metrics"]["bpd"] == whole["metrics"]["bpd"]


def test_a_failed_job_is_recorded_as_skipped_with_its_log(tmp_path, capsys):
    argv = tables_argv(tmp_path, "--launcher", "local", rows=ROWS[:1], seeds=1)
    args = parse([*argv, "model_kwargs.layers=4"])  # 4 layers in 3 blocks: the model refuses
    paths = row_paths(["inverse_flow_t4"], ROWS[:1])
    assert launcher.launch_rows(paths, args, [], STEPS) == (0, 1, set())
    out = capsys.readouterr().out
    failed = re.search(r"failed \((.*)\); log: (\S+)", out)
    assert failed and "ValueError: layers (4) must be a multiple of blocks (3)" in failed[1]
    assert Path(failed[2]).is_file() and "ValueError" in Path(failed[2]).read_text()
    (record,) = load_records(tmp_path / "r").rows  # not retried: one job, one record
    assert record["status"] == "skipped" and record["reason"] == failed[1]
    assert record["_source"].startswith("inverse_flow_t4/exact_mnist_linear9/demo-seed0-")
