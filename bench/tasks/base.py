"""`Task`: what every LightningModule of the suite shares, and the protocol the commands use.

A task wraps one registry network (``self.net``) and declares, as class attributes, what the
checkpoint callback monitors (``monitor``, ``mode``); its headline metric (the number
`run-tables` prints and a table cell needs) is its `bench.tasks.TASK_SPECS` entry's.
`Task.record_metrics` turns the test pass into the record's metrics. The optimizer and
learning-rate schedule are the same for every task:

    lr(step) = lr * w(step) * s(step),  w = min(1, (step + 1) / warmup_steps),
    s = 1 (constant) | (1 + cos(pi p)) / 2 (cosine) | 1 + (final_lr / lr - 1) p (linear),
    p = clamp((step - warmup_steps) / (total_steps - warmup_steps), 0, 1);
    exponential: lr(step) = lr * w(step) during the warm-up, then lr * gamma^n(step), n the
    number of decay boundaries j T (j >= 1, T = decay_every epochs or steps) with
    warmup_steps <= j T <= step.

The exponential schedule is what the SNF code base and its forks (Inverse-Flow, FInC Flow) do:
their warm-up overwrites the lr batch by batch, and torch's ExponentialLR (T = 1 epoch) or
StepLR (T = step_size epochs), stepped at the end of every epoch, multiplies the lr it finds by
gamma. Decays that fall inside the warm-up are overwritten and lost, so the first epoch after
the warm-up already runs at lr gamma (ExponentialLR). ``warmup_epochs`` and epoch-counted
decays become steps through ``steps_per_epoch`` (full batches per epoch).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from pydantic import ValidationError
from torch import nn

from bench.schema import EvaluateSection, OptimSection, rule_broken
from models.registry import count_params

OPTIMIZERS = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax, "sgd": torch.optim.SGD}


def schedule_factor(
    step: int,
    warmup: int,
    total: int | None,
    schedule: str = "constant",
    final_ratio: float = 0.0,
    gamma: float = 1.0,
    period: int = 1,
) -> float:
    """The LR multiplier at ``step`` (module docstring); ``final_ratio`` = final_lr / lr;
    ``gamma`` and ``period`` (in steps): the exponential schedule."""
    scale = min(1.0, (step + 1) / warmup) if warmup else 1.0
    if schedule == "exponential":
        if step < warmup:
            return scale
        lost = (warmup - 1) // period if warmup else 0  # decays the warm-up overwrote
        return gamma ** (step // period - lost)
    if schedule != "constant" and total:
        progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
        if schedule == "cosine":
            scale *= 0.5 * (1 + math.cos(math.pi * progress))
        else:
            scale *= 1.0 + (final_ratio - 1.0) * progress
    return scale


def check_optim_options(**options: Any) -> None:
    """`OptimSection`'s rules (types, bounds, the keys a schedule needs) for a Task built
    directly; a ``ValueError`` naming each problem in one line."""
    try:
        OptimSection(**options)
    except ValidationError as err:
        problems = [
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"] else rule_broken(e)
            for e in err.errors()
        ]
        raise ValueError("; ".join(problems)) from None


class Task(pl.LightningModule):
    """Base of the suite's LightningModules. Subclasses build ``self.net`` and set:

    Args:
        lr, optimizer, weight_decay, momentum: the optimizer (`OPTIMIZERS`).
        warmup_steps, warmup_epochs, warmup_max_steps (an equal-budget run's cap), schedule,
        final_lr, gamma, decay_every, decay_unit,
        total_steps, steps_per_epoch: the schedule (module docstring).
        betas: Adam's and Adamax's (beta1, beta2).
        seed: seeds what the task draws itself (the flow's dequantization noise).
        sample_dir: where figures drawn during training go (default: the trainer's root).

    Attributes:
        monitor: the logged metric the best checkpoint is chosen by; ``None`` where no logged
            number ranks checkpoints (a GAN): the last one is tested.
        mode: ``"min"`` or ``"max"`` for ``monitor``.
        timed: whether `python -m bench time` and the timing callback apply: the task then
            implements `timing_metrics` (flows: ST and FT; generators: ST).
        density: whether the net has a density, so `python -m bench test` measures test BPD.
    """

    monitor: ClassVar[str | None]
    mode: ClassVar[str] = "min"
    timed: ClassVar[bool] = False
    density: ClassVar[bool] = False
    net: nn.Module

    def __init__(
        self,
        lr: float = 1e-3,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        betas: tuple[float, float] | list[float] = (0.9, 0.999),
        warmup_steps: int = 0,
        warmup_epochs: float = 0.0,
        warmup_max_steps: int | None = None,
        schedule: str = "constant",
        final_lr: float | None = None,
        gamma: float | None = None,
        decay_every: int = 1,
        decay_unit: str = "epoch",
        total_steps: int | None = None,
        steps_per_epoch: int | None = None,
        seed: int = 0,
        sample_dir: str | None = None,
    ):
        super().__init__()
        # The rules between options live in the config schema (one home; `bench config`
        # applies them too); a Task built directly is held to the same ones.
        check_optim_options(
            lr=lr,
            optimizer=optimizer,
            weight_decay=weight_decay,
            momentum=momentum,
            betas=list(betas),
            warmup_steps=warmup_steps,
            warmup_epochs=warmup_epochs,
            warmup_max_steps=warmup_max_steps,
            schedule=schedule,
            final_lr=final_lr,
            gamma=gamma,
            decay_every=decay_every,
            decay_unit=decay_unit,
        )
        per_epoch = warmup_epochs or (schedule == "exponential" and decay_unit == "epoch")
        if per_epoch and not steps_per_epoch:
            raise ValueError("module.warmup_epochs and epoch decays need steps_per_epoch")
        self.seed, self.sample_dir = seed, sample_dir
        epoch = steps_per_epoch or 1
        warmup = warmup_steps or round(warmup_epochs * epoch)
        if warmup_max_steps is not None:
            warmup = min(warmup, warmup_max_steps)
        self.optim = dict(
            lr=lr,
            optimizer=optimizer,
            weight_decay=weight_decay,
            momentum=momentum,
            betas=tuple(betas),
            warmup_steps=warmup,
            schedule=schedule,
            final_lr=final_lr,
            gamma=gamma,
            decay_period=decay_every * (epoch if decay_unit == "epoch" else 1),
            total_steps=total_steps,
        )

    def params_m(self) -> float:
        """Parameters that influence the output, in millions (`models.registry.count_params`)."""
        return count_params(self.net) / 1e6

    def eval_model(self) -> nn.Module:
        """The network evaluated (timing, FID, sampling): ``self.net`` unless overridden."""
        return self.net

    def training_loss(self, batch) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The loss a training step minimises (first element when a tuple), without logging:
        what `bench.evaluators.timing.time_train_step` times."""
        raise NotImplementedError

    def timing_step(self, batch, optimizers: list[torch.optim.Optimizer]) -> None:
        """One training step as fit takes it, on ``batch`` with the task's ``optimizers``:
        what `bench.evaluators.timing.time_train_step` times. Default: zero_grad,
        `training_loss`, backward, step."""
        optimizer = optimizers[0]
        optimizer.zero_grad(set_to_none=True)
        loss = self.training_loss(batch)
        (loss[0] if isinstance(loss, tuple) else loss).backward()
        optimizer.step()

    def timing_metrics(self, evaluate: EvaluateSection, device: str) -> dict[str, Any]:
        """The timing protocol of a ``timed`` task with the row's ``evaluate`` settings: metrics
        (``st_ms`` ...) and ``device``."""
        raise NotImplementedError

    def record_metrics(self, results: dict[str, float], context: dict[str, Any]) -> dict:
        """The record's metrics from the test pass's ``results`` (``trainer.test``'s dict);
        ``context`` holds ``datamodule``, ``device`` and the row ``config``."""
        raise NotImplementedError

    def make_optimizer(self, parameters) -> torch.optim.Optimizer:
        """The configured optimizer over ``parameters``."""
        hp = self.optim
        options: dict[str, Any] = {"lr": hp["lr"], "weight_decay": hp["weight_decay"]}
        if hp["optimizer"] == "sgd":
            options.update(momentum=hp["momentum"], nesterov=hp["momentum"] > 0)
        else:
            options["betas"] = hp["betas"]
        return OPTIMIZERS[hp["optimizer"]](parameters, **options)

    def make_scheduler(self, optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        """The configured schedule (module docstring), stepped once per training step."""
        hp = self.optim
        factor = partial(
            schedule_factor,
            warmup=hp["warmup_steps"],
            total=hp["total_steps"],
            schedule=hp["schedule"],
            final_ratio=(hp["final_lr"] or 0.0) / hp["lr"],
            gamma=hp["gamma"] or 1.0,
            period=hp["decay_period"],
        )
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def configure_optimizers(self):
        optimizer = self.make_optimizer(self.net.parameters())
        scheduler = self.make_scheduler(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
