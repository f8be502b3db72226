"""A layer written outside the package: a 1x1 convolution by a Householder product and a scale.

Check it against the contract the registry's layers are held to (README, "Compare your layer"):

    python -m bench check-layer examples/householder.py:HouseholderConv1x1 --shape 4,3,5

Math. For C channels and K reflection vectors v_1 .. v_K in R^C,

    H_i = I - 2 v_i v_i^T / |v_i|^2        (a reflection: symmetric, orthogonal, det -1)
    Q   = H_1 H_2 ... H_K                  (orthogonal; K = C reaches every orthogonal matrix)
    W   = diag(exp(s)) Q                   (s in R^C: a learnable log-scale per channel)

and every pixel's channel vector is multiplied by W (a 1x1 convolution):

    forward  (density direction):  z[b, :, h, w] = W x[b, :, h, w]
    logdet   = H W_img sum_c s_c   per example, since |det Q| = 1 and the same W acts on each of
               the H W_img pixels (W_img the image width)
    inverse  (sampling direction): x[b, :, h, w] = Q^T diag(exp(-s)) z[b, :, h, w],
               Q^T = H_K ... H_1 (each H_i is its own inverse).

Shapes: x, z [B, C, H, W_img]; logdet [B]; parameters ``vectors`` [K, C] and ``log_scale`` [C].
Initialised at a random orthogonal Q (normal vectors) and s = 0. It holds no tensor of its own
dtype or device beyond its parameters, so it follows the input's (after ``.to(...)``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.core import Bijection


class HouseholderConv1x1(Bijection):
    """z = diag(exp(s)) H_1 ... H_K x per pixel; logdet = H W sum(s). x, z [B, C, H, W]."""

    def __init__(self, channels: int, reflections: int | None = None):
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.channels = channels
        self.vectors = nn.Parameter(torch.randn(reflections or channels, channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))

    def orthogonal(self) -> Tensor:
        """Q = H_1 H_2 ... H_K [C, C], built by reflecting the identity's rows."""
        q = torch.eye(self.channels, dtype=self.vectors.dtype, device=self.vectors.device)
        for v in self.vectors:
            q = q - 2 * torch.outer(q @ v, v) / (v @ v)  # q <- q H_i
        return q

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        weight = torch.exp(self.log_scale)[:, None] * self.orthogonal()
        z = torch.einsum("ij,bjhw->bihw", weight, x)
        pixels = x.shape[2] * x.shape[3]
        logdet = pixels * self.log_scale.sum() * x.new_ones(x.shape[0])
        return z, logdet

    def inverse(self, z: Tensor) -> Tensor:
        weight = self.orthogonal().T * torch.exp(-self.log_scale)[None, :]
        return torch.einsum("ij,bjhw->bihw", weight, z)
