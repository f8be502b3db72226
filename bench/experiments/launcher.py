"""``run-tables --launcher local|slurm`` (and ``compare --launcher``): a table's rows as jobs.

One submitit job per (row, seed) that still needs a record: the pairs `run_rows` would fit,
decided the same way (`run_tables.already_measured`, unless ``--force``), and each job runs
exactly what that loop runs for its pair (`run_tables.row_config`,
`bench.experiments.row.fit_command`), so the records are the same. ``local`` starts the jobs as
processes of this machine (submitit's LocalExecutor; jobs on GPUs get one each, through
``CUDA_VISIBLE_DEVICES``), ``slurm`` submits them with sbatch (SlurmExecutor). At most
``--max-parallel`` jobs run at once; the launcher prints a line when a job's state changes
(queued, running with its step, done, failed) and, as run-tables does, the table at the end.
Ctrl-C cancels the jobs it submitted.

Preemption: SIGTERM (what SLURM sends a preempted job) or submitit's signal before the time
limit (USR2) stops the fit at the next step with ``last.ckpt`` saved there (`Preemption`,
`bench.experiments.callbacks.PreemptionStop`); submitit's checkpointing protocol then requeues
the job as `RowJob.checkpoint` returns it, the same job with ``--resume`` on, and it resumes
exactly. A job that fails is reported with its log and recorded as skipped; it is not retried.

Records: each job writes its own file, ``runs/<table>/<row config>/<profile>-seed<k>-<job
id>.json`` (`bench.records.job_record_path`), atomically, so no lock is needed on a shared file
system; `bench.records.load_records` reads them beside the JSONL files, so the report and a
rerun (which skips the pairs measured) see them. Logs: ``<work_dir>/jobs/<job id>_0_log.err``
(and ``.out``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import submitit
from submitit.core.job_environment import JobEnvironment

from bench import records
from bench.config import ConfigError
from bench.experiments.callbacks import STEP_FILE, Preempted
from bench.experiments.options import SweepOptions
from bench.experiments.row import fit_command
from bench.experiments.run_dir import run_dir
from bench.experiments.run_tables import (
    already_measured,
    keep_sample_grid,
    pair_label,
    record_skip,
    row_config,
    seeds_of,
)
from bench.schema import RowConfig
from bench.tasks import TASK_SPECS
from datamodules import DataFileError

# The options of the jobs (`bench.__main__._add_launcher`), by their argparse names and flags.
LAUNCHER_OPTIONS = (
    "launcher",
    "max_parallel",
    "gpus_per_job",
    "cpus_per_job",
    "slurm_partition",
    "slurm_time",
    "slurm_option",
)
JOB_FLAGS = {
    "max_parallel": "--max-parallel",
    "gpus_per_job": "--gpus-per-job",
    "cpus_per_job": "--cpus-per-job",
}
SLURM_FLAGS = {
    "slurm_partition": "--slurm-partition",
    "slurm_time": "--slurm-time",
    "slurm_option": "--slurm-option",
}
LOCAL_TIMEOUT_MIN = 60 * 24 * 365  # local jobs have no time limit
# Time-limit requeues of one SLURM job (each continues the fit where it stopped); a preemption
# requeues without counting, a failure is never retried.
MAX_TIMEOUTS = 20
POLL_S = {"local": 0.5, "slurm": 30.0}  # how often the launcher looks at its jobs
STEP_EVERY_S = 60.0  # a running job's step is printed at most this often


def given(sweep: SweepOptions, flags: dict[str, str]) -> list[str]:
    """The flags among ``flags`` given on the command line."""
    return [flag for key, flag in flags.items() if getattr(sweep, key) not in (None, ())]


def check_launcher_options(args: SweepOptions) -> None:
    """Refuse, in one line and before anything runs: job options without ``--launcher``,
    SLURM options without ``--launcher slurm``, more than one GPU per job, and ``--launcher
    slurm`` without SLURM's tools, a time limit, or with a budget timed on this machine."""
    launcher = args.launcher
    job_options, slurm_only = given(args, {**JOB_FLAGS, **SLURM_FLAGS}), given(args, SLURM_FLAGS)
    if launcher is None and job_options:
        raise ConfigError(f"{job_options[0]} needs --launcher local or --launcher slurm")
    if launcher is None:
        return
    if launcher != "slurm" and slurm_only:
        raise ConfigError(f"{slurm_only[0]} needs --launcher slurm")
    slurm_options(args.slurm_option)  # KEY=VALUE each
    if (args.gpus_per_job or 0) > 1:
        raise ConfigError(
            f"--gpus-per-job {args.gpus_per_job}: a job trains one row on one device; give 1 "
            "and run more jobs at once (--max-parallel)"
        )
    if launcher == "local" and args.gpus_per_job and not visible_gpus():
        raise ConfigError("--gpus-per-job 1: no GPU is visible here; give 0 to run on the CPU")
    if launcher == "slurm":
        missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if missing:
            raise ConfigError(
                f"--launcher slurm: SLURM's {' and '.join(missing)} not found on PATH (submitit "
                "submits through them); run on the cluster's login node, or use --launcher local"
            )
        if not args.slurm_time:
            raise ConfigError(
                "--launcher slurm needs --slurm-time, one job's time limit (e.g. 24:00:00); a "
                "job stopped by it is requeued and resumes where it stopped"
            )
        if args.budget_minutes:
            raise ConfigError(
                "--budget-minutes times the rows on this machine, not on the cluster's nodes; "
                "give --steps N with --launcher slurm"
            )


def slurm_options(texts: list[str] | None) -> dict[str, str]:
    """``--slurm-option account=abc`` -> ``{"account": "abc"}`` (sbatch's ``--account=abc``)."""
    options = {}
    for text in texts or []:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--slurm-option {text!r}: write KEY=VALUE, e.g. account=abc")
        options[key.strip().lstrip("-")] = value
    return options


def visible_gpus() -> list[int]:
    """This machine's GPUs the local launcher shares out, by the indices
    ``CUDA_VISIBLE_DEVICES`` gives them (all GPUs when it is unset)."""
    import torch

    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return list(range(count))
    ids = [part.strip() for part in listed.split(",") if part.strip()]
    if not all(part.isdigit() for part in ids):
        raise ConfigError(
            f"CUDA_VISIBLE_DEVICES={listed}: the local launcher gives each job a GPU by its "
            "index; list indices (e.g. 0,1) or unset it"
        )
    return [int(part) for part in ids][:count]


def gpus_per_job(args) -> int:
    """``--gpus-per-job``, else 1 on SLURM and 1 locally where this machine has a GPU."""
    if args.gpus_per_job is not None:
        return args.gpus_per_job
    return 1 if args.launcher == "slurm" or visible_gpus() else 0


# --- the job ------------------------------------------------------------------------------


class Preemption:
    """A job's preemption signals: SIGTERM (what SLURM sends a preempted job; the local
    launcher's job controller passes it on) and submitit's signal before a time limit (USR2).
    Outside training a signal stops the job at once (`Preempted`); during training
    (``training``, set by `PreemptionStop`) it is noted, and the fit stops at the next step
    with ``last.ckpt`` saved there."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.training = False
        self.submitit_handler: Any = None

    @staticmethod
    def signals() -> tuple[int, ...]:
        return tuple(dict.fromkeys((signal.SIGTERM, JobEnvironment._usr_sig())))

    def handle(self, signum: int, frame) -> None:
        self.signum = signum
        if not self.training:
            raise Preempted("preempted outside training")

    def install(self) -> None:
        for signum in self.signals():
            signal.signal(signum, self.handle)

    @contextmanager
    def handling(self):
        """Our handler for the signals while the job runs; submitit's afterwards."""
        previous = {signum: signal.getsignal(signum) for signum in self.signals()}
        self.submitit_handler = previous[JobEnvironment._usr_sig()]
        self.install()
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def requeue(self, stop: Preempted) -> None:
        """Requeue through submitit's own handler of its preemption signal, which calls
        `RowJob.checkpoint` (the same job, resumed), requeues it and exits the process.
        Outside a submitit job (no such handler), ``stop`` is raised again."""
        name = signal.Signals(self.signum).name if self.signum else "signal"
        print(f"{name}: {stop}, last.ckpt saved; requeued to resume from it", flush=True)
        if not callable(self.submitit_handler):
            raise stop
        self.submitit_handler(JobEnvironment._usr_sig(), None)
        raise stop  # not reached: submitit's handler exits, or raises why it did not requeue


class RowJob(submitit.helpers.Checkpointable):
    """One (row, seed) as a submitit job: what `run_rows` runs for the pair, its record written
    to a file of its own. Preempted, it is requeued as `checkpoint` returns it: ``--resume``."""

    def __init__(self, path, args, budget_steps: int | None, seed: int | None, command: list):
        self.path, self.args = str(Path(path).resolve()), args
        self.budget_steps, self.seed, self.command = budget_steps, seed, list(command)
        self.stamp = time.strftime("%Y%m%dT%H%M%S")  # local job ids (process ids) repeat

    def record_file(self, config: RowConfig, job_id: str) -> Path:
        """`bench.records.job_record_path` of this job (a local job: its id and submit time)."""
        name = job_id if self.args.launcher == "slurm" else f"{job_id}-{self.stamp}"
        return records.job_record_path(
            self.args.run.results_dir,
            config.table,
            Path(config.config_path).stem,
            config.profile,
            config.seed,
            name,
        )

    def __call__(self) -> dict:
        """Fit, test and time the pair. Returns its record, or ``{"missing": data set,
        "error": message}`` where the data set's files are missing (as `run_rows`, the row is
        then not recorded)."""
        records.current_command[:] = self.command  # the record names the launcher's command
        if self.args.cpus_per_job:
            import torch

            torch.set_num_threads(self.args.cpus_per_job)
        config = row_config(Path(self.path), self.args, self.budget_steps, self.seed)
        target = self.record_file(config, JobEnvironment().job_id)
        if self.args.run.resume and target.is_file():  # requeued after its record was written
            return json.loads(target.read_text())
        run = replace(self.args.run, record_file=target, preemption=Preemption())
        with run.preemption.handling():
            try:
                record = fit_command(config, run)
                keep_sample_grid(config, run.work_dir, run.results_dir)
            except Preempted as stop:
                run.preemption.requeue(stop)
            except DataFileError as err:
                return {"missing": config.dataset, "error": str(err)}
        return record

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """The job to requeue after a preemption: this one, resuming from ``last.ckpt``."""
        resumed = replace(self.args, run=replace(self.args.run, resume=True))
        job = RowJob(self.path, resumed, self.budget_steps, self.seed, self.command)
        job.stamp = self.stamp  # the same record file
        return submitit.helpers.DelayedSubmission(job)


def job_sweep(sweep: SweepOptions) -> SweepOptions:
    """The sweep a job reads, with absolute paths (a job may start in another folder)."""
    run = sweep.run
    data_dir = str(Path(run.data_dir).resolve()) if run.data_dir else None
    run = replace(
        run,
        results_dir=run.results_dir.resolve(),
        work_dir=run.work_dir.resolve(),
        data_dir=data_dir,
    )
    return replace(sweep, run=run)


# --- the launcher -------------------------------------------------------------------------


def make_executor(args, folder: Path):
    """submitit's LocalExecutor (no time limit) or SlurmExecutor (`slurm_parameters`)."""
    if args.launcher == "slurm":
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_TIMEOUTS)
        executor.update_parameters(**slurm_parameters(args))
        return executor
    executor = submitit.LocalExecutor(folder=folder, max_num_timeout=MAX_TIMEOUTS)
    executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
    return executor


def slurm_parameters(args) -> dict[str, Any]:
    """sbatch's options of every job: partition, time limit (minutes), GPUs and CPUs, and the
    ``--slurm-option`` ones."""
    parameters = {
        "job_name": "convflow-bench",
        "partition": args.slurm_partition,
        "time": args.slurm_time,
        "nodes": 1,
        "ntasks_per_node": 1,
        "gpus_per_node": gpus_per_job(args) or None,
        "cpus_per_task": args.cpus_per_job,
        "additional_parameters": slurm_options(args.slurm_option) or None,
    }
    return {key: value for key, value in parameters.items() if value is not None}


def job_slots(args, jobs: int) -> list[tuple[int, ...]]:
    """One entry per job that may run at once, the GPUs it gets: locally one GPU of this
    machine each where jobs use GPUs (else 1 slot); on SLURM every job (the cluster queues
    them); ``--max-parallel`` caps them."""
    if args.launcher == "local" and gpus_per_job(args):
        slots = [(gpu,) for gpu in visible_gpus()]
    else:
        slots = [()] * (args.max_parallel or (jobs if args.launcher == "slurm" else 1))
    return slots[: args.max_parallel or len(slots)]


@dataclass
class Pair:
    """One (row, seed) that needs a record, and its job once submitted."""

    label: str
    path: Path
    seed: int | None
    config: RowConfig
    job: Any = None
    runner: RowJob | None = None
    gpus: tuple[int, ...] = ()
    state: str = "queued"
    shown: str = ""
    shown_at: float = 0.0
    started: float = 0.0


@dataclass
class Tally:
    succeeded: int = 0
    failed: int = 0
    missing: set[str] = field(default_factory=set)


def pending_pairs(paths: list[Path], args, known: list, budget_steps: int | None) -> list[Pair]:
    """The (row, seed) pairs `run_rows` would fit, in its order and with its labels; those
    already measured under the same conditions are said so and left out (unless --force)."""
    runs = [(path, seed) for path in paths for seed in seeds_of(args)]
    pairs = []
    for i, (path, seed) in enumerate(runs, start=1):
        config = row_config(path, args, budget_steps, seed)
        label = pair_label(i, len(runs), config, seed)
        if not args.force and already_measured(config, known):
            print(f"{label}: already measured ({args.profile}); FORCE=1 to rerun")
            continue
        pairs.append(Pair(label, path, seed, config))
    return pairs


def launch_rows(
    paths: list[Path], args, known: list, budget_steps: int | None = None
) -> tuple[int, int, set[str]]:
    """`run_rows` as jobs: (succeeded, failed, data sets whose files were missing)."""
    pairs = pending_pairs(paths, args, known, budget_steps)
    tally = Tally()
    if not pairs:
        return 0, 0, set()
    folder = Path(args.run.work_dir).resolve() / "jobs"
    slots = job_slots(args, len(pairs))
    executor = make_executor(args, folder)
    print(f"{len(pairs)} jobs ({args.launcher}), at most {len(slots)} at once; logs in {folder}")
    for pair in pairs:
        print(f"{pair.label}: queued")
    waiting, running = list(pairs), []
    try:
        while waiting or running:
            while waiting and slots:
                pair = waiting.pop(0)
                if pair.config.dataset in tally.missing:
                    print(f"{pair.label}: not run ({pair.config.dataset} data not available)")
                    continue
                running.append(pair)
                submit(executor, pair, args, budget_steps, slots.pop(0))
            for pair in list(running):
                if follow(pair, args, tally):
                    running.remove(pair)
                    slots.append(pair.gpus)
            if waiting or running:
                time.sleep(POLL_S[args.launcher])
    except KeyboardInterrupt:
        cancel(running, "interrupted")
        raise SystemExit(130) from None
    except Exception:  # e.g. sbatch refused a job: the others do not run on unwatched
        cancel(running, "stopped")
        raise
    return tally.succeeded, tally.failed, tally.missing


@contextmanager
def children_take_sigint():
    """Local jobs are cancelled with SIGINT (submitit's ``LocalJob.cancel``). A launcher
    started with SIGINT ignored (a script's background command: ``run-tables ... &``) would
    pass the ignore on to the job processes it starts, and cancelling them would do nothing.
    They are started with Python's handler in place instead, which exec does not keep (a
    child starts with SIGINT at its default); the ignore is restored after."""
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous == signal.SIG_IGN:
            signal.signal(signal.SIGINT, previous)


def submit(executor, pair: Pair, args, budget_steps: int | None, gpus: tuple[int, ...]) -> None:
    """Submit the pair's `RowJob` (a local job on ``gpus``: its CUDA_VISIBLE_DEVICES)."""
    if args.launcher == "local":
        executor.update_parameters(gpus_per_node=len(gpus), visible_gpus=gpus)
    else:
        executor.update_parameters(job_name=f"{pair.config.table}-{pair.path.stem}")
    (run_dir(pair.config, args.run.work_dir) / STEP_FILE).unlink(missing_ok=True)  # an older run's
    command = records.current_command
    pair.runner = RowJob(pair.path, job_sweep(args), budget_steps, pair.seed, command)
    try:
        with children_take_sigint():
            pair.job = executor.submit(pair.runner)
    except Exception as err:  # sbatch's refusal (partition, account, time): one line
        raise ConfigError(f"{pair.label}: submission refused: {failure_reason(err)}") from err
    pair.gpus, pair.started = gpus, time.monotonic()
    where = f" on GPU {','.join(map(str, gpus))}" if gpus else ""
    print(f"{pair.label}: submitted as job {pair.job.job_id}{where}", flush=True)


def job_state(job) -> str:
    """submitit's state of a job, in words: queued, running, requeued or finished."""
    if job.done():
        return "finished"
    state = str(job.state).upper()
    if state.startswith(("PENDING", "CONFIGURING")):
        return "queued"
    if state.startswith(("REQUEUE", "PREEMPTED")):
        return "requeued"
    return "running"


def follow(pair: Pair, args, tally: Tally) -> bool:
    """Print the pair's job's state when it changes (a running job's step at most every
    `STEP_EVERY_S`); at its end, count it. Returns whether it ended."""
    state = job_state(pair.job)
    if state == "finished":
        finish(pair, args, tally)
        return True
    text = state
    if state == "running":
        step = read_step(run_dir(pair.config, args.run.work_dir) / STEP_FILE)
        text += f", step {step}" if step is not None else ""
    due = state != pair.state or time.monotonic() - pair.shown_at >= STEP_EVERY_S
    if text != pair.shown and due:
        print(f"{pair.label}: {text}", flush=True)
        pair.shown, pair.shown_at = text, time.monotonic()
    pair.state = state
    return False


def read_step(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def finish(pair: Pair, args, tally: Tally) -> None:
    """A job's end: its metric, or where its data was missing, or its failure: recorded as
    skipped (in its own record file) with the reason, and its log named."""
    error = pair.job.exception()
    if error is None:
        result = pair.job.result()
        if "missing" in result:  # rows of the same data set are not submitted any more
            if result["missing"] not in tally.missing:
                print(f"\n{result['error']}\n")
            tally.missing.add(result["missing"])
            print(f"{pair.label}: not run ({result['missing']} data not available)")
            return
        metric = TASK_SPECS[pair.config.task].metric
        value = result["metrics"].get(metric)
        text = f"{metric} {value:.3f}" if value is not None else f"no {metric} measured"
        print(f"{pair.label}: {text} in {time.monotonic() - pair.started:.0f} s", flush=True)
        tally.succeeded += 1
        return
    reason = failure_reason(error)
    target = pair.runner.record_file(pair.config, str(pair.job.job_id))
    record_skip(pair.config, args.run.results_dir, reason, target)
    print(f"{pair.label}: failed ({reason}); log: {pair.job.paths.stderr}", flush=True)
    tally.failed += 1


def failure_reason(error: BaseException) -> str:
    """The exception a failed job raised, in one line (the last of its traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Exit)\b", line)]
    return (raised[-1] if raised else lines[0] if lines else type(error).__name__)[:200]


def cancel(running: list[Pair], why: str) -> None:
    """Cancel the jobs submitted and still running (Ctrl-C, or the launcher failing), and
    say so."""
    jobs = [pair.job for pair in running if pair.job is not None]
    for job in jobs:
        job.cancel(check=False)
    ids = ", ".join(str(job.job_id) for job in jobs) or "none running"
    print(
        f"\n{why}: cancelled {len(jobs)} jobs ({ids}). Run the same command again to go on: "
        "the (row, seed) pairs with a record are skipped"
    )
