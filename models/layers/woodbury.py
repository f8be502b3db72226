"""Woodbury transformations (Lu & Huang 2020): low-rank updates of the identity along channels
and along spatial positions, inverted with the Woodbury identity.

Channel: z = (I_C + U_c V_c) x at every pixel; spatial: z = (I_N + U_s V_s) x along the N = H W
positions of every channel. logdet = H W log|det(I_d + V_c U_c)| + C log|det(I_d + V_s U_s)| by
Sylvester's identity; inverse (I + U V)^-1 = I - U (I_d + V U)^-1 V. A singular I_d + V U raises.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.core import Bijection


def _low_rank_update(n: int, d: int) -> tuple[nn.Parameter, nn.Parameter]:
    u = nn.Parameter(torch.randn(n, d) * 0.01)
    v = nn.Parameter(torch.randn(d, n) * 0.01)
    return u, v


def _capacitance(u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """(I_d + V U, log|det|); raises on a singular capacitance matrix."""
    cap = torch.eye(u.shape[1], dtype=u.dtype, device=u.device) + v @ u
    sign, logabsdet = torch.linalg.slogdet(cap)
    if sign == 0 or not torch.isfinite(logabsdet):
        raise ValueError("Woodbury: I + V U is singular, the transformation is not invertible")
    return cap, logabsdet


class Woodbury(Bijection):
    """Channel then spatial Woodbury transformation of rank d (16 in the paper; at most the
    dimension). x [B,C,H,W] on a fixed (C, H, W); logdet as in the module docstring.

    Args:
        shape: (C, H, W) of the input.
        rank: d of the channel and spatial low-rank updates (16 in the paper; at most the
            dimension).

    References:
        Lu & Huang, "Woodbury Transformations for Deep Generative Flows", NeurIPS 2020
            (arXiv:2002.02145).
    """

    def __init__(self, shape: tuple[int, int, int], rank: int = 16):
        super().__init__()
        c, h, w = shape
        self.shape = tuple(shape)
        self.channel_u, self.channel_v = _low_rank_update(c, min(rank, c))
        self.spatial_u, self.spatial_v = _low_rank_update(h * w, min(rank, h * w))

    def _check(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"Woodbury expects [B, {', '.join(map(str, self.shape))}], got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        b, c, h, w = x.shape
        _, ld_c = _capacitance(self.channel_u, self.channel_v)
        _, ld_s = _capacitance(self.spatial_u, self.spatial_v)
        flat = x.reshape(b, c, h * w)
        flat = flat + torch.einsum("cd,de,ben->bcn", self.channel_u, self.channel_v, flat)
        flat = flat + torch.einsum("bcm,md,dn->bcn", flat, self.spatial_v.T, self.spatial_u.T)
        logdet = h * w * ld_c + c * ld_s
        return flat.reshape(b, c, h, w), logdet.expand(b)

    def inverse(self, z: Tensor) -> Tensor:
        self._check(z)
        b, c, h, w = z.shape
        flat = z.reshape(b, c, h * w)
        cap_s, _ = _capacitance(self.spatial_u, self.spatial_v)
        # rows: flat (I + U_s V_s)^T = flat ... solve along positions: x = z - U (cap^-1 (V z))
        vz = torch.einsum("dn,bcn->bcd", self.spatial_v, flat)
        flat = flat - torch.einsum(
            "nd,bcd->bcn",
            self.spatial_u,
            torch.linalg.solve(cap_s, vz.transpose(1, 2)).transpose(1, 2),
        )
        cap_c, _ = _capacitance(self.channel_u, self.channel_v)
        vz = torch.einsum("dc,bcn->bdn", self.channel_v, flat)
        flat = flat - torch.einsum("cd,bdn->bcn", self.channel_u, torch.linalg.solve(cap_c, vz))
        return flat.reshape(b, c, h, w)
