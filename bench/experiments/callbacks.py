"""Lightning callbacks of a row's fit: its training curve for the record, the timing protocol
at the end of fit, a checkpoint of the last step trained, checkpoints written atomically, and a
launcher job's stop at a step boundary when it is preempted."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from bench.devices import default_device
from bench.records import write_atomic
from bench.schema import RowConfig


def evaluation_device(trainer: pl.Trainer | None = None) -> str:
    """The trainer's CUDA device, else CUDA when there is one, else CPU."""
    if trainer is not None and trainer.strategy.root_device.type == "cuda":
        return str(trainer.strategy.root_device)
    return default_device()


class CurveRecorder(pl.Callback):
    """Keeps (step, train/bpd) and (step, val/bpd) so the record holds its training curve."""

    def __init__(self, every: int = 10):
        self.every = every
        self.curve: dict[str, list[float]] = {
            "train_step": [],
            "train_bpd": [],
            "val_step": [],
            "val_bpd": [],
        }

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        bpd = trainer.callback_metrics.get("train/bpd")
        if bpd is not None and trainer.global_step % self.every == 0:
            self.curve["train_step"].append(trainer.global_step)
            self.curve["train_bpd"].append(round(float(bpd), 5))

    def on_validation_epoch_end(self, trainer, module):
        """Every validation BPD; the sanity check before training (no step trained yet, on
        ``num_sanity_val_steps`` batches) is recorded as the starting point, step 0."""
        bpd = trainer.callback_metrics.get("val/bpd")
        if bpd is None or (trainer.sanity_checking and trainer.global_step > 0):
            return
        self.curve["val_step"].append(trainer.global_step)
        self.curve["val_bpd"].append(round(float(bpd), 5))

    def start_and_end(self) -> dict[str, float]:
        """``val_bpd_start`` (before training) and ``val_bpd_end`` (the last validation)."""
        values = self.curve["val_bpd"]
        if len(values) < 2 or self.curve["val_step"][0] != 0:
            return {}
        return {"val_bpd_start": values[0], "val_bpd_end": values[-1]}

    def state_dict(self) -> dict[str, Any]:
        return {"curve": self.curve}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curve = state_dict["curve"]


class TimingCallback(pl.Callback):
    """Runs the task's timing protocol (`bench.tasks.Task.timing_metrics`) on the trained model
    at the end of fit, logs st_ms (and a flow's ft_ms) to the logger and keeps them in
    ``metrics``."""

    def __init__(self, config: RowConfig):
        self.config = config
        self.metrics: dict[str, Any] = {}

    def on_fit_end(self, trainer, module):
        if not trainer.is_global_zero:
            return
        device = evaluation_device(trainer)
        self.metrics = module.timing_metrics(self.config.evaluate, device)
        self.metrics.pop("device")
        if trainer.logger is not None:
            numbers = {f"timing/{k}": v for k, v in self.metrics.items()}
            trainer.logger.log_metrics(numbers, step=trainer.global_step)
        module.to(trainer.strategy.root_device)


class SaveLastStep(Checkpoint):
    """Owns ``last.ckpt``: written after each validation (as Lightning's ``save_last``) and at
    the step where training stops, wherever it stops (max_steps or a time budget mid-epoch), so
    the last step trained is saved, resumable and testable. A mid-epoch stop is saved right
    after its step, before Lightning closes the epoch, so the checkpoint's position (epoch, and
    batches of it consumed: `datamodules.base.ResumableDataLoader`) is where an uninterrupted
    run continues.

    A `Checkpoint`, so Lightning runs it after the other callbacks and, listed after the
    ``ModelCheckpoint`` (which, monitoring a validation metric, scores each validation at its
    end: ``save_on_train_epoch_end`` off), after that one: the ``last.ckpt`` of a validation
    holds the best score that validation gave, and a resumed fit keeps ``best.ckpt`` as an
    uninterrupted one would. (A ``last.ckpt`` saved at the end of training, where a
    `PreemptionStop` runs first, is saved by that callback.)"""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.saved_step = -1

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # the epoch's end: saved after its validation, as Lightning's own last.ckpt
        max_steps = trainer.max_steps
        if trainer.should_stop or (max_steps > 0 and trainer.global_step >= max_steps):
            self.save_step(trainer)  # unless PreemptionStop saved it

    def on_validation_end(self, trainer, module):
        if not trainer.sanity_checking:
            self.save(trainer)

    def on_train_end(self, trainer, module):
        self.save_step(trainer)  # stopped another way (epochs, time)

    def save_step(self, trainer) -> None:
        """Save the step just trained, unless ``last.ckpt`` holds it already."""
        if self.saved_step != trainer.global_step:
            self.save(trainer)

    def save(self, trainer) -> None:
        trainer.save_checkpoint(str(self.path))
        self.saved_step = trainer.global_step


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes every checkpoint of a fit (``best.ckpt``, ``last.ckpt``) as records are written
    (`bench.records.write_atomic`): to a temporary file in the checkpoint's own folder, then
    renamed over it. A save cut short (a full disk, a kill) leaves the previous checkpoint, never
    a truncated one that a later ``--resume`` or ``test`` cannot read. (Lightning's own writer
    stages the file in the system temporary folder and copies it across file systems.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomic(Path(path), buffer.getvalue())


STEP_FILE = "step"  # in a launcher job's run directory: the step reached, for the progress lines


class Preempted(Exception):
    """A launcher job received the preemption signal; ``last.ckpt`` holds where it stopped."""


class PreemptionStop(pl.Callback):
    """A launcher job's fit (`bench.experiments.launcher.Preemption`): after a preemption
    signal, training stops at the next step boundary with ``last.ckpt`` saved there, and
    `Preempted` is raised, so the requeued job resumes exactly. The checkpoint is saved as
    `SaveLastStep` saves a stop mid-epoch, right after a step; the stop comes before the next
    step starts, unless a validation runs in between (or the step closed an epoch): then the
    validation completes (its curve point, best.ckpt) and the stop waits for the next step, or
    for the end of training. Also writes the step reached to ``<run dir>/step`` (at most every
    ``every_s`` seconds) for the launcher's progress lines."""

    def __init__(self, preemption, save_last: SaveLastStep, every_s: float = 10.0):
        self.preemption, self.save_last, self.every_s = preemption, save_last, every_s
        self.written_at = -float("inf")
        self.armed = False  # last.ckpt holds the step just trained, nothing ran since

    def on_train_start(self, trainer, module):
        self.preemption.training = True
        self.preemption.install()  # over Lightning's SIGTERM handler, which saves nothing

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if time.monotonic() - self.written_at >= self.every_s and trainer.is_global_zero:
            write_atomic(Path(trainer.default_root_dir) / STEP_FILE, str(trainer.global_step))
            self.written_at = time.monotonic()
        if self.preemption.signum is None:
            return
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # Lightning closes the epoch after this hook: stop after the next step
        self.save_last.save_step(trainer)
        self.armed = True

    def on_validation_start(self, trainer, module):
        self.armed = False  # a validation after the step saved: stop after the next step

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.armed:
            raise Preempted(f"preempted at step {trainer.global_step}")

    def on_train_end(self, trainer, module):
        self.preemption.training = False
        if self.preemption.signum is not None:
            self.save_last.save_step(trainer)  # SaveLastStep runs after this callback
            raise Preempted(f"preempted at step {trainer.global_step}, the end of training")

    def on_exception(self, trainer, module, exception):
        self.preemption.training = False
