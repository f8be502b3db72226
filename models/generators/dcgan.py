"""DCGAN (Radford, Metz & Chintala 2016 [15]) at CIFAR-10's 32x32, the baseline of the Deep
Fourier Machines FID table (thesis Table 5.2).

The paper's rules: no pooling or fully connected hidden layers, strided (transposed) 4x4
convolutions, batch norm in both nets except the generator's output and the discriminator's
input layer, ReLU in the generator with tanh at its output, leaky ReLU (slope 0.2) in the
discriminator, weights drawn from N(0, 0.02^2). At image size s = 4 x 2^k and base width w
(the common 32x32 setup: k = 3, w = 64, latent 100):

    generator:     z [B, latent, 1, 1] -> transposed conv 4x4 (stride 1) to 2^k w x 4 x 4, then
                   k transposed convs 4x4 stride 2 halving the width (2^(k-1) w, ..., 2w), the
                   last to C channels with tanh: [B, C, s, s] in (-1, 1);
    discriminator: x in [-1, 1] -> k convs 4x4 stride 2 (widths w, 2w, ..., 2^(k-1) w), then a
                   4x4 conv (stride 1, no padding) to one logit per image.

`dcgan_cifar10` (w = 64, latent 100): generator 3,448,576 parameters, discriminator 663,296.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.generators.vae import to_pixels, to_unit


def _levels(size: int) -> int:
    """k with size = 4 x 2^k (k >= 1)."""
    k = round(math.log2(size / 4)) if size >= 8 else 0
    if size < 8 or 4 * 2**k != size:
        raise ValueError(
            f"DCGAN image size must be 4 x 2^k with k >= 1 (8, 16, 32, ...), got {size}"
        )
    return k


def dcgan_generator(latent: int, channels: int, width: int, size: int) -> nn.Sequential:
    """z [B, latent, 1, 1] -> images [B, C, size, size] in (-1, 1) (module docstring)."""
    k = _levels(size)
    c = width * 2**k
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(latent, c, 4, 1, 0, bias=False),
        nn.BatchNorm2d(c),
        nn.ReLU(),
    ]
    for _ in range(k - 1):
        layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2)]
        layers.append(nn.ReLU())
        c //= 2
    return nn.Sequential(*layers, nn.ConvTranspose2d(c, channels, 4, 2, 1, bias=False), nn.Tanh())


def dcgan_discriminator(channels: int, width: int, size: int) -> nn.Sequential:
    """images [B, C, size, size] in [-1, 1] -> logits [B] (module docstring)."""
    k = _levels(size)
    layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
    c = width
    for _ in range(k - 1):
        layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c)]
        layers.append(nn.LeakyReLU(0.2))
        c *= 2
    return nn.Sequential(*layers, nn.Conv2d(c, 1, 4, 1, 0, bias=False), nn.Flatten(0))


@torch.no_grad()
def dcgan_init(module: nn.Module) -> None:
    """Radford et al.: conv weights ~ N(0, 0.02^2), batch-norm scale ~ N(1, 0.02^2), shift 0."""
    for sub in module.modules():
        if isinstance(sub, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(sub.weight, 0.0, 0.02)
        elif isinstance(sub, nn.BatchNorm2d):
            nn.init.normal_(sub.weight, 1.0, 0.02)
            nn.init.zeros_(sub.bias)


class DCGAN(nn.Module):
    """The generator and discriminator of one GAN, with the generator interface the FID
    evaluator and the timing protocol use (``input_shape``, ``num_dims``, ``generate``,
    ``sample``). Images are 0..255 outside, [-1, 1] inside."""

    def __init__(
        self, shape: tuple[int, int, int] = (3, 32, 32), latent: int = 100, width: int = 64
    ):
        super().__init__()
        c, h, w = shape
        if h != w:
            raise ValueError(f"DCGAN makes square images, got {h}x{w}")
        self.input_shape, self.latent = (c, h, w), latent
        self.generator = dcgan_generator(latent, c, width, h)
        self.discriminator = dcgan_discriminator(c, width, h)
        dcgan_init(self)

    @property
    def num_dims(self) -> int:
        """Size of the latent z (what a sampler draws)."""
        return self.latent

    def decode(self, z: Tensor) -> Tensor:
        """z [B, latent] -> images [B, C, H, W] in (-1, 1)."""
        return self.generator(z[:, :, None, None])

    def discriminate(self, images: Tensor) -> Tensor:
        """Real-vs-fake logits [B] of images in [-1, 1]."""
        return self.discriminator(images)

    def generate(self, z: Tensor) -> Tensor:
        """Images (0..255) from latents z [B, latent] (the FID evaluator's interface)."""
        return to_pixels(self.decode(z))

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """n images (0..255) from z ~ N(0, I)."""
        param = next(self.parameters())
        return self.generate(torch.randn(n, self.latent, device=param.device, dtype=param.dtype))

    def real_logits(self, images: Tensor) -> Tensor:
        """Discriminator logits [B] of data images (0..255)."""
        return self.discriminate(to_unit(images))
