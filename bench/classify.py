"""`ClassifierModule`: trains a `models.classifiers.CLASSIFIERS` network with cross-entropy and
torchmetrics accuracy (the classification tables). Augmentation as in i-ConvNet's training:
random horizontal flips and random translations of up to 2 pixels."""

from __future__ import annotations

from functools import partial

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from bench.module import schedule_factor
from models.classifiers import CLASSIFIERS
from models.registry import count_params


def augment(x: torch.Tensor, shift: int = 2) -> torch.Tensor:
    """Per-example horizontal flips and one random translation (zero fill) per batch."""
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    dy, dx = torch.randint(-shift, shift + 1, (2,)).tolist()
    padded = F.pad(x, (shift, shift, shift, shift))
    h, w = x.shape[2:]
    return padded[:, :, shift + dy : shift + dy + h, shift + dx : shift + dx + w]


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training; logs train/loss, val/acc, test/acc (percent)."""

    def __init__(
        self,
        model: str,
        model_kwargs: dict | None = None,
        num_classes: int = 10,
        lr: float = 0.1,
        optimizer: str = "sgd",
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        warmup_steps: int = 0,
        schedule: str = "cosine",
        total_steps: int | None = None,
        augment: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        if model not in CLASSIFIERS:
            raise ValueError(f"unknown classifier {model!r}; see models.classifiers.CLASSIFIERS")
        self.save_hyperparameters()
        self.net = CLASSIFIERS[model](**(model_kwargs or {}))
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def params_m(self) -> float:
        return count_params(self.net) / 1e6

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

    def configure_optimizers(self):
        hp = self.hparams
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                self.net.parameters(),
                lr=hp.lr,
                momentum=hp.momentum,
                weight_decay=hp.weight_decay,
                nesterov=True,
            )
        else:
            optimizer = torch.optim.Adam(
                self.net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay
            )
        factor = partial(
            schedule_factor,
            warmup=hp.warmup_steps,
            total=hp.total_steps,
            cosine=hp.schedule == "cosine",
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
