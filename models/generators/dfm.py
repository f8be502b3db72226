"""Deep Fourier Machines (Asadi, thesis ch. 4-5): the Fourier layer, the Fourier Net and the
latent-variable generator that predicts a Fourier Net per image.

Fourier layer, input x in R^m, output in R^n (thesis eq. 4.5):
    h(x) = A cos(2 pi K x) + B sin(2 pi K x)  (+ x when m = n),
with K the 2^m x m matrix of all frequency vectors k in {0,1}^m times ``frequency_scale`` (the
reference code uses 1/32 with pixel coordinates) and learned A, B in R^(n x 2^m). A Fourier Net
is a composition of such layers from 2-D pixel coordinates to 1 (grayscale) or 3 (RGB) values,
squashed by 2 sigmoid(.) - 1 as in the reference code; widths (2, w, ..., w, c) with ``depth``
hidden layers of width w. It has sum_i n_(i+1) 2^(n_i) cos coefficients and as many sin
coefficients: 352 each for MNIST (width 4, depth 6) and 3672 for CIFAR-10 (width 6, depth 10),
the decoder output sizes the thesis gives (one decoder head for A, one for B).

Evaluation is batched: all pixels of all images in one call, no Python loop over pixels.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def frequency_grid(m: int, scale: float = 1.0, like: Tensor | None = None) -> Tensor:
    """[2^m, m]: every k in {0,1}^m (in itertools.product order) times ``scale``."""
    grid = torch.tensor(list(itertools.product((0.0, 1.0), repeat=m))) * scale
    return grid.to(like) if like is not None else grid


def fourier_layer(x: Tensor, a: Tensor, b: Tensor, freqs: Tensor, residual: bool) -> Tensor:
    """x [B, P, m], a and b [B, n, 2^m] (one set per image), freqs [2^m, m] -> [B, P, n]."""
    phase = 2 * math.pi * x @ freqs.to(x.dtype).T  # [B, P, 2^m]
    out = torch.cos(phase) @ a.transpose(1, 2) + torch.sin(phase) @ b.transpose(1, 2)
    return out + x if residual else out


def fourier_widths(width: int, depth: int, channels: int) -> tuple[int, ...]:
    """(2, width x depth, channels): the layer widths of a Fourier Net."""
    return (2, *([width] * depth), channels)


def coefficient_count(widths: tuple[int, ...]) -> int:
    """Cos coefficients of a Fourier Net (the sin coefficients are as many)."""
    return sum(n * 2**m for m, n in zip(widths[:-1], widths[1:], strict=True))


class FourierNet(nn.Module):
    """Fourier Net evaluated with per-image coefficients: coords [P, 2] (or [B, P, 2]) and
    flat coefficients a, b [B, N] -> values [B, P, channels] in (-1, 1)."""

    def __init__(
        self, width: int = 4, depth: int = 6, channels: int = 1, frequency_scale: float = 1.0 / 32
    ):
        super().__init__()
        self.widths = fourier_widths(width, depth, channels)
        self.num_coefficients = coefficient_count(self.widths)
        for i, m in enumerate(self.widths[:-1]):
            self.register_buffer(f"freqs{i}", frequency_grid(m, frequency_scale))

    def split(self, flat: Tensor) -> list[Tensor]:
        """[B, N] -> per layer [B, n_out, 2^n_in]."""
        if flat.shape[-1] != self.num_coefficients:
            raise ValueError(
                f"FourierNet{self.widths} takes {self.num_coefficients} coefficients per image, "
                f"got {flat.shape[-1]}"
            )
        sizes = [n * 2**m for m, n in zip(self.widths[:-1], self.widths[1:], strict=True)]
        parts = flat.split(sizes, dim=-1)
        return [
            p.reshape(flat.shape[0], n, 2**m)
            for p, m, n in zip(parts, self.widths[:-1], self.widths[1:], strict=True)
        ]

    def forward(self, coords: Tensor, a: Tensor, b: Tensor) -> Tensor:
        coords = coords.to(a.dtype)
        x = coords.expand(a.shape[0], *coords.shape[-2:]) if coords.dim() == 2 else coords
        layers = list(zip(self.split(a), self.split(b), strict=True))
        last = len(layers) - 1
        for i, (a_i, b_i) in enumerate(layers):
            residual = 0 < i < last and self.widths[i] == self.widths[i + 1]
            x = fourier_layer(x, a_i, b_i, getattr(self, f"freqs{i}"), residual)
        return 2 * torch.sigmoid(x) - 1


class FourierImage(nn.Module):
    """One Fourier Net with its own coefficients (image compression): coords [P, 2] ->
    values [P, channels]. Parameters: 2 x coefficient_count(widths)."""

    def __init__(
        self,
        width: int,
        depth: int,
        channels: int = 3,
        frequency_scale: float = 1.0 / 32,
        init_scale: float = 3e-2,
    ):
        super().__init__()
        self.net = FourierNet(width, depth, channels, frequency_scale)
        n = self.net.num_coefficients
        self.a = nn.Parameter(init_scale * torch.randn(1, n))
        self.b = nn.Parameter(init_scale * torch.randn(1, n))

    def forward(self, coords: Tensor) -> Tensor:
        return self.net(coords, self.a, self.b)[0]


def pixel_grid(h: int, w: int, like: Tensor | None = None, normalized: bool = False) -> Tensor:
    """[h w, 2] pixel coordinates (row, column), row-major: the Fourier Net's inputs; integer
    pixel positions, or with ``normalized`` divided by max(h, w) - 1 into [0, 1]."""
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    grid = torch.stack([rows, cols], dim=-1).reshape(-1, 2).to(torch.get_default_dtype())
    if normalized:
        grid = grid / max(max(h, w) - 1, 1)
    return grid.to(like) if like is not None else grid


def mlp(features: tuple[int, ...]) -> nn.Sequential:
    """Fully connected layers with leaky ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(features[:-1], features[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(features) - 2:
            layers.append(nn.LeakyReLU())
    return nn.Sequential(*layers)


class FourierGenerator(nn.Module):
    """DFM generation model: a latent z (learned per image, or from an MLP encoder) goes through
    two MLP decoder heads to the cos (A) and sin (B) coefficients of a Fourier Net, which is
    evaluated on the pixel grid. Loss = MSE to the image scaled to [-1, 1] + lambda ||z||^2.

    MNIST: width 4, depth 6, latent 55, decoder (55, 170, 220, 352), lambda 0.5, per-image
    latents. CIFAR-10: width 6, depth 10, latent 110, encoder (3072, 1200, 600, 110), decoder
    (110, 500, 1000, 3672), lambda 200.
    """

    def __init__(
        self,
        shape: tuple[int, int, int] = (1, 28, 28),
        width: int = 4,
        depth: int = 6,
        latent: int = 55,
        decoder_hidden: tuple[int, ...] = (170, 220),
        encoder_hidden: tuple[int, ...] | None = None,
        num_images: int | None = None,
        latent_weight: float = 0.5,
    ):
        super().__init__()
        c, h, w = shape
        self.shape, self.latent_weight = tuple(shape), latent_weight
        self.fnet = FourierNet(width, depth, c)
        decoder = (latent, *decoder_hidden, self.fnet.num_coefficients)
        self.decoder_a, self.decoder_b = mlp(decoder), mlp(decoder)
        if encoder_hidden is not None:
            self.encoder = mlp((c * h * w, *encoder_hidden, latent))
            self.latents = None
        else:
            if num_images is None:
                raise ValueError("per-image latents need num_images (or give encoder_hidden)")
            self.encoder = None
            self.latents = nn.Embedding(num_images, latent)
            nn.init.normal_(self.latents.weight, std=1.0)
        self.register_buffer("grid", pixel_grid(h, w))

    def encode(self, images: Tensor | None = None, index: Tensor | None = None) -> Tensor:
        """z [B, latent] from images (0..255) with an encoder, else from image indices."""
        if self.encoder is not None:
            return self.encoder(images.flatten(1) / 127.5 - 1)
        return self.latents(index)

    def decode(self, z: Tensor) -> Tensor:
        """z [B, latent] -> images [B, C, H, W] in (-1, 1)."""
        values = self.fnet(self.grid, self.decoder_a(z), self.decoder_b(z))  # [B, H W, C]
        c, h, w = self.shape
        return values.transpose(1, 2).reshape(-1, c, h, w)

    def loss(self, images: Tensor, index: Tensor | None = None) -> Tensor:
        z = self.encode(images, index)
        recon = F.mse_loss(self.decode(z), images / 127.5 - 1)
        return recon + self.latent_weight * z.pow(2).sum(1).mean()

    @property
    def num_dims(self) -> int:
        """Size of the latent z (what a sampler draws)."""
        return self.decoder_a[0].in_features

    def generate(self, z: Tensor) -> Tensor:
        """Images (0..255) from latents z [B, latent] (the FID evaluator's interface)."""
        return (self.decode(z) + 1) * 127.5

    @torch.no_grad()
    def sample(self, n: int, scale: float = 1.0) -> Tensor:
        """n images (0..255) decoded from z ~ N(0, scale^2 I)."""
        z = torch.randn(n, self.decoder_a[0].in_features, device=self.grid.device) * scale
        return (self.decode(z) + 1) * 127.5

    @torch.no_grad()
    def interpolate(self, z0: Tensor, z1: Tensor, steps: int = 8) -> Tensor:
        """Images (0..255) decoded along the straight line from z0 to z1 [latent]."""
        t = torch.linspace(0, 1, steps, device=z0.device)[:, None]
        return (self.decode((1 - t) * z0 + t * z1) + 1) * 127.5
