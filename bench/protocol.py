"""The equal-budget protocol: what makes two records comparable, and the rules every row of an
equal-budget run (``--steps`` / ``--budget-minutes``, ``--seeds``) follows.

A comparison is only as good as its conditions. Two measured cells are ranked against each other
only when their records share `conditions` (profile, optimizer steps trained, batch size, data
set and the number of training examples actually loaded; the device too for timing columns).
A record of an equal-budget run carries ``budget_steps``, the step count every row of the run was
asked to train; a record whose ``steps`` fall short of it ended early (failure, non-finite loss,
a time limit) and is shown but never ranked.

Warm-up rule (`capped_warmup`): a recipe's learning-rate warm-up is capped at
``WARMUP_CAP`` of the step budget, the same rule for every row. Without it a short budget would
train some rows (Inverse-Flow Table 4's, which warm up over 5,000 steps as the SNF code does)
entirely inside their warm-up at a fraction of their learning rate, while rows without a warm-up
train at full rate.

This module imports nothing heavy (no torch): the report and the command line use it.
"""

from __future__ import annotations

import math
from typing import Any

WARMUP_CAP = 0.1  # fraction of the step budget a warm-up may take in an equal-budget run
WARMUP_RULE = (
    f"warm-up capped at {WARMUP_CAP:.0%} of the step budget in every row "
    "(recipes' longer warm-ups shortened to it)"
)

CONDITION_KEYS = ("profile", "steps", "batch_size", "dataset", "train_examples")


def record_seed(record: dict[str, Any]) -> int:
    """The seed a record was trained with (records older than the field: the default, 0)."""
    seed = record.get("seed", 0)
    return seed if isinstance(seed, int) else 0


def train_examples(record: dict[str, Any]) -> int | None:
    """Training examples the record's run actually loaded (its data provenance), if known."""
    examples = (record.get("data") or {}).get("examples") or {}
    count = examples.get("train") if isinstance(examples, dict) else None
    return count if isinstance(count, int) else None


def conditions(record: dict[str, Any], with_device: bool = False) -> tuple:
    """What must be equal for two records' trained metrics to be compared: (profile, steps,
    batch size, data set, training examples[, device])."""
    key = (
        record.get("profile"),
        record.get("steps"),
        record.get("batch_size"),
        record.get("dataset"),
        train_examples(record),
    )
    return (*key, record.get("device")) if with_device else key


def describe_conditions(key: tuple) -> str:
    """``demo profile, 1000 steps of batch 32, fashion_mnist (2000 training images)``; records
    older than ``batch_size`` read ``(batch size not recorded)``."""
    profile, steps, batch, dataset, examples = key[:5]
    of_batch = f" of batch {batch}" if batch is not None else " (batch size not recorded)"
    text = f"{profile} profile, {steps} steps{of_batch}, {dataset}"
    if examples:
        text += f" ({examples} training images)"
    if len(key) > 5:
        text += f", {key[5]}"
    return text


def ended_early(record: dict[str, Any]) -> bool:
    """Whether an equal-budget record trained fewer steps than its budget (never ranked)."""
    budget = record.get("budget_steps")
    steps = record.get("steps")
    return isinstance(budget, int) and (not isinstance(steps, int) or steps < budget)


def warmup_cap(budget_steps: int) -> int:
    """The longest warm-up a row may have in an equal-budget run of ``budget_steps`` steps."""
    return max(1, math.floor(WARMUP_CAP * budget_steps))


def capped_warmup(warmup_steps: int, budget_steps: int) -> int:
    """The warm-up of a row in an equal-budget run of ``budget_steps`` steps."""
    return min(warmup_steps, warmup_cap(budget_steps))


def steps_for_budget(seconds: float, step_seconds: dict[str, float], seeds: int = 1) -> int:
    """The one step count every row trains within a time budget: the largest N with
    sum over rows of N * (seconds per step) * seeds <= half the budget (the other half is left
    for validation, testing and timing). ``step_seconds``: each row's measured seconds per
    training step. At least 1."""
    per_step = sum(step_seconds.values()) * max(seeds, 1)
    if per_step <= 0:
        raise ValueError("step times must be positive")
    return max(1, math.floor(0.5 * seconds / per_step))


VALIDATIONS = 4  # an equal-budget run validates at every quarter of its steps


def validation_interval(budget_steps: int) -> int:
    """Steps between validations in an equal-budget run: every row is validated at the same
    steps (each quarter of the budget, the last at the budget's end), and the best of those
    checkpoints is tested."""
    return max(1, budget_steps // VALIDATIONS)


def budget_overrides(budget_steps: int) -> list[str]:
    """The ``--set`` entries that make a row train exactly ``budget_steps`` optimizer steps
    under the equal-budget rules (steps, not epochs or time; the warm-up cap)."""
    if budget_steps < 1:
        raise ValueError(f"the step budget must be at least 1, got {budget_steps}")
    return [
        f"trainer.max_steps={budget_steps}",
        "trainer.max_epochs=-1",
        "trainer.max_time=null",
        f"budget_steps={budget_steps}",
        f"module.warmup_max_steps={warmup_cap(budget_steps)}",
    ]
