"""`FlowTask`: trains any registry flow by negative log-likelihood, reported in bits/dim.

Loss = mean over the batch of (-log p(x) + auxiliary losses) / (D ln 2), where the auxiliary
losses are whatever the model's layers report through ``Flow.auxiliary_loss()`` (SNF's
reconstruction loss): a hook on the model, no special case here.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics import MeanMetric

from bench.evaluators.timing import time_flow
from bench.schema import EvaluateSection
from bench.tasks.base import Task
from models.core import Flow
from models.registry import MODELS

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss is NaN or Inf."""


class FlowTask(Task):
    """Train a `models.registry.MODELS` flow by NLL. Logs train/bpd, val/bpd, test/bpd and
    test/nll (nats per image); optional EMA of the weights for evaluation; a grid of samples
    each validation epoch.

    Args:
        model: a `models.registry.MODELS` name; ``model_kwargs`` go to its constructor.
        ema_decay: keep an exponential moving average of the weights and evaluate it.
        num_samples, temperature: the sample grid drawn each validation epoch (0: none).
        **optim: `Task`'s optimizer, schedule, seed and sample_dir.
    """

    monitor, mode, timed, density = "val/bpd", "min", True, True

    def __init__(
        self,
        model: str,
        model_kwargs: dict | None = None,
        ema_decay: float | None = None,
        num_samples: int = 16,
        temperature: float = 1.0,
        **optim,
    ):
        super().__init__(**optim)
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; see models.registry.MODELS")
        self.save_hyperparameters()
        self.net: Flow = MODELS[model](**(model_kwargs or {}))
        self.ema: AveragedModel | None = None
        if ema_decay:
            fn = get_ema_multi_avg_fn(ema_decay)
            self.ema = AveragedModel(self.net, multi_avg_fn=fn, use_buffers=True)
            self.ema.requires_grad_(False)
        self.val_bpd, self.test_bpd = MeanMetric(), MeanMetric()

    @property
    def flow(self) -> Flow:
        return self.net

    @property
    def num_dims(self) -> int:
        return self.net.num_dims

    def eval_model(self) -> Flow:
        return self.ema.module if self.ema is not None else self.net

    def timing_metrics(self, evaluate: EvaluateSection, device: str) -> dict[str, Any]:
        """`bench.evaluators.timing.time_flow` (ST, FT, per-sample ST) of the evaluated flow."""
        return time_flow(
            self.eval_model(),
            device,
            st_runs=evaluate.st_runs,
            ft_runs=evaluate.ft_runs,
            per_sample_calls=evaluate.per_sample_calls,
        )

    def on_train_batch_start(self, batch, batch_idx):
        """Reseed from (seed, step, rank): the dequantization noise of every step is then fixed,
        so a run resumed from a checkpoint repeats exactly what an uninterrupted run does."""
        torch.manual_seed(self.seed * 1_000_003 + self.global_step * 7919 + self.global_rank)

    def training_loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, bpd) of a batch: mean (-log p(x) + auxiliary losses) / (D ln 2), and the
        batch's mean BPD without the auxiliary losses."""
        x, _ = batch
        return self.net.training_loss(x)

    def training_step(self, batch, batch_idx):
        loss, bpd = self.training_loss(batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at step {self.global_step} of "
                f"{self.hparams.model}; stopping. {self.saved_checkpoint_note()}; lower the "
                "learning rate or add warm-up / gradient clipping."
            )
        self.log("train/bpd", bpd, prog_bar=True, batch_size=len(batch[0]))
        self.log("train/loss", loss, batch_size=len(batch[0]))
        return loss

    def saved_checkpoint_note(self) -> str:
        """Where the last good weights are, as far as a checkpoint on disk says."""
        callbacks = self.trainer.callbacks if self._trainer is not None else []
        for callback in callbacks:  # Lightning's ModelCheckpoint or the suite's SaveLastStep
            last = getattr(callback, "last_model_path", "") or getattr(callback, "path", "")
            if last and Path(last).is_file():
                return f"The last good checkpoint is kept ({last})"
        return "No checkpoint was saved before this step"

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.ema is not None:
            self.ema.update_parameters(self.net)

    def _eval_bpd(self, batch) -> torch.Tensor:
        x, _ = batch
        return self.eval_model().bpd(x)

    def validation_step(self, batch, batch_idx):
        bpd = self._eval_bpd(batch)
        self.val_bpd.update(bpd)
        self.log("val/bpd", self.val_bpd, prog_bar=True, batch_size=len(bpd))

    def test_step(self, batch, batch_idx):
        bpd = self._eval_bpd(batch)
        self.test_bpd.update(bpd)
        self.log("test/bpd", self.test_bpd, batch_size=len(bpd))

    def on_test_epoch_end(self):
        nll = self.test_bpd.compute() * self.num_dims * math.log(2)
        self.log("test/nll", nll)

    def record_metrics(self, results: dict[str, float], context: dict[str, Any]) -> dict:
        metrics = {
            "bpd": float(results["test/bpd"]),
            "nll": float(results["test/nll"]),
            "params_m": self.params_m(),
        }
        if self.logdet_estimated:  # residual flows: the test BPD is a stochastic estimate
            metrics["logdet_estimated"] = 1
        return metrics

    @property
    def logdet_estimated(self) -> bool:
        """Whether a layer of the model estimates its logdet (``logdet_estimated``)."""
        return any(getattr(m, "logdet_estimated", False) for m in self.net.modules())

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking or not self.hparams.num_samples:
            return
        self.log_samples()

    @torch.no_grad()
    def log_samples(self) -> Path | None:
        """Draw a grid of samples; log it to W&B when active, always save it as a PNG."""
        samples = self.eval_model().sample(self.hparams.num_samples, self.hparams.temperature)
        grid = torchvision.utils.make_grid(samples / 255.0, nrow=int(math.sqrt(len(samples))))
        logger = self.logger
        if logger is not None and hasattr(logger, "log_image"):
            try:
                logger.log_image("samples", [grid], step=self.global_step)
            except Exception as err:  # a logging failure must never stop training
                log.warning("could not log samples: %s", err)
        root = self.sample_dir or self.trainer.default_root_dir
        path = Path(root) / "samples" / f"step{self.global_step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        torchvision.utils.save_image(grid, str(path))
        return path
