"""`DFMModule`: trains the Deep Fourier Machines generator (one Fourier Net per image predicted
from a latent) by mean squared error + lambda ||z||^2, with Adam and a linear learning-rate decay
(CIFAR-10: 1e-3 -> 1e-7). Each validation epoch saves samples, latent interpolations and
reconstructions as PNG grids; `eval_flow()` exposes the generator to the FID evaluator."""

from __future__ import annotations

import math
from pathlib import Path

import pytorch_lightning as pl
import torch
import torchvision

from models.flows.dfm import FourierGenerator
from models.registry import count_params


class DFMModule(pl.LightningModule):
    def __init__(
        self,
        model: str = "fourier_generator",
        model_kwargs: dict | None = None,
        lr: float = 1e-3,
        final_lr: float | None = None,
        total_steps: int | None = None,
        num_samples: int = 16,
        sample_dir: str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if model != "fourier_generator":
            raise ValueError(f"DFMModule trains 'fourier_generator', got {model!r}")
        self.save_hyperparameters()
        self.gen = FourierGenerator(**(model_kwargs or {}))

    def params_m(self) -> float:
        return count_params(self.gen) / 1e6

    def eval_flow(self) -> FourierGenerator:
        return self.gen

    def _split(self, batch):
        images, index = batch[0], batch[2] if len(batch) > 2 else None
        return images, index

    def training_step(self, batch, batch_idx):
        images, index = self._split(batch)
        z = self.gen.encode(images, index)
        mse = (self.gen.decode(z) - (images / 127.5 - 1)).pow(2).mean()
        loss = mse + self.gen.latent_weight * z.pow(2).sum(1).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        self.log("train/mse", mse, prog_bar=True, batch_size=len(images))
        return loss

    def _reconstruction_mse(self, batch, name: str) -> None:
        images, _ = self._split(batch)
        if self.gen.encoder is None:
            return  # per-image latents exist for training images only
        recon = self.gen.decode(self.gen.encode(images))
        mse = (recon - (images / 127.5 - 1)).pow(2).mean()
        self.log(name, mse, batch_size=len(images))

    def validation_step(self, batch, batch_idx):
        self._reconstruction_mse(batch, "val/mse")

    def test_step(self, batch, batch_idx):
        self._reconstruction_mse(batch, "test/mse")

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
        split = "val" if self.gen.encoder is not None else "train"
        dataset = datamodule.dataset(split)
        n = min(n, len(dataset))
        images = torch.stack([dataset[i][0] for i in range(n)]).to(self.device)
        index = torch.arange(n, device=self.device)
        recon = self.gen.generate(self.gen.encode(images, index))
        return torch.cat([images, recon]) / 255

    @torch.no_grad()
    def save_figures(self) -> Path:
        """samples, an interpolation between two random latents and reconstructions (originals
        above), saved under samples/."""
        n = self.hparams.num_samples
        root = Path(self.hparams.sample_dir or self.trainer.default_root_dir) / "samples"
        root.mkdir(parents=True, exist_ok=True)
        samples = self.gen.sample(n) / 255
        latent = self.gen.decoder_a[0].in_features
        z0, z1 = torch.randn(2, latent, device=self.device)
        path = self.gen.interpolate(z0, z1, steps=8) / 255
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

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.gen.parameters(), lr=self.hparams.lr)
        final, total = self.hparams.final_lr, self.hparams.total_steps
        if final is None or not total:
            return optimizer
        ratio = final / self.hparams.lr

        def factor(step: int) -> float:
            return 1.0 + (ratio - 1.0) * min(1.0, step / total)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
