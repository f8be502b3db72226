"""CDFlow's circulant-diagonal layer over channels (arXiv 2510.25323).

W = D_1 C_1 D_2 C_2 ... C_{m-1} D_m (m diagonals, m - 1 circulants), applied to every pixel's
channel vector in place of Glow's 1x1 convolution. Circulants are real (a real first column c,
applied with `torch.fft.rfft`), so W stays real. logdet = H W (sum log|d| + sum log|c_hat|) with
c_hat the full DFT of c (rfft bins counted with their conjugates); inverse by FFT division.

Structured spectral normalisation: each circulant is divided by its spectral norm max|c_hat|
(so ||C||_2 = 1; the scale is left to the diagonals and ActNorm). Near-singular parameters: a
diagonal is sign * exp(log|d|) and cannot vanish; a circulant frequency with |c_hat| < eps is
raised to eps (phase kept), identically in both directions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.core import Bijection, check_image
from models.layers.fourier import EPS, clamp_magnitude, irfft, rfft, rfft_multiplicity


class CirculantDiagonal(Bijection):
    """CDFlow layer. x [B,C,H,W] -> z = W x per pixel, W = D_1 C_1 ... C_{m-1} D_m;
    logdet = H W (sum log|d| + sum log|c_hat|).

    Args:
        channels: C; W is C x C.
        m: the diagonal factors (m - 1 circulants between them; 2 in the tables).
        spectral_norm: normalise each circulant by its spectral norm.
        eps: floor on |c_hat| (raised to eps, phase kept, in both directions).

    References:
        Feng & Liao, "CDFlow: Building Invertible Layers with Circulant and Diagonal Matrices",
            NeurIPS 2025 (arXiv:2510.25323).
    """

    def __init__(self, channels: int, m: int = 2, spectral_norm: bool = True, eps: float = EPS):
        super().__init__()
        if m < 1:
            raise ValueError(f"CirculantDiagonal needs m >= 1 diagonals, got {m}")
        self.channels, self.m, self.spectral_norm, self.eps = channels, m, spectral_norm, eps
        self.log_d = nn.Parameter(torch.zeros(m, channels))
        self.register_buffer("sign_d", torch.ones(m, channels))
        circ = torch.zeros(m - 1, channels)
        circ[:, 0] = 1.0  # identity circulant
        self.circulants = nn.Parameter(circ + 0.01 * torch.randn_like(circ))

    def spectra(self) -> Tensor:
        """[m-1, C//2+1] rfft of the (normalised, clamped) circulant first columns."""
        spec = rfft(self.circulants, dim=-1)
        if self.spectral_norm:
            spec = spec / spec.abs().amax(dim=-1, keepdim=True).clamp_min(1e-30)
        return clamp_magnitude(spec, self.eps)

    def diagonals(self) -> Tensor:
        return self.sign_d * torch.exp(self.log_d)

    def logdet_per_pixel(self) -> Tensor:
        spec = self.spectra()
        counts = rfft_multiplicity(self.channels, spec.real)
        return self.log_d.sum() + (torch.log(spec.abs()) * counts).sum()

    def _pixels(self, x: Tensor) -> Tensor:
        return x.permute(0, 2, 3, 1)  # [B, H, W, C]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, "CirculantDiagonal")
        v = self._pixels(x)
        d, spec = self.diagonals(), self.spectra()
        v = v * d[self.m - 1]
        for j in reversed(range(self.m - 1)):
            v = irfft(rfft(v, dim=-1) * spec[j], n=self.channels, dim=-1)
            v = v * d[j]
        logdet = x.shape[2] * x.shape[3] * self.logdet_per_pixel()
        return v.permute(0, 3, 1, 2), logdet.expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.channels, "CirculantDiagonal.inverse")
        v = self._pixels(z)
        d, spec = self.diagonals(), self.spectra()
        for j in range(self.m - 1):
            v = v / d[j]
            v = irfft(rfft(v, dim=-1) / spec[j], n=self.channels, dim=-1)
        v = v / d[self.m - 1]
        return v.permute(0, 3, 1, 2)

    def matrix(self) -> Tensor:
        """The dense C x C weight W (for tests and the dense benchmark route)."""
        eye = torch.eye(self.channels, dtype=self.log_d.dtype, device=self.log_d.device)
        z, _ = self.forward(eye[:, :, None, None])
        return z[:, :, 0, 0].T
