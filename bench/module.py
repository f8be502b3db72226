"""`FlowModule`: trains any registry flow by negative log-likelihood, reported in bits/dim.

Loss = mean over the batch of (-log p(x) + auxiliary losses) / (D ln 2), where the auxiliary
losses are whatever the model's layers report through ``Flow.auxiliary_loss()`` (SNF's
reconstruction loss) - a hook on the model, no special case here.
"""

from __future__ import annotations

import logging
import math
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics import MeanMetric

from models.registry import MODELS, count_params

log = logging.getLogger(__name__)


def schedule_factor(step: int, warmup: int, total: int | None, cosine: bool) -> float:
    """LR multiplier: linear warm-up over ``warmup`` steps, then constant or cosine to 0."""
    scale = min(1.0, (step + 1) / warmup) if warmup else 1.0
    if cosine and total:
        progress = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
        scale *= 0.5 * (1 + math.cos(math.pi * progress))
    return scale


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss is NaN or Inf."""


class FlowModule(pl.LightningModule):
    """Train a `models.registry.MODELS` flow by NLL. Logs train/bpd, val/bpd, test/bpd and
    test/nll (nats per image); LR warm-up then a constant or cosine schedule; optional EMA of the
    weights for evaluation; a grid of samples each validation epoch."""

    def __init__(
        self,
        model: str,
        model_kwargs: dict | None = None,
        lr: float = 1e-3,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        schedule: str = "constant",
        total_steps: int | None = None,
        ema_decay: float | None = None,
        num_samples: int = 16,
        temperature: float = 1.0,
        sample_dir: str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; see models.registry.MODELS")
        if schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
        self.save_hyperparameters()
        self.flow = MODELS[model](**(model_kwargs or {}))
        self.ema: AveragedModel | None = None
        if ema_decay:
            fn = get_ema_multi_avg_fn(ema_decay)
            self.ema = AveragedModel(self.flow, multi_avg_fn=fn, use_buffers=True)
            self.ema.requires_grad_(False)
        self.val_bpd, self.test_bpd = MeanMetric(), MeanMetric()

    @property
    def num_dims(self) -> int:
        return self.flow.num_dims

    def params_m(self) -> float:
        return count_params(self.flow) / 1e6

    def eval_flow(self):
        return self.ema.module if self.ema is not None else self.flow

    def on_train_batch_start(self, batch, batch_idx):
        """Reseed from (seed, step, rank): the dequantization noise of every step is then fixed,
        so a run resumed from a checkpoint repeats exactly what an uninterrupted run does."""
        torch.manual_seed(
            self.hparams.seed * 1_000_003 + self.global_step * 7919 + self.global_rank
        )

    def training_step(self, batch, batch_idx):
        x, _ = batch
        log_prob = self.flow.log_prob(x)
        nats = -log_prob
        aux = self.flow.auxiliary_loss()
        if aux is not None:
            nats = nats + aux
        loss = nats.mean() / (self.num_dims * math.log(2))
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at step {self.global_step} of "
                f"{self.hparams.model}; stopping. The last good checkpoint is kept (last.ckpt); "
                "lower the learning rate or add warm-up / gradient clipping."
            )
        bpd = (-log_prob).mean() / (self.num_dims * math.log(2))
        self.log("train/bpd", bpd, prog_bar=True, batch_size=len(x))
        self.log("train/loss", loss, batch_size=len(x))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.ema is not None:
            self.ema.update_parameters(self.flow)

    def _eval_bpd(self, batch) -> torch.Tensor:
        x, _ = batch
        return self.eval_flow().bpd(x)

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

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking or not self.hparams.num_samples:
            return
        self.log_samples()

    @torch.no_grad()
    def log_samples(self) -> Path | None:
        """Draw a grid of samples; log it to W&B when active, always save it as a PNG."""
        import torchvision

        samples = self.eval_flow().sample(self.hparams.num_samples, self.hparams.temperature)
        grid = torchvision.utils.make_grid(samples / 255.0, nrow=int(math.sqrt(len(samples))))
        logger = self.logger
        if logger is not None and hasattr(logger, "log_image"):
            try:
                logger.log_image("samples", [grid], step=self.global_step)
            except Exception as err:  # a logging failure must never stop training
                log.warning("could not log samples: %s", err)
        root = self.hparams.sample_dir or self.trainer.default_root_dir
        path = Path(root) / "samples" / f"step{self.global_step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        torchvision.utils.save_image(grid, str(path))
        return path

    def configure_optimizers(self):
        params = self.flow.parameters()
        opt_cls = {"adam": torch.optim.Adam, "adamax": torch.optim.Adamax}[self.hparams.optimizer]
        optimizer = opt_cls(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        factor = partial(
            schedule_factor,
            warmup=self.hparams.warmup_steps,
            total=self.hparams.total_steps,
            cosine=self.hparams.schedule == "cosine",
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
