"""Equal budgets and seeds for a run of several rows (`run-tables`, `fit`, `compare`).

Every row of one run trains the same number of optimizer steps (`bench.protocol`): ``--steps N``
says it, or ``--budget-minutes M`` becomes one such N before anything trains, by timing a few
training steps of every row and taking the largest N whose training fits half the budget for all
rows and seeds together. ``--seeds K`` trains each row with seeds 0..K-1, one record per seed.
"""

from __future__ import annotations

from pathlib import Path

from bench.config import load_config
from bench.protocol import budget_overrides, steps_for_budget
from bench.schema import RowConfig

TIMED_STEPS = 3  # training steps timed per row to turn a time budget into a step count


def run_overrides(
    overrides: list[str], budget_steps: int | None = None, seed: int | None = None
) -> list[str]:
    """``overrides`` (the user's ``--set``) with the equal-budget entries and the seed."""
    out = list(overrides)
    if budget_steps is not None:
        out += budget_overrides(budget_steps)
    if seed is not None:
        out.append(f"seed={seed}")
    return out


def seconds_per_step(config: RowConfig, data_dir: str | None, device: str) -> float:
    """Median seconds of one training step of the row (`time_train_step`, batch of the row)."""
    from bench.evaluators.timing import time_train_step
    from bench.experiments.row import build

    _, module = build(config, data_dir)
    timing = time_train_step(module, config.data.batch_size, device, runs=TIMED_STEPS)
    return timing.median_ms / 1e3


def steps_within(
    configs: list[RowConfig], minutes: float, seeds: int, data_dir: str | None, device: str
) -> int:
    """The one step count all ``configs`` train within ``minutes`` (module docstring), capped
    by the smallest positive ``trainer.max_steps`` of the rows (a profile's own length, e.g.
    the demo's 300 steps)."""
    from datamodules import DataFileError

    times = {}
    for config in configs:
        try:
            times[config.row] = seconds_per_step(config, data_dir, device)
        except DataFileError:  # the row will not run either; run-tables says why
            print(f"  {config.row}: not timed ({config.dataset} data not available)")
            continue
        except (AttributeError, NotImplementedError):  # no random-batch step (a DFM generator)
            print(f"  {config.row}: not timed (its task has no timing step); trains N too")
            continue
        print(f"  {config.row}: {times[config.row] * 1e3:.0f} ms per training step")
    if not times:
        return 1
    steps = steps_for_budget(minutes * 60, times, seeds)
    caps = [c.trainer.max_steps for c in configs if c.trainer.max_steps > 0]
    if caps and min(caps) < steps:
        steps = min(caps)
    return steps


def load_budgeted(
    path: Path, profile: str, overrides: list[str], budget_steps: int | None, seed: int | None
) -> RowConfig:
    """A row's validated config under the equal-budget rules and the seed."""
    return load_config(path, profile, run_overrides(overrides, budget_steps, seed))
