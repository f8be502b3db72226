"""The learning-rate schedules of `bench.tasks.base.Task`, checked step by step against the
training loop of the SNF code base and its forks (Inverse-Flow, FInC Flow), written out here:
a linear warm-up that overwrites the lr batch by batch for ``warmup_epochs`` epochs, and torch's
ExponentialLR / StepLR stepped once at the end of every epoch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.config import CONFIG_DIR, load_config
from bench.experiments.row import steps_per_epoch
from bench.tasks.base import Task, schedule_factor


def authors_lrs(lr, epochs, batches, warmup_epochs, make_scheduler) -> list[float]:
    """The lr of every batch in the authors' loop (their Experiment.warmup_lr + scheduler)."""
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make_scheduler(optimizer)
    seen = []
    for epoch in range(1, epochs + 1):
        for batch in range(batches):
            if epoch <= warmup_epochs:
                done = batch + 1 + (epoch - 1) * batches  # batches seen, this one included
                for group in optimizer.param_groups:
                    group["lr"] = lr * done / (warmup_epochs * batches)
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
        scheduler.step()
    return seen


def our_lrs(steps: int, **module) -> list[float]:
    task = Task(**module)
    task.net = nn.Linear(1, 1)
    scheduler = task.configure_optimizers()["lr_scheduler"]["scheduler"]
    seen = []
    for _ in range(steps):
        seen.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return seen


def test_exponential_per_epoch_after_a_warm_up_matches_the_finc_loop():
    # FInC Flow: Adam 1e-3, warm-up 10 epochs, ExponentialLR(gamma 0.99) per epoch (scaled down)
    theirs = authors_lrs(1e-3, 6, 4, 2, lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9))
    ours = our_lrs(
        24, lr=1e-3, warmup_epochs=2, schedule="exponential", gamma=0.9, steps_per_epoch=4
    )
    assert ours == pytest.approx(theirs, rel=1e-12)
    assert ours[8] == pytest.approx(1e-3 * 0.9)  # the decay inside the warm-up is lost


def test_exponential_every_k_epochs_matches_step_lr():
    # the Inverse-Flow paper: lr / 10 every 25 epochs on CIFAR-10 (here every 2 of 7 epochs)
    theirs = authors_lrs(1e-3, 7, 3, 1, lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.1))
    ours = our_lrs(
        21,
        lr=1e-3,
        warmup_epochs=1,
        schedule="exponential",
        gamma=0.1,
        decay_every=2,
        steps_per_epoch=3,
    )
    assert ours == pytest.approx(theirs, rel=1e-12)


def test_exponential_per_step_and_the_factor_itself():
    assert [schedule_factor(t, 0, None, "exponential", gamma=0.5) for t in range(4)] == [
        1.0,
        0.5,
        0.25,
        0.125,
    ]
    lrs = our_lrs(5, lr=1.0, schedule="exponential", gamma=0.5, decay_unit="step")
    assert lrs == pytest.approx([1.0, 0.5, 0.25, 0.125, 0.0625])
    # warm-up over 4 steps, decay every step: the decays at steps 1-3 are overwritten
    assert schedule_factor(1, 4, None, "exponential", gamma=0.5) == 0.5  # ramp 2/4
    assert schedule_factor(4, 4, None, "exponential", gamma=0.5) == 0.5
    assert schedule_factor(6, 4, None, "exponential", gamma=0.5) == 0.5**3


@pytest.mark.parametrize(
    "module, message",
    [
        ({"schedule": "exponential"}, "needs module.gamma"),
        ({"warmup_steps": 5, "warmup_epochs": 1, "steps_per_epoch": 3}, "not both"),
        ({"warmup_epochs": 1}, "need steps_per_epoch"),
        ({"schedule": "exponential", "gamma": 0.9}, "need steps_per_epoch"),
        ({"schedule": "step"}, "schedule: Input should be"),
    ],
)
def test_bad_schedule_options_say_what_is_wrong(module, message):
    with pytest.raises(ValueError, match=message):
        Task(**module)


class _Data:
    batch_size = 100

    def dataset(self, split):
        return range(55_050)


def test_rows_recipes_in_epochs_resolve_to_steps():
    finc = load_config(CONFIG_DIR / "inverse_flow_t2" / "finc_mnist_k4.yaml").module
    assert (finc.warmup_epochs, finc.schedule, finc.gamma) == (10, "exponential", 0.99)
    inverse = load_config(CONFIG_DIR / "inverse_flow_t5" / "inverse_flow_cifar10_k4.yaml")
    module = inverse.module
    assert (module.warmup_epochs, module.gamma, module.decay_every) == (2, 0.1, 25)
    assert steps_per_epoch(inverse, _Data()) == 550  # full batches only
    demo = load_config(CONFIG_DIR / "inverse_flow_t2" / "finc_mnist_k4.yaml", "demo")
    assert demo.module.warmup_epochs == 0 and demo.module.warmup_steps == 20
    constant = load_config(CONFIG_DIR / "inverse_flow_t2" / "emerging_mnist_k4.yaml")
    assert steps_per_epoch(constant, None) is None  # no data read when nothing counts epochs


def test_build_turns_epochs_into_steps_of_the_row_data(tmp_path):
    from bench.experiments.row import build
    from tests.test_pipeline import write_config

    module = {"warmup_epochs": 2, "schedule": "exponential", "gamma": 0.5}
    config = load_config(write_config(tmp_path, module=module))
    datamodule, task = build(config, None)
    per_epoch = len(datamodule.dataset("train")) // 16  # batch 16, last partial batch dropped
    assert task.optim["warmup_steps"] == 2 * per_epoch
    assert task.optim["decay_period"] == per_epoch
