"""`DFMTask`: trains the Deep Fourier Machines generator (one Fourier Net per image predicted
from a latent) by

    loss = mean ||decode(z) - x||^2 + lambda mean ||z||^2,   x scaled to [-1, 1],

with the shared optimizer and schedule (CIFAR-10: Adam, linear decay 1e-3 -> 1e-7). Each
validation epoch saves samples, latent interpolations and reconstructions as PNG grids;
`eval_model()` exposes the generator to the FID evaluator (``evaluate.fid`` samples)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torchvision

from bench.evaluators.fid import requested_fid
from bench.tasks.base import Task
from models.generators.dfm import FourierGenerator


class DFMTask(Task):
    """Args:
    model: ``"fourier_generator"``; ``model_kwargs`` go to `FourierGenerator`.
    num_samples: the sample grid saved each validation epoch (0: none).
    **optim: `Task`'s optimizer, schedule, seed and sample_dir.
    """

    monitor, mode = "train/loss", "min"

    def __init__(
        self,
        model: str = "fourier_generator",
        model_kwargs: dict | None = None,
        num_samples: int = 16,
        **optim,
    ):
        super().__init__(**optim)
        if model != "fourier_generator":
            raise ValueError(f"DFMTask trains 'fourier_generator', got {model!r}")
        self.save_hyperparameters()
        self.net = FourierGenerator(**(model_kwargs or {}))

    @property
    def gen(self) -> FourierGenerator:
        return self.net

    def loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, mse) of a batch ``(images, labels[, index])``; ``index`` picks per-image
        latents when the generator has no encoder."""
        images, index = batch[0], batch[2] if len(batch) > 2 else None
        z = self.net.encode(images, index)
        mse = (self.net.decode(z) - (images / 127.5 - 1)).pow(2).mean()
        return mse + self.net.latent_weight * z.pow(2).sum(1).mean(), mse

    def training_step(self, batch, batch_idx):
        loss, mse = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch[0]))
        self.log("train/mse", mse, prog_bar=True, batch_size=len(batch[0]))
        return loss

    def _reconstruction_mse(self, batch, name: str) -> None:
        if self.net.encoder is None:
            return  # per-image latents exist for training images only
        images = batch[0]
        recon = self.net.decode(self.net.encode(images))
        mse = (recon - (images / 127.5 - 1)).pow(2).mean()
        self.log(name, mse, batch_size=len(images))

    def validation_step(self, batch, batch_idx):
        self._reconstruction_mse(batch, "val/mse")

    def test_step(self, batch, batch_idx):
        self._reconstruction_mse(batch, "test/mse")

    def record_metrics(self, results: dict[str, float], context: dict[str, Any]) -> dict:
        """Test MSE (training MSE for per-image latents, which have no test counterpart), and
        FID of ``evaluate.fid`` samples against the training split when asked."""
        mse = results.get("test/mse", context["fit_metrics"].get("train/mse"))
        metrics = {"mse": float(mse), "params_m": self.params_m()}
        metrics.update(requested_fid(self.eval_model(), context))
        return metrics

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking or not self.hparams.num_samples:
            return
        self.save_figures()

    @torch.no_grad()
    def reconstructions(self, n: int) -> torch.Tensor | None:
        """[2n, C, H, W] in [0, 1]: n images (validation with an encoder, else the first training
        images, whose latents are learned) above their reconstructions."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            return None
        split = "val" if self.net.encoder is not None else "train"
        dataset = datamodule.dataset(split)
        n = min(n, len(dataset))
        images = torch.stack([dataset[i][0] for i in range(n)]).to(self.device)
        index = torch.arange(n, device=self.device)
        recon = self.net.generate(self.net.encode(images, index))
        return torch.cat([images, recon]) / 255

    @torch.no_grad()
    def save_figures(self) -> Path:
        """samples, an interpolation between two random latents and reconstructions (originals
        above), saved under samples/."""
        n = self.hparams.num_samples
        root = Path(self.sample_dir or self.trainer.default_root_dir) / "samples"
        root.mkdir(parents=True, exist_ok=True)
        samples = self.net.sample(n) / 255
        latent = self.net.decoder_a[0].in_features
        z0, z1 = torch.randn(2, latent, device=self.device)
        path = self.net.interpolate(z0, z1, steps=8) / 255
        step = self.global_step
        torchvision.utils.save_image(
            samples, str(root / f"samples_{step:07d}.png"), nrow=int(math.sqrt(n))
        )
        torchvision.utils.save_image(path, str(root / f"interpolation_{step:07d}.png"), nrow=8)
        pairs = self.reconstructions(8)
        if pairs is not None:
            torchvision.utils.save_image(
                pairs, str(root / f"reconstructions_{step:07d}.png"), nrow=len(pairs) // 2
            )
        return root
