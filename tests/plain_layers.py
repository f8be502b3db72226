"""Layers written as plain ``torch.nn.Module``s, importing nothing of the suite: the contract the
README states (``forward(x) -> (z, logdet[B])``, ``inverse(z) -> x``) and no more. For the
tests of `tests/test_any_layer.py` (``tests/plain_layers.py:NAME``): one right layer, and two
whose values are exact but which cannot train (the kind of bug only a training step shows).

Math of `GivensScale`. For C channels, angles t_1 .. t_{C-1} and a log-scale s in R^C,

    G_k  = the rotation by t_k in the plane of channels (k-1, k)   (orthogonal, det 1)
    W    = diag(exp(s)) G_{C-1} ... G_1                           (a 1x1 convolution)
    z[b, :, h, w] = W x[b, :, h, w];   logdet = H W_img sum(s) per example
    x[b, :, h, w] = G_1^T ... G_{C-1}^T diag(exp(-s)) z[b, :, h, w].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GivensScale(nn.Module):
    """z = diag(exp(s)) G_{C-1} ... G_1 x per pixel; logdet = H W sum(s). x, z [B, C, H, W]."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.angles = nn.Parameter(torch.randn(channels - 1))
        self.log_scale = nn.Parameter(torch.zeros(channels))

    def rotation(self) -> Tensor:
        """Q = G_{C-1} ... G_1 [C, C], built by rotating pairs of rows of the identity."""
        eye = torch.eye(self.channels, dtype=self.angles.dtype, device=self.angles.device)
        rows = list(eye)
        for k, angle in enumerate(self.angles):
            cos, sin = torch.cos(angle), torch.sin(angle)
            upper, lower = rows[k], rows[k + 1]
            rows[k], rows[k + 1] = cos * upper - sin * lower, sin * upper + cos * lower
        return torch.stack(rows)

    def logdet(self, x: Tensor) -> Tensor:
        return x.shape[2] * x.shape[3] * self.log_scale.sum() * x.new_ones(x.shape[0])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        weight = torch.exp(self.log_scale)[:, None] * self.rotation()
        return torch.einsum("ij,bjhw->bihw", weight, x), self.logdet(x)

    def inverse(self, z: Tensor) -> Tensor:
        weight = self.rotation().T * torch.exp(-self.log_scale)[None, :]
        return torch.einsum("ij,bjhw->bihw", weight, z)


class DetachedLogdetGivens(GivensScale):
    """The logdet's value is right but detached: training never sees d logdet / d s."""

    def logdet(self, x: Tensor) -> Tensor:
        return super().logdet(x).detach()


class DetachedShiftGivens(GivensScale):
    """Adds a per-channel shift b after W, read detached in forward: exact, but b never
    receives a gradient, so it never trains."""

    def __init__(self, channels: int):
        super().__init__(channels)
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z, logdet = super().forward(x)
        return z + self.shift.detach()[:, None, None], logdet

    def inverse(self, z: Tensor) -> Tensor:
        return super().inverse(z - self.shift[:, None, None])
