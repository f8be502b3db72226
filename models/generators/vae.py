"""Convolutional auto-encoders for the Deep Fourier Machines FID table (thesis Table 5.2): the
VAE (Rezende et al. 2014 [22]; Kingma & Welling 2014) and the WAE-MMD (Tolstikhin et al. 2018
[58]), sharing one DCGAN-like encoder and decoder.

Images x in {0..255}^(C x H x W) are scaled to [-1, 1]. With base width w and ``depth`` d:

    encoder: d x [conv 4x4 stride 2 -> batch norm -> ReLU], widths w, 2w, ..., 2^(d-1) w,
             then a linear map to the latent (2 x latent for the VAE: mean and log-variance);
    decoder: linear latent -> 2^(d-1) w x H/4 x W/4, then 2 x [transposed conv 4x4 stride 2 ->
             batch norm -> ReLU] halving the width, then a 5x5 conv (stride 1) to C channels and
             tanh, so the output lies in (-1, 1).

This is the WAE paper's CelebA architecture (encoder 128-256-512-1024, decoder from 8x8x1024) at
CIFAR-10's 32x32, latent 128, the size the RAE paper (Ghosh et al. 2020) used for its CIFAR-10 VAE
and WAE baselines. `vae_cifar10` and `wae_cifar10` have w = 128, d = 4, latent 128 (count in
`models.generators.VAE_MODELS` and `WAE_MODELS`).

VAE loss (negative ELBO per image, nats): a Gaussian decoder p(x|z) = N(decode(z), s^2 I) with a
fixed s (``decoder_std``, on the [-1, 1] scale) and the N(0, I) prior,

    -ELBO = ||x - decode(z)||^2 / (2 s^2) + D/2 log(2 pi s^2) + KL(N(mu, diag e^logvar) || N(0, I)),
    KL = -1/2 sum(1 + logvar - mu^2 - e^logvar),  z = mu + e^(logvar/2) eps (reparameterization).

WAE-MMD loss (deterministic encoder, prior N(0, prior_std^2 I)), as the official code
(tolstikhin/wae): cost 0.05 ||x - decode(encode(x))||^2 per image plus ``mmd_weight`` times the
inverse-multiquadratics MMD of the batch's codes against as many prior draws (`mmd_imq`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def to_unit(images: Tensor) -> Tensor:
    """{0..255} -> [-1, 1]."""
    return images / 127.5 - 1


def to_pixels(values: Tensor) -> Tensor:
    """[-1, 1] -> [0, 255] (the FID evaluator's `generate` range)."""
    return (values + 1) * 127.5


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """[n, m] matrix of ||a_i - b_j||^2 (no square root, so the gradient is finite at 0)."""
    return (a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None] - 2 * a @ b.T).clamp_min(0)


def mmd_imq(qz: Tensor, pz: Tensor, prior_var: float = 1.0, scales=IMQ_SCALES) -> Tensor:
    """Unbiased MMD^2 estimate between codes qz [n, d] and prior draws pz [n, d] with the
    inverse-multiquadratics kernel k(x, y) = C / (C + ||x - y||^2), summed over C = 2 d
    prior_var s for s in ``scales`` (WAE paper, sec. 4 and its official code):

        sum_C  1/(n(n-1)) sum_(i != j) [k(q_i, q_j) + k(p_i, p_j)] - 2/n^2 sum_(i, j) k(q_i, p_j).
    """
    n, d = qz.shape
    if pz.shape != qz.shape or n < 2:
        raise ValueError(
            f"mmd_imq needs two [n >= 2, d] batches of one shape, got {tuple(qz.shape)} and "
            f"{tuple(pz.shape)}"
        )
    dist_qq, dist_pp, dist_qp = (squared_distances(a, b) for a, b in ((qz, qz), (pz, pz), (qz, pz)))
    off_diagonal = 1 - torch.eye(n, dtype=qz.dtype, device=qz.device)
    total = qz.new_zeros(())
    for scale in scales:
        c = 2 * d * prior_var * scale
        within = ((c / (c + dist_qq) + c / (c + dist_pp)) * off_diagonal).sum() / (n * (n - 1))
        total = total + within - 2 * (c / (c + dist_qp)).sum() / n**2
    return total


def conv_encoder(channels: int, width: int, depth: int, spatial: int, outputs: int):
    """d stride-2 4x4 convs (widths w .. 2^(d-1) w) with batch norm and ReLU, then a linear map
    of the flattened features (2^(d-1) w x spatial) to ``outputs``."""
    layers: list[nn.Module] = []
    c_in = channels
    for i in range(depth):
        c_out = width * 2**i
        layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
        c_in = c_out
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * spatial, outputs))


class ConvDecoder(nn.Module):
    """z [B, latent] -> images [B, C, H, W] in (-1, 1) (module docstring)."""

    def __init__(self, latent: int, shape: tuple[int, int, int], top_width: int):
        super().__init__()
        c, h, w = shape
        self.start = (top_width, h // 4, w // 4)
        self.linear = nn.Linear(latent, top_width * (h // 4) * (w // 4))
        layers: list[nn.Module] = []
        width = top_width
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(),
            ]
            width //= 2
        self.body = nn.Sequential(*layers, nn.Conv2d(width, c, 5, 1, 2), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        return self.body(self.linear(z).reshape(-1, *self.start))


class ConvAutoencoder(nn.Module):
    """The shared encoder/decoder and the generator interface the FID evaluator and the timing
    protocol use (``input_shape``, ``num_dims``, ``generate``, ``sample``)."""

    code_factor = 1  # encoder outputs per latent dimension
    prior_std = 1.0

    def __init__(
        self,
        shape: tuple[int, int, int] = (3, 32, 32),
        latent: int = 128,
        width: int = 128,
        depth: int = 4,
    ):
        super().__init__()
        c, h, w = shape
        if h % 2**depth or w % 2**depth or h % 4 or w % 4:
            raise ValueError(
                f"image size {h}x{w} must be divisible by 2^depth = {2**depth} and by 4"
            )
        if width * 2 ** (depth - 1) < 4:
            raise ValueError(f"width {width} at depth {depth} leaves the decoder no channels")
        self.input_shape, self.latent = (c, h, w), latent
        spatial = (h // 2**depth) * (w // 2**depth)
        top = width * 2 ** (depth - 1)
        self.encoder = conv_encoder(c, width, depth, spatial, latent * self.code_factor)
        self.decoder = ConvDecoder(latent, (c, h, w), top)

    @property
    def num_dims(self) -> int:
        """Size of the latent z (what a sampler draws)."""
        return self.latent

    def decode(self, z: Tensor) -> Tensor:
        """z [B, latent] -> images [B, C, H, W] in (-1, 1)."""
        return self.decoder(z)

    def generate(self, z: Tensor) -> Tensor:
        """Images (0..255) from latents z [B, latent] (the FID evaluator's interface)."""
        return to_pixels(self.decode(z))

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """n images (0..255) decoded from prior draws."""
        param = next(self.parameters())
        z = torch.randn(n, self.latent, device=param.device, dtype=param.dtype)
        return self.generate(z * self.prior_std)


class VAE(ConvAutoencoder):
    """Gaussian encoder q(z|x) = N(mu, diag e^logvar), Gaussian decoder with fixed std
    ``decoder_std`` (module docstring). ``loss`` returns (-ELBO, reconstruction MSE, KL)."""

    code_factor = 2

    def __init__(self, *args, decoder_std: float = 0.1, **kwargs):
        super().__init__(*args, **kwargs)
        if decoder_std <= 0:
            raise ValueError(f"decoder_std must be positive, got {decoder_std}")
        self.decoder_std = decoder_std

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images (0..255) [B, C, H, W] -> (mu, logvar), each [B, latent]."""
        return self.encoder(to_unit(images)).chunk(2, dim=1)

    def loss(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(-ELBO, MSE, KL), each averaged over the batch (-ELBO and KL in nats per image)."""
        mu, logvar = self.encode(images)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        x = to_unit(images)
        squared = (self.decode(z) - x).pow(2).flatten(1).sum(1)
        dims = x[0].numel()
        s2 = self.decoder_std**2
        nll = squared / (2 * s2) + 0.5 * dims * math.log(2 * math.pi * s2)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
        return (nll + kl).mean(), squared.mean() / dims, kl.mean()


class WAE(ConvAutoencoder):
    """WAE-MMD: deterministic encoder, prior N(0, prior_std^2 I), loss = 0.05 ||x - x'||^2 +
    ``mmd_weight`` MMD_IMQ (module docstring). ``loss`` returns (loss, MSE, MMD)."""

    def __init__(self, *args, mmd_weight: float = 10.0, prior_std: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        if prior_std <= 0:
            raise ValueError(f"prior_std must be positive, got {prior_std}")
        self.mmd_weight, self.prior_std = mmd_weight, prior_std

    def encode(self, images: Tensor) -> Tensor:
        """images (0..255) [B, C, H, W] -> z [B, latent]."""
        return self.encoder(to_unit(images))

    def loss(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(loss, MSE, MMD) of a batch (loss and MSE averaged over the batch)."""
        z = self.encode(images)
        x = to_unit(images)
        squared = (self.decode(z) - x).pow(2).flatten(1).sum(1)
        prior = torch.randn_like(z) * self.prior_std
        mmd = mmd_imq(z, prior, self.prior_std**2)
        return 0.05 * squared.mean() + self.mmd_weight * mmd, squared.mean() / x[0].numel(), mmd
