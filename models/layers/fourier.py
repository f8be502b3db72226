"""Fourier-domain convolutions: CONF's circular and symmetric convolutions and its data-adaptive
coupling, i-ConvNet's periodic multi-channel convolution, SneakyReLU and invertible downsampling.

Circular convolution on an H x W image is diagonal in the 2-D DFT; with `torch.fft.rfft2` only
W//2 + 1 columns are stored, so a sum over all H W frequencies counts the columns 1..ceil(W/2)-1
twice (their conjugates are not stored) and column 0 (and W/2 for even W) once: `rfft_weights`.
The symmetric convolution (half-sample even extension, symmetric kernel) is diagonal in the
orthonormal DCT-II, built here from the FFT (`dct`, `idct`).

Near-singular responses: a frequency response with magnitude below ``eps`` is raised to ``eps``
(phase kept) by `clamp_magnitude`, the same in both directions, so the layer stays an exact
bijection with a finite logdet instead of producing NaNs; the i-ConvNet periodic conv raises on
a singular frequency block instead.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.core import Bijection, check_image, split_channels, zero_logdet

EPS = 1e-4


def _batch_safe(transform):
    """``transform`` (a `torch.fft` function of x [B, ...]) that also takes an empty batch:
    some MKL builds of torch raise "Inconsistent configuration parameters" on zero-size
    inputs, so an empty batch is transformed as one zero example of which none is kept."""

    @functools.wraps(transform)
    def safe(x: Tensor, *args, **kwargs) -> Tensor:
        if x.dim() > 1 and x.shape[0] == 0 and math.prod(x.shape[1:]) > 0:
            padded = torch.cat([x, x.new_zeros((1, *x.shape[1:]))])  # keeps the graph to x
            return transform(padded, *args, **kwargs)[:0]
        return transform(x, *args, **kwargs)

    return safe


# The FFTs every Fourier-domain layer uses, batch-size-0 safe.
fft, ifft = _batch_safe(torch.fft.fft), _batch_safe(torch.fft.ifft)
rfft, irfft = _batch_safe(torch.fft.rfft), _batch_safe(torch.fft.irfft)
rfft2, irfft2 = _batch_safe(torch.fft.rfft2), _batch_safe(torch.fft.irfft2)


def rfft_multiplicity(n: int, like: Tensor) -> Tensor:
    """[n//2 + 1]: how often each bin of the rfft of a length-n real signal occurs in its full
    DFT (bins 1..ceil(n/2)-1 twice, bin 0 and, for even n, bin n/2 once)."""
    weights = torch.full((n // 2 + 1,), 2.0, dtype=like.dtype, device=like.device)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    return weights


def rfft_weights(h: int, w: int, like: Tensor) -> Tensor:
    """[W//2 + 1] multiplicities of the rfft2 columns in a sum over all H x W frequencies."""
    return rfft_multiplicity(w, like)


def clamp_magnitude(spectrum: Tensor, eps: float = EPS) -> Tensor:
    """Raise |spectrum| to at least ``eps``, keeping the phase (phase 1 for an exact zero)."""
    magnitude = spectrum.abs()
    phase = torch.where(
        magnitude > 0,
        spectrum / magnitude.clamp_min(torch.finfo(magnitude.dtype).tiny),
        torch.ones_like(spectrum),
    )
    return torch.where(magnitude < eps, eps * phase, spectrum)


def place_kernel(kernel: Tensor, h: int, w: int) -> Tensor:
    """A centred k x k kernel [..., k, k] as the circular-convolution filter on [..., h, w]:
    tap (a, b) lands at offset (a - k//2, b - k//2) modulo the image size."""
    k1, k2 = kernel.shape[-2:]
    if k1 > h or k2 > w:
        raise ValueError(f"kernel {k1}x{k2} larger than the image {h}x{w}")
    out = kernel.new_zeros(*kernel.shape[:-2], h, w)
    out[..., :k1, :k2] = kernel
    return torch.roll(out, shifts=(-(k1 // 2), -(k2 // 2)), dims=(-2, -1))


def circular_response(kernel: Tensor, h: int, w: int) -> Tensor:
    """rfft2 of the placed kernel: [..., h, w//2 + 1] complex frequency response."""
    return rfft2(place_kernel(kernel, h, w))


class CircularConv2d(Bijection):
    """CONF circular convolution, one kernel per channel (depthwise), k x k or separable
    (outer product of two 1-D filters). x [B,C,H,W] -> z = irfft2(w_F * rfft2(x));
    logdet = sum over all H W frequencies and channels of log|w_F|. Inverse: division.
    Kernels start at the identity (a centred delta).

    Args:
        channels: C (one kernel per channel).
        kernel_size: k of the k x k (or separable) kernel.
        separable: outer product of two 1-D filters instead of a full k x k kernel.
        eps: floor on |w_F| that keeps the division defined.

    References:
        Karami, Sohl-Dickstein, Schuurmans, Dinh & Duckworth, "Invertible Convolutional Flow",
            NeurIPS 2019 (poster).
    """

    def __init__(
        self, channels: int, kernel_size: int = 3, separable: bool = False, eps: float = EPS
    ):
        super().__init__()
        self.channels, self.kernel_size, self.separable, self.eps = (
            channels,
            kernel_size,
            separable,
            eps,
        )
        delta = torch.zeros(kernel_size)
        delta[kernel_size // 2] = 1.0
        if separable:
            self.rows = nn.Parameter(delta.repeat(channels, 1))
            self.cols = nn.Parameter(delta.repeat(channels, 1))
        else:
            self.kernel = nn.Parameter(torch.outer(delta, delta).repeat(channels, 1, 1))

    def kernels(self) -> Tensor:
        if self.separable:
            return self.rows[:, :, None] * self.cols[:, None, :]
        return self.kernel

    def response(self, h: int, w: int) -> Tensor:
        return clamp_magnitude(circular_response(self.kernels(), h, w), self.eps)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, type(self).__name__)
        h, w = x.shape[2:]
        resp = self.response(h, w)
        z = irfft2(rfft2(x) * resp, s=(h, w))
        logdet = (torch.log(resp.abs()) * rfft_weights(h, w, x)).sum()
        return z, logdet.expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.channels, f"{type(self).__name__}.inverse")
        h, w = z.shape[2:]
        return irfft2(rfft2(z) / self.response(h, w), s=(h, w))


def dct(x: Tensor) -> Tensor:
    """Orthonormal DCT-II along the last axis via one FFT (Makhoul's reordering)."""
    n = x.shape[-1]
    v = torch.cat([x[..., ::2], x[..., 1::2].flip(-1)], dim=-1)
    spectrum = fft(v)
    k = torch.arange(n, device=x.device, dtype=x.dtype)
    twiddle = torch.exp(-1j * math.pi * k / (2 * n))
    out = (spectrum * twiddle).real
    scale = torch.full_like(k, math.sqrt(2.0 / n))
    scale[0] = math.sqrt(1.0 / n)
    return out * scale


def idct(coefficients: Tensor) -> Tensor:
    """Inverse of `dct` (orthonormal DCT-III) along the last axis via one inverse FFT."""
    n = coefficients.shape[-1]
    k = torch.arange(n, device=coefficients.device, dtype=coefficients.dtype)
    scale = torch.full_like(k, math.sqrt(2.0 / n))
    scale[0] = math.sqrt(1.0 / n)
    c = coefficients / scale
    c_rev = torch.cat([torch.zeros_like(c[..., :1]), c[..., 1:].flip(-1)], dim=-1)  # c_{N-k}
    spectrum = torch.complex(c, -c_rev) * torch.exp(1j * math.pi * k / (2 * n))
    v = ifft(spectrum).real
    half = (n + 1) // 2
    out = torch.empty_like(v)
    out[..., ::2] = v[..., :half]
    out[..., 1::2] = v[..., half:].flip(-1)
    return out


def dct2(x: Tensor) -> Tensor:
    return dct(dct(x).transpose(-1, -2)).transpose(-1, -2)


def idct2(x: Tensor) -> Tensor:
    return idct(idct(x).transpose(-1, -2)).transpose(-1, -2)


def symmetric_response(taps: Tensor, h: int, w: int) -> Tensor:
    """DCT-domain eigenvalues [..., h, w] of the even-symmetric kernel with one-sided taps
    [..., r+1, r+1] (tap (j1, j2) stands for the four taps (+-j1, +-j2)) under half-sample
    symmetric extension: lambda = sum_j a_j1 a_j2 t_j cos(pi j1 k1 / h) cos(pi j2 k2 / w),
    a_0 = 1, a_j = 2."""
    r1, r2 = taps.shape[-2:]

    def basis(r: int, n: int) -> Tensor:
        j = torch.arange(r, device=taps.device, dtype=taps.dtype)[:, None]
        k = torch.arange(n, device=taps.device, dtype=taps.dtype)[None, :]
        weight = torch.where(j == 0, 1.0, 2.0).to(taps.dtype)
        return weight * torch.cos(math.pi * j * k / n)  # [r, n]

    return torch.einsum("...ab,ah,bw->...hw", taps, basis(r1, h), basis(r2, w))


class SymmetricConv2d(Bijection):
    """CONF symmetric convolution, depthwise: half-sample even extension of each channel,
    convolved with an even-symmetric (2r+1) x (2r+1) kernel; diagonal in the DCT-II.
    x [B,C,H,W] -> z = idct2(lambda * dct2(x)); logdet = sum log|lambda| over channels and
    frequencies; inverse by division. |lambda| is clamped below at ``eps``.

    Args:
        channels: C (one kernel per channel).
        radius: r of the (2r+1) x (2r+1) even-symmetric kernel.
        eps: floor on |lambda|.

    References:
        Karami, Sohl-Dickstein, Schuurmans, Dinh & Duckworth, "Invertible Convolutional Flow",
            NeurIPS 2019 (poster).
    """

    def __init__(self, channels: int, radius: int = 1, eps: float = EPS):
        super().__init__()
        self.channels, self.eps = channels, eps
        taps = torch.zeros(channels, radius + 1, radius + 1)
        taps[:, 0, 0] = 1.0
        self.taps = nn.Parameter(taps)

    def response(self, h: int, w: int) -> Tensor:
        return clamp_magnitude(symmetric_response(self.taps, h, w), self.eps)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, type(self).__name__)
        lam = self.response(*x.shape[2:])
        logdet = torch.log(lam.abs()).sum()
        return idct2(dct2(x) * lam), logdet.expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.channels, f"{type(self).__name__}.inverse")
        return idct2(dct2(z) / self.response(*z.shape[2:]))


class SLogGate(Bijection):
    """CONF's S-Log gate, per channel a > 0: f(x) = sign(x) log(1 + a|x|) / a.
    x [B,C,H,W]; logdet = -sum log(1 + a|x|); inverse sign(y) (exp(a|y|) - 1) / a.

    Args:
        channels: C (one a > 0 per channel).
        init: the initial a.

    References:
        Karami, Sohl-Dickstein, Schuurmans, Dinh & Duckworth, "Invertible Convolutional Flow",
            NeurIPS 2019 (poster).
    """

    def __init__(self, channels: int, init: float = 0.1):
        super().__init__()
        self.channels = channels
        self.log_a = nn.Parameter(torch.full((1, channels, 1, 1), math.log(init)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a = torch.exp(self.log_a)
        z = torch.sign(x) * torch.log1p(a * x.abs()) / a
        return z, -torch.log1p(a * x.abs()).flatten(1).sum(1)

    def inverse(self, z: Tensor) -> Tensor:
        a = torch.exp(self.log_a)
        return torch.sign(z) * torch.expm1(a * z.abs()) / a


class CONFCoupling(Bijection):
    """CONF coupling step: x = (x1, x2) on channels; y1 = x1 and
    y2 = (f_1 o ... o f_m)(x2; x1) + t(x1), each sub-flow
    f = S-Log_a' o (s(x1) * .) o S-Log_a o (w(x1) conv .), with a data-adaptive depthwise
    kernel w(x1) (k x k taps per example and channel, ``conv='circular'`` via the FFT or
    ``'symmetric'`` via the DCT) and positive scales s(x1), predicted by a small conv net.
    Taps start at a delta and scales at 1. x [B,C,H,W]; logdet per example = sum over sub-flows
    of (sum log|w_F(x1)| + sum log s(x1) + the gates' logdets).

    Args:
        channels: C, split into (x1, x2).
        width: hidden channels of the networks of x1 (kernel, scale, shift).
        kernel_size: k of the data-adaptive kernel.
        conv: ``circular`` (FFT) or ``symmetric`` (DCT).
        subflows: m, the sub-flows applied to x2.
        eps: floor on the kernel's spectrum.

    References:
        Karami, Sohl-Dickstein, Schuurmans, Dinh & Duckworth, "Invertible Convolutional Flow",
            NeurIPS 2019 (poster).
    """

    def __init__(
        self,
        channels: int,
        width: int = 64,
        kernel_size: int = 3,
        conv: str = "circular",
        subflows: int = 1,
        eps: float = EPS,
    ):
        super().__init__()
        if channels < 2:
            raise ValueError(f"CONFCoupling needs at least 2 channels, got {channels}")
        if conv not in ("circular", "symmetric"):
            raise ValueError(f"conv must be 'circular' or 'symmetric', got {conv!r}")
        self.channels, self.conv, self.subflows, self.eps = channels, conv, subflows, eps
        self.keep, c2 = split_channels(channels)
        self.kernel_size = kernel_size
        self.n_taps = kernel_size**2 if conv == "circular" else (kernel_size // 2 + 1) ** 2
        out = c2 * (subflows * (self.n_taps + 1) + 1)
        self.net = nn.Sequential(
            nn.Conv2d(self.keep, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 1),
            nn.ReLU(),
        )
        self.head = nn.Conv2d(width, out, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.gates = nn.ModuleList([SLogGate(c2) for _ in range(2 * subflows)])

    def _params(self, x1: Tensor):
        b, _, h, w = x1.shape
        c2 = self.channels // 2
        feats = self.net(x1)
        out = self.head(feats)
        taps_maps, rest = out.split(
            [c2 * self.subflows * self.n_taps, out.shape[1] - c2 * self.subflows * self.n_taps],
            dim=1,
        )
        taps = taps_maps.mean(dim=(2, 3)).reshape(b, self.subflows, c2, self.n_taps)
        log_s, shift = rest.split([c2 * self.subflows, c2], dim=1)
        log_s = torch.tanh(log_s).reshape(b, self.subflows, c2, h, w)
        return taps, log_s, shift

    def _responses(self, taps: Tensor, h: int, w: int) -> Tensor:
        """[B, m, C2, ...] frequency responses: delta + predicted taps."""
        if self.conv == "circular":
            k = self.kernel_size
            kernel = taps.reshape(*taps.shape[:-1], k, k)
            kernel = kernel + F.pad(taps.new_ones(1, 1), (k // 2, k // 2, k // 2, k // 2))
            return clamp_magnitude(circular_response(kernel, h, w), self.eps)
        r = self.kernel_size // 2 + 1
        sym = taps.reshape(*taps.shape[:-1], r, r)
        sym = sym + F.pad(taps.new_ones(1, 1), (0, r - 1, 0, r - 1))
        return clamp_magnitude(symmetric_response(sym, h, w), self.eps)

    def _apply_conv(self, x: Tensor, resp: Tensor, inverse: bool) -> Tensor:
        h, w = x.shape[-2:]
        if self.conv == "circular":
            spec = rfft2(x)
            spec = spec / resp if inverse else spec * resp
            return irfft2(spec, s=(h, w))
        coeff = dct2(x)
        return idct2(coeff / resp if inverse else coeff * resp)

    def _conv_logdet(self, resp: Tensor, h: int, w: int) -> Tensor:
        logs = torch.log(resp.abs())
        if self.conv == "circular":
            logs = logs * rfft_weights(h, w, logs)
        return logs.flatten(1).sum(1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, "CONFCoupling")
        x1, y = x[:, : self.keep], x[:, self.keep :]
        h, w = x.shape[2:]
        taps, log_s, shift = self._params(x1)
        resp = self._responses(taps, h, w)
        logdet = self._conv_logdet(resp, h, w) + log_s.flatten(1).sum(1)
        for i in range(self.subflows):
            y = self._apply_conv(y, resp[:, i], inverse=False)
            y, ld = self.gates[2 * i](y)
            logdet = logdet + ld
            y = y * torch.exp(log_s[:, i])
            y, ld = self.gates[2 * i + 1](y)
            logdet = logdet + ld
        return torch.cat([x1, y + shift], dim=1), logdet

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.channels, "CONFCoupling.inverse")
        z1, y = z[:, : self.keep], z[:, self.keep :]
        taps, log_s, shift = self._params(z1)
        resp = self._responses(taps, *z.shape[2:])
        y = y - shift
        for i in reversed(range(self.subflows)):
            y = self.gates[2 * i + 1].inverse(y)
            y = y * torch.exp(-log_s[:, i])
            y = self.gates[2 * i].inverse(y)
            y = self._apply_conv(y, resp[:, i], inverse=True)
        return torch.cat([z1, y], dim=1)


def periodic_blocks(weight: Tensor, h: int, w: int) -> Tensor:
    """[H, W//2+1, C_out, C_in] complex blocks of the circularly padded cross-correlation with
    ``weight`` [C_out, C_in, k, k] (k odd) on h x w images: z_f = W_f x_f."""
    filt = place_kernel(weight.flip(2, 3), h, w)  # correlation = convolution with the flip
    return rfft2(filt).permute(2, 3, 0, 1)


def periodic_conv_inverse(z: Tensor, weight: Tensor) -> Tensor:
    """x with conv2d(circular_pad(x), weight) = z, by one C x C solve per frequency."""
    h, w = z.shape[2:]
    spec = rfft2(z).permute(2, 3, 1, 0)  # [H, W', C, B]
    x_spec = torch.linalg.solve(periodic_blocks(weight, h, w), spec).permute(3, 2, 0, 1)
    return irfft2(x_spec, s=(h, w))


class PeriodicConv2d(Bijection):
    """i-ConvNet's k x k convolution with circular padding over all channels:
    z[c] = sum_c' W[c, c'] (cross-correlated, centred) with x[c'] on the torus, as conv2d with
    circular padding. Block diagonal in the Fourier basis: one C x C complex block per
    frequency. x [B,C,H,W]; logdet = sum over all H W frequencies of log|det W_f| (rfft2 columns
    counted with `rfft_weights`); inverse by batched `torch.linalg.solve`. A singular block
    raises ``ValueError``.

    Args:
        channels: C (C x C kernel).
        kernel_size: k.

    References:
        Finzi, Izmailov, Maddox, Kirichenko & Wilson, "Invertible Convolutional Networks", ICML 2019
            INNF workshop (paper 26).
    """

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"PeriodicConv2d needs an odd kernel size, got {kernel_size}")
        self.channels, self.kernel_size = channels, kernel_size
        weight = torch.zeros(channels, channels, kernel_size, kernel_size)
        weight[:, :, kernel_size // 2, kernel_size // 2] = torch.eye(channels)
        fan_in = channels * kernel_size**2
        self.weight = nn.Parameter(weight + torch.randn_like(weight) / math.sqrt(fan_in) * 0.1)

    def blocks(self, h: int, w: int) -> Tensor:
        """[H, W//2+1, C, C] complex blocks: z_f = W_f x_f."""
        return periodic_blocks(self.weight, h, w)

    def _logdet(self, blocks: Tensor, like: Tensor) -> Tensor:
        _, logabsdet = torch.linalg.slogdet(blocks)
        if not torch.isfinite(logabsdet).all():
            raise ValueError("PeriodicConv2d has a singular frequency block: not invertible")
        h, w = like.shape[2:]
        return (logabsdet * rfft_weights(h, w, logabsdet)).sum()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, "PeriodicConv2d")
        pad = self.kernel_size // 2
        z = F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="circular"), self.weight)
        return z, self._logdet(self.blocks(*x.shape[2:]), x).expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.channels, "PeriodicConv2d.inverse")
        self._logdet(self.blocks(*z.shape[2:]), z)  # raises on a singular block
        return periodic_conv_inverse(z, self.weight)


class SneakyReLU(Bijection):
    """i-ConvNet's SneakyReLU y = (x + a (sqrt(1 + x^2) - 1)) / (1 + a), a = (1 - s)/(1 + s),
    s the slope at -infinity (0.1). x [B, ...]; logdet = sum log((1 + a x / sqrt(1 + x^2)) /
    (1 + a)); closed-form inverse x = (u - a sqrt(u^2 + 1 - a^2)) / (1 - a^2), u = (1+a) y + a.

    Args:
        slope: s, the slope at -infinity (0.1 in the i-ConvNet code).

    References:
        Finzi, Izmailov, Maddox, Kirichenko & Wilson, "Invertible Convolutional Networks", ICML 2019
            INNF workshop (paper 26).
    """

    def __init__(self, slope: float = 0.1):
        super().__init__()
        if not 0 < slope <= 1:
            raise ValueError(f"SneakyReLU slope must be in (0, 1], got {slope}")
        self.alpha = (1 - slope) / (1 + slope)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a = self.alpha
        root = torch.sqrt(1 + x * x)
        y = (x + a * (root - 1)) / (1 + a)
        logdet = torch.log((1 + a * x / root) / (1 + a))
        return y, logdet.flatten(1).sum(1)

    def inverse(self, z: Tensor) -> Tensor:
        a = self.alpha
        u = (1 + a) * z + a
        return (u - a * torch.sqrt(u * u + 1 - a * a)) / (1 - a * a)


class CheckerboardDownsample(Bijection):
    """Invertible 2x2 downsampling that groups the checkerboard colours: x [B,C,H,W] ->
    z [B,4C,H/2,W/2] with channels [(0,0), (1,1)] (one colour) then [(0,1), (1,0)] (the other)
    of every block, each group channel-major; logdet = 0.

    References:
        Finzi, Izmailov, Maddox, Kirichenko & Wilson, "Invertible Convolutional Networks", ICML 2019
            INNF workshop (paper 26).
    """

    order = ((0, 0), (1, 1), (0, 1), (1, 0))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, None, type(self).__name__)
        if x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"{type(self).__name__} expects even H and W, got {tuple(x.shape)}")
        parts = [x[:, :, i::2, j::2] for i, j in self.order]
        return torch.cat(parts, dim=1), zero_logdet(x)

    def inverse(self, z: Tensor) -> Tensor:
        b, c4, h, w = z.shape
        c = c4 // 4
        x = z.new_empty(b, c, 2 * h, 2 * w)
        for n, (i, j) in enumerate(self.order):
            x[:, :, i::2, j::2] = z[:, n * c : (n + 1) * c]
        return x


class HaarDownsample(Bijection):
    """Invertible average pooling (i-ConvNet's iAvgPool2d): the orthonormal 2x2 Haar transform.
    x [B,C,H,W] -> z [B,4C,H/2,W/2]: first C channels 2 x the block average, then the three
    detail bands; orthonormal, so logdet = 0 and the inverse is the transpose.

    References:
        Finzi, Izmailov, Maddox, Kirichenko & Wilson, "Invertible Convolutional Networks", ICML 2019
            INNF workshop (paper 26).
    """

    def __init__(self):
        super().__init__()
        h = (
            torch.tensor(
                [
                    [1.0, 1.0, 1.0, 1.0],
                    [1.0, -1.0, 1.0, -1.0],
                    [1.0, 1.0, -1.0, -1.0],
                    [1.0, -1.0, -1.0, 1.0],
                ]
            )
            / 2
        )
        self.register_buffer("haar", h)  # rows: bands; columns: (0,0),(0,1),(1,0),(1,1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, None, type(self).__name__)
        if x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"{type(self).__name__} expects even H and W, got {tuple(x.shape)}")
        pix = torch.stack([x[:, :, i::2, j::2] for i in (0, 1) for j in (0, 1)], dim=1)
        bands = torch.einsum("kp,bpchw->bkchw", self.haar.to(x.dtype), pix)
        return bands.flatten(1, 2), zero_logdet(x)

    def inverse(self, z: Tensor) -> Tensor:
        b, c4, h, w = z.shape
        bands = z.reshape(b, 4, c4 // 4, h, w)
        pix = torch.einsum("kp,bkchw->bpchw", self.haar.to(z.dtype), bands)
        x = z.new_empty(b, c4 // 4, 2 * h, 2 * w)
        for n, (i, j) in enumerate((i, j) for i in (0, 1) for j in (0, 1)):
            x[:, :, i::2, j::2] = pix[:, n]
        return x
