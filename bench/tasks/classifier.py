"""`ClassifierTask`: trains a `models.classifiers.CLASSIFIERS` network with cross-entropy and
torchmetrics accuracy (the classification tables). Augmentation as in i-ConvNet's training:
random horizontal flips and random translations of up to 2 pixels."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from bench.tasks.base import Task
from models.classifiers import CLASSIFIERS


def augment(x: torch.Tensor, shift: int = 2) -> torch.Tensor:
    """Per-example horizontal flips and one random translation (zero fill) per batch."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    dy, dx = torch.randint(-shift, shift + 1, (2,)).tolist()
    padded = F.pad(x, (shift, shift, shift, shift))
    h, w = x.shape[2:]
    return padded[:, :, shift + dy : shift + dy + h, shift + dx : shift + dx + w]


class ClassifierTask(Task):
    """Cross-entropy training; logs train/loss, val/acc, test/acc; records accuracy in percent.

    Args:
        model: a `models.classifiers.CLASSIFIERS` name; ``model_kwargs`` go to its constructor.
        num_classes: output classes.
        augment: random flips and 2-pixel translations during training.
        **optim: `Task`'s optimizer, schedule and seed.
    """

    monitor, mode = "val/acc", "max"

    def __init__(
        self,
        model: str,
        model_kwargs: dict | None = None,
        num_classes: int = 10,
        augment: bool = True,
        **optim,
    ):
        super().__init__(**optim)
        if model not in CLASSIFIERS:
            raise ValueError(f"unknown classifier {model!r}; see models.classifiers.CLASSIFIERS")
        self.save_hyperparameters()
        self.net = CLASSIFIERS[model](**(model_kwargs or {}))
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.hparams.augment:
            x = augment(x)
        loss = F.cross_entropy(self.net(x), y)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_acc.update(self.net(x), y)
        self.log("val/acc", self.val_acc, prog_bar=True, batch_size=len(x))

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.test_acc.update(self.net(x), y)
        self.log("test/acc", self.test_acc, batch_size=len(x))

    def record_metrics(self, results: dict[str, float], context: dict[str, Any]) -> dict:
        return {"accuracy": 100.0 * float(results["test/acc"]), "params_m": self.params_m()}
