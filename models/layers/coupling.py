"""The coupling base every channel coupling shares.

x [B,C,H,W] = (x1, x2) split on channels (x1 the first C - C//2, `models.core.split_channels`);
the injected network sees x1 and gives the parameters of an invertible map of x2:

    z = (x1, couple(x2; net(x1))),   logdet = log|det d couple / d x2|,
    x = (z1, uncouple(z2; net(z1))).

Subclasses choose the network and the map (affine: Glow, RealNVP; additive: NICE).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.core import Bijection, check_image, split_channels


class Coupling(Bijection):
    """Base of channel couplings. Args: ``channels`` (C >= 2) and ``net``, a module mapping x1
    [B, C - C//2, H, W] to the parameters that `couple` and `uncouple` read."""

    def __init__(self, channels: int, net: nn.Module):
        super().__init__()
        if channels < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 channels, got {channels}")
        self.channels = channels
        self.keep, self.transformed = split_channels(channels)
        self.net = net

    def couple(self, x2: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """(z2, logdet [B]) of the transformed half."""
        raise NotImplementedError

    def uncouple(self, z2: Tensor, params: Tensor) -> Tensor:
        """x2 from z2: the inverse of `couple` for the same ``params``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, type(self).__name__)
        x1, x2 = x[:, : self.keep], x[:, self.keep :]
        z2, logdet = self.couple(x2, self.net(x1))
        return torch.cat([x1, z2], 1), logdet

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.channels, f"{type(self).__name__}.inverse")
        z1, z2 = z[:, : self.keep], z[:, self.keep :]
        return torch.cat([z1, self.uncouple(z2, self.net(z1))], 1)
