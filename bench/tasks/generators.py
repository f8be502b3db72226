"""The baselines of the Deep Fourier Machines FID table, one LightningModule per training
objective (``task:``; its registry: `bench.tasks.model_index`):

- `VAETask` (``task: vae``): minimises the negative ELBO (`models.generators.vae.VAE.loss`);
- `WAETask` (``task: wae``): WAE-MMD, 0.05 ||x - x'||^2 + lambda MMD_IMQ (`WAE.loss`);
- `GANTask` (``task: gan``): DCGAN's adversarial game with manual optimization, one Adam per
  network: a discriminator step on BCE(D(x), 1) + BCE(D(G(z)), 0), then a generator step on
  the non-saturating BCE(D(G(z)), 1) (Goodfellow et al. 2014, as DCGAN trains).

Shared protocol (`GeneratorTask`): headline metric FID of ``evaluate.fid`` samples against the
training split, through the same evaluator as the Fourier Net (`bench.evaluators.fid`); the
auto-encoders keep the checkpoint with the lowest validation loss, the GAN its last one (no
loss ranks GAN checkpoints); timing is ST (`time_sampling`: 100 samples) and one training step.
A sample grid is saved each training epoch under samples/.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
import torchvision

from bench.evaluators.fid import requested_fid
from bench.evaluators.timing import time_sampling
from bench.schema import EvaluateSection
from bench.tasks import TASK_SPECS, model_index
from bench.tasks.base import Task
from models.generators.vae import to_unit


class GeneratorTask(Task):
    """Args:
    model: a name in the objective's registry (`bench.tasks.model_index`); ``model_kwargs``
    go to its constructor.
    num_samples: the sample grid saved each training epoch (0: none).
    **optim: `Task`'s optimizer, schedule, seed and sample_dir.
    """

    objective: ClassVar[str]
    monitor, mode, timed = "val/loss", "min", True

    def __init__(
        self,
        model: str,
        model_kwargs: dict | None = None,
        num_samples: int = 64,
        **optim,
    ):
        super().__init__(**optim)
        family = model_index(self.objective)
        if model not in family:
            raise ValueError(
                f"task '{self.objective}' trains {sorted(family)}, got {model!r} "
                f"(see {TASK_SPECS[self.objective].models})"
            )
        self.save_hyperparameters()
        self.net = family[model](**(model_kwargs or {}))

    def timing_metrics(self, evaluate: EvaluateSection, device: str) -> dict[str, Any]:
        """ST of 100 samples (`bench.evaluators.timing.time_sampling`)."""
        return time_sampling(self.eval_model(), device, st_runs=evaluate.st_runs)

    def record_metrics(self, results: dict[str, float], context: dict[str, Any]) -> dict:
        """Test MSE of the reconstructions (auto-encoders), the parameter count, and FID of
        ``evaluate.fid`` samples against the training split when asked."""
        metrics: dict[str, float] = {"params_m": self.params_m()}
        if "test/mse" in results:
            metrics["mse"] = float(results["test/mse"])
        metrics.update(requested_fid(self.eval_model(), context))
        return metrics

    def on_train_epoch_end(self):
        if self.hparams.num_samples:
            self.save_samples()

    @torch.no_grad()
    def save_samples(self) -> Path:
        """A grid of ``num_samples`` samples, samples/samples_<step>.png."""
        n = self.hparams.num_samples
        root = Path(self.sample_dir or self.trainer.default_root_dir) / "samples"
        root.mkdir(parents=True, exist_ok=True)
        was_training = self.net.training
        self.net.eval()
        images = self.net.sample(n) / 255
        self.net.train(was_training)
        path = root / f"samples_{self.global_step:07d}.png"
        torchvision.utils.save_image(images, str(path), nrow=int(math.sqrt(n)))
        return path


class AutoencoderTask(GeneratorTask):
    """An auto-encoder whose net's ``loss(images)`` returns (loss, mse, penalty); logs
    ``<split>/loss``, ``<split>/mse`` and ``<split>/<penalty>``."""

    penalty: ClassVar[str]

    def training_loss(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.net.loss(batch[0])

    def _log_losses(self, batch, split: str) -> torch.Tensor:
        loss, mse, penalty = self.net.loss(batch[0])
        size = len(batch[0])
        self.log(f"{split}/loss", loss, prog_bar=True, batch_size=size)
        self.log(f"{split}/mse", mse, prog_bar=split == "train", batch_size=size)
        self.log(f"{split}/{self.penalty}", penalty, batch_size=size)
        return loss

    def training_step(self, batch, batch_idx):
        return self._log_losses(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._log_losses(batch, "val")

    def test_step(self, batch, batch_idx):
        self._log_losses(batch, "test")


class VAETask(AutoencoderTask):
    """VAE: minimises -ELBO (nats per image); logs the KL term as ``kl``."""

    objective, penalty = "vae", "kl"


class WAETask(AutoencoderTask):
    """WAE-MMD: minimises 0.05 ||x - x'||^2 + lambda MMD; logs the MMD as ``mmd``."""

    objective, penalty = "wae", "mmd"


class GANTask(GeneratorTask):
    """DCGAN's adversarial training (module docstring): two optimizers, manual optimization.
    Lightning counts an optimizer step as a global step, so one batch advances
    ``trainer.global_step`` by 2 (``max_steps`` and the schedule count both updates)."""

    objective = "gan"
    monitor = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False

    def configure_optimizers(self):
        """[discriminator, generator]: the configured optimizer and schedule for each."""
        entries = []
        for part in (self.net.discriminator, self.net.generator):
            optimizer = self.make_optimizer(part.parameters())
            scheduler = self.make_scheduler(optimizer)
            entries.append(
                {
                    "optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
                }
            )
        return entries

    def adversarial_step(self, images, opt_d, opt_g, backward) -> tuple[torch.Tensor, ...]:
        """One discriminator then one generator update on a batch of images (0..255);
        returns (discriminator loss, generator loss). ``backward(loss)`` runs the backward."""
        real = to_unit(images)
        z = torch.randn(len(images), self.net.num_dims, device=real.device, dtype=real.dtype)
        fake = self.net.decode(z)
        real_logits = self.net.discriminate(real)
        fake_logits = self.net.discriminate(fake.detach())
        loss_d = F.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        opt_d.zero_grad(set_to_none=True)
        backward(loss_d)
        opt_d.step()
        fooled = self.net.discriminate(fake)
        loss_g = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
        opt_g.zero_grad(set_to_none=True)
        backward(loss_g)
        opt_g.step()
        return loss_d.detach(), loss_g.detach()

    def training_step(self, batch, batch_idx):
        opt_d, opt_g = self.optimizers()
        loss_d, loss_g = self.adversarial_step(batch[0], opt_d, opt_g, self.manual_backward)
        for scheduler in self.lr_schedulers():
            scheduler.step()
        size = len(batch[0])
        self.log("train/loss_d", loss_d, prog_bar=True, batch_size=size)
        self.log("train/loss_g", loss_g, prog_bar=True, batch_size=size)

    def timing_step(self, batch, optimizers) -> None:
        self.adversarial_step(batch[0], *optimizers, torch.Tensor.backward)

    def test_step(self, batch, batch_idx):
        """Nothing to test on held-out images: the GAN is evaluated by FID."""
