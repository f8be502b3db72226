"""Glow and RealNVP layers: ActNorm, invertible 1x1 conv (plain and LU), couplings, flip.

All follow the contract of `models.core`: ``forward(x) -> (z, logdet[B])`` is the density
direction, ``inverse(z) -> x`` the sampling direction; inputs are ``[B, C, H, W]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.core import Bijection, ZeroConv2d, check_image, split_channels, zero_logdet
from models.layers.coupling import Coupling


class ActNorm(Bijection):
    """z = (x + bias) * exp(log_scale) per channel. x [B,C,H,W]; logdet = H W sum log_scale.

    Data-dependent initialisation on the first training batch: bias = -mean, scale = 1/std per
    channel, so the output of that batch has zero mean and unit variance (an empty batch does
    not count). Whether that happened is the ``initialized`` buffer, persisted in the state dict.

    Args:
        channels: C, the number of channels.
        eps: added to the std in the data-dependent initialisation.

    References:
        Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS 2018
            (arXiv:1807.03039).
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, "ActNorm")
        if self.training and not bool(self.initialized) and x.shape[0] > 0:
            self.initialize(x)
        z = (x + self.bias) * torch.exp(self.log_scale)
        h, w = x.shape[2:]
        return z, (h * w * self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.channels, "ActNorm.inverse")
        return z * torch.exp(-self.log_scale) - self.bias


class InvConv1x1(Bijection):
    """Glow's invertible 1x1 conv z = W x over channels. x [B,C,H,W]; logdet = H W log|det W|.

    W starts as a random rotation. A singular W raises ``ValueError`` on use (no silent NaN).

    Args:
        channels: C; W is [C, C].

    References:
        Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS 2018
            (arXiv:1807.03039).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        q, _ = torch.linalg.qr(torch.randn(channels, channels))
        self.weight = nn.Parameter(q)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, "InvConv1x1")
        _, logabsdet = torch.linalg.slogdet(self.weight)
        if not torch.isfinite(logabsdet):
            raise ValueError("InvConv1x1 weight is singular: the layer is not invertible")
        z = F.conv2d(x, self.weight[:, :, None, None])
        return z, (x.shape[2] * x.shape[3] * logabsdet).expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.channels, "InvConv1x1.inverse")
        w_inv = torch.linalg.inv(self.weight)
        return F.conv2d(z, w_inv[:, :, None, None])


class InvConv1x1LU(Bijection):
    """LU-parameterised 1x1 conv: W = P L (U + diag(sign * exp(log_s))), P fixed.

    x [B,C,H,W] -> z = W x; logdet = H W sum log_s. Initialised from a random rotation (Glow).

    Args:
        channels: C; P, L, U and log_s are [C, C] and [C].

    References:
        Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS 2018
            (arXiv:1807.03039).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        q, _ = torch.linalg.qr(torch.randn(channels, channels))
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(torch.abs(s)))

    def parameter_masks(self) -> dict[str, Tensor]:
        """Only the strict triangles of ``lower`` and ``upper`` are used."""
        return {"lower": self.lower_mask, "upper": self.lower_mask.T}

    def free_parameter_counts(self) -> dict[str, int]:
        """The entries `parameter_masks` leaves free, without reading the masks (meta builds)."""
        strict = self.channels * (self.channels - 1) // 2
        return {"lower": strict, "upper": strict}

    def weight(self) -> Tensor:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, "InvConv1x1LU")
        z = F.conv2d(x, self.weight()[:, :, None, None])
        return z, (x.shape[2] * x.shape[3] * self.log_s.sum()).expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.channels, "InvConv1x1LU.inverse")
        return F.conv2d(z, torch.linalg.inv(self.weight())[:, :, None, None])


class ChannelFlip(Bijection):
    """Reverse the channel order (RealNVP's permutation). x [B,C,H,W]; logdet = 0.

    References:
        Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP", ICLR 2017
            (arXiv:1605.08803).
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.flip(1), zero_logdet(x)

    def inverse(self, z: Tensor) -> Tensor:
        return z.flip(1)


class CouplingNet(nn.Sequential):
    """Glow's coupling network: 3x3 (in -> width) -> ReLU -> kxk (width -> mid) -> ReLU ->
    zero-initialised 3x3 (mid -> out). ``mid`` defaults to ``width`` with k=1 (Glow); the
    Inverse-Flow code uses 1x1 (width -> C) with ``mid = C``.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, mid: int | None = None):
        mid = width if mid is None else mid
        super().__init__(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, mid, 1),
            nn.ReLU(),
            ZeroConv2d(mid, out_channels),
        )


class AffineCoupling(Coupling):
    """Glow's affine coupling (`models.layers.coupling.Coupling` with `CouplingNet`):
    (shift, s) = NN(x1), scale = sigmoid(s + 2); z2 = (x2 + shift) * scale.
    x [B,C,H,W]; logdet = sum log scale. Kingma & Dhariwal 2018, Sec. 3.3.

    Args:
        channels: C; the first C - C//2 channels condition the rest (`models.core.split_channels`).
        width: hidden channels of `CouplingNet`.
        mid: channels of its middle layer (default ``width``, Glow; the Inverse-Flow code uses C).

    References:
        Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS 2018
            (arXiv:1807.03039).
    """

    def __init__(self, channels: int, width: int = 512, mid: int | None = None):
        keep, transformed = split_channels(channels)
        super().__init__(channels, CouplingNet(keep, 2 * transformed, width, mid))

    @staticmethod
    def _shift_scale(params: Tensor) -> tuple[Tensor, Tensor]:
        return params[:, 0::2], torch.sigmoid(params[:, 1::2] + 2.0)

    def couple(self, x2: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        shift, scale = self._shift_scale(params)
        return (x2 + shift) * scale, torch.log(scale).flatten(1).sum(1)

    def uncouple(self, z2: Tensor, params: Tensor) -> Tensor:
        shift, scale = self._shift_scale(params)
        return z2 / scale - shift


class AdditiveCoupling(Coupling):
    """Additive coupling (NICE, Dinh et al. 2015; Glow): z2 = x2 + NN(x1). x [B,C,H,W];
    logdet = 0.

    Args:
        channels: C, split as in `AffineCoupling`.
        width: hidden channels of `CouplingNet`.
        mid: channels of its middle layer (default ``width``).

    References:
        Dinh, Krueger & Bengio, "NICE: Non-linear Independent Components Estimation", ICLR 2015
            workshop (arXiv:1410.8516).
        Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS 2018
            (arXiv:1807.03039).
    """

    def __init__(self, channels: int, width: int = 512, mid: int | None = None):
        keep, transformed = split_channels(channels)
        super().__init__(channels, CouplingNet(keep, transformed, width, mid))

    def couple(self, x2: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return x2 + params, zero_logdet(x2)

    def uncouple(self, z2: Tensor, params: Tensor) -> Tensor:
        return z2 - params


def checkerboard_mask(h: int, w: int, parity: int, like: Tensor) -> Tensor:
    """[1,1,H,W] mask, 1 where (i + j + parity) is even."""
    i = torch.arange(h, device=like.device)[:, None]
    j = torch.arange(w, device=like.device)[None, :]
    return ((i + j + parity) % 2 == 0).to(like.dtype)[None, None]


class ResidualBlock(nn.Module):
    """x + conv3x3(relu(bn(conv3x3(relu(bn(x)))))) as in RealNVP's ResNet coupling nets."""

    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResNet(nn.Sequential):
    """RealNVP's s/t network: 3x3 in -> width, ``blocks`` residual blocks, BN-ReLU, 3x3 -> out
    (zero-initialised so the coupling starts at the identity)."""

    def __init__(self, in_channels: int, out_channels: int, width: int, blocks: int):
        out = nn.Conv2d(width, out_channels, 3, padding=1)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        super().__init__(
            nn.Conv2d(in_channels, width, 3, padding=1),
            *[ResidualBlock(width) for _ in range(blocks)],
            nn.BatchNorm2d(width),
            nn.ReLU(),
            out,
        )


class CheckerboardCoupling(Coupling):
    """RealNVP affine coupling with a checkerboard mask m (``parity`` picks which half is
    kept), on the `Coupling` base with x1 = m x and x2 = x: (s, t) = NN(m x),
    z = m x + (1 - m)(x exp(tanh-scaled s) + t). x [B,C,H,W]; logdet = sum (1 - m) s.

    Args:
        channels: C.
        parity: 0 or 1: which colour of the checkerboard is kept.
        width: hidden channels of the ResNet s/t network.
        blocks: its residual blocks.

    References:
        Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP", ICLR 2017
            (arXiv:1605.08803).
    """

    min_channels = 1

    def __init__(self, channels: int, parity: int, width: int = 64, blocks: int = 8):
        super().__init__(channels, ResNet(channels, 2 * channels, width, blocks))
        self.parity = parity
        self.scale = nn.Parameter(torch.ones(1, channels, 1, 1))

    def _mask(self, x: Tensor) -> Tensor:
        return checkerboard_mask(x.shape[2], x.shape[3], self.parity, x)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x * self._mask(x), x

    def join(self, x1: Tensor, z2: Tensor) -> Tensor:
        return z2  # the kept entries pass through couple unchanged (s = t = 0 there)

    def _st(self, x2: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        free = 1 - self._mask(x2)
        s, t = params.chunk(2, dim=1)
        return self.scale * torch.tanh(s) * free, t * free

    def couple(self, x2: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self._st(x2, params)
        return x2 * torch.exp(s) + t, s.flatten(1).sum(1)

    def uncouple(self, z2: Tensor, params: Tensor) -> Tensor:
        s, t = self._st(z2, params)
        return (z2 - t) * torch.exp(-s)


class ChannelCoupling(Coupling):
    """RealNVP affine coupling with a channel mask, on the `Coupling` base: (s, t) = NN(x1),
    z2 = x2 exp(tanh-scaled s) + t. x [B,C,H,W]; logdet = sum s. ``flip`` keeps the second half
    instead of the first (the channels are reversed around the split).

    Args:
        channels: C.
        flip: keep the second half of the channels instead of the first.
        width: hidden channels of the ResNet s/t network.
        blocks: its residual blocks.

    References:
        Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP", ICLR 2017
            (arXiv:1605.08803).
    """

    def __init__(self, channels: int, flip: bool, width: int = 64, blocks: int = 8):
        keep, transformed = split_channels(channels)
        super().__init__(channels, ResNet(keep, 2 * transformed, width, blocks))
        self.flip = flip
        self.scale = nn.Parameter(torch.ones(1, transformed, 1, 1))

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return super().split(x.flip(1) if self.flip else x)

    def join(self, x1: Tensor, z2: Tensor) -> Tensor:
        x = super().join(x1, z2)
        return x.flip(1) if self.flip else x

    def _st(self, params: Tensor) -> tuple[Tensor, Tensor]:
        s, t = params.chunk(2, dim=1)
        return self.scale * torch.tanh(s), t

    def couple(self, x2: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self._st(params)
        return x2 * torch.exp(s) + t, s.flatten(1).sum(1)

    def uncouple(self, z2: Tensor, params: Tensor) -> Tensor:
        s, t = self._st(params)
        return (z2 - t) * torch.exp(-s)
