"""What a run needs beside a row's config, typed: `RunOptions` for one row's fit, test, time or
FID (where it reads and writes, how Lightning spreads it), `SweepOptions` for many rows and
seeds (``run-tables``, and the table rows ``compare`` trains). The command line fills them
(`from_args`); code that runs rows (``compare``, a cluster job) builds them directly.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The Trainer options a command line may set for one run, over the config's ``trainer:``.
LAUNCH_KEYS = ("accelerator", "devices", "num_nodes", "strategy")


@dataclass(frozen=True)
class RunOptions:
    """One row's run. ``results_dir``: where its record goes (``runs/<table>.jsonl``);
    ``work_dir``: checkpoints, logs and samples (``<work_dir>/<table>/<row>/<profile>``);
    ``data_dir``: the data set files (default: the datamodule's); ``resume``: continue from the
    run's ``last.ckpt``; ``checkpoint``: what test, time and FID evaluate (default: the row's
    best); ``device``: the timing device (default: CUDA if any); ``launch``: Trainer options
    (`LAUNCH_KEYS`) over the config's; ``num_samples``, ``temperature``, ``fid_seed``,
    ``feature_extractor``: the FID command's. A launcher job (`bench.experiments.launcher`)
    sets ``record_file`` (its record's own file, instead of the table's JSONL) and
    ``preemption`` (its signals: the fit stops at a step boundary with ``last.ckpt`` saved)."""

    results_dir: Path = Path("results")
    work_dir: Path = Path("outputs")
    data_dir: str | None = None
    resume: bool = False
    checkpoint: str | None = None
    device: str | None = None
    launch: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 50_000
    temperature: float = 1.0
    fid_seed: int = 0
    feature_extractor: str | None = None
    record_file: Path | None = None
    preemption: Any = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunOptions:
        """The options a command's parsed arguments hold (those it lacks keep their default)."""
        given = vars(args)
        fid = given.get("command") == "fid"
        return cls(
            results_dir=Path(given.get("results_dir") or "results"),
            work_dir=Path(given.get("work_dir") or "outputs"),
            data_dir=given.get("data_dir"),
            resume=bool(given.get("resume")),
            checkpoint=given.get("checkpoint"),
            device=given.get("device"),
            launch={k: given[k] for k in LAUNCH_KEYS if given.get(k) is not None},
            num_samples=given.get("num_samples", 50_000),
            temperature=given.get("temperature", 1.0),
            fid_seed=given.get("seed", 0) if fid else 0,
            feature_extractor=given.get("feature_extractor"),
        )


@dataclass(frozen=True)
class SweepOptions:
    """Rows x seeds (``run-tables``). ``profile``; ``overrides``: ``--set`` entries for every
    row; ``dataset``: replaces the data set of the MNIST-like rows; ``seeds``: train seeds
    0..K-1 (None: the config's seed); ``steps``: every row trains exactly N steps;
    ``budget_minutes``: a time budget made one step count; ``force``: rerun rows already
    measured; ``run``: each row's `RunOptions`; ``launcher`` (``local`` or ``slurm``) and the
    rest: the rows as jobs (`bench.experiments.launcher`; None: in this process)."""

    profile: str = "paper"
    overrides: tuple[str, ...] = ()
    dataset: str | None = None
    seeds: int | None = None
    steps: int | None = None
    budget_minutes: float | None = None
    force: bool = False
    run: RunOptions = RunOptions()
    launcher: str | None = None
    max_parallel: int | None = None
    gpus_per_job: int | None = None
    cpus_per_job: int | None = None
    slurm_partition: str | None = None
    slurm_time: int | None = None
    slurm_option: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SweepOptions:
        given = vars(args)
        return cls(
            profile=args.profile,
            overrides=tuple(given.get("set") or ()),
            dataset=given.get("dataset"),
            seeds=given.get("seeds"),
            steps=given.get("steps"),
            budget_minutes=given.get("budget_minutes"),
            force=bool(given.get("force")),
            run=RunOptions.from_args(args),
            launcher=given.get("launcher"),
            max_parallel=given.get("max_parallel"),
            gpus_per_job=given.get("gpus_per_job"),
            cpus_per_job=given.get("cpus_per_job"),
            slurm_partition=given.get("slurm_partition"),
            slurm_time=given.get("slurm_time"),
            slurm_option=tuple(given.get("slurm_option") or ()),
        )
