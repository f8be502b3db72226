"""The coupling base every coupling shares.

x [B,C,H,W] is split into a conditioning part x1 and a transformed part x2 (`Coupling.split`:
by default x1 the first C - C//2 channels, `models.core.split_channels`); the injected network
sees x1 and gives the parameters of an invertible map of x2:

    z = join(x1, couple(x2; net(x1))),   logdet = log|det d couple / d x2|,
    x = join(z1, uncouple(z2; net(z1))).

Subclasses choose the network, the map (affine: Glow, RealNVP; additive: NICE) and, where the
split is not the channel halves, `split` and `join` (RealNVP's checkerboard and flipped
channel masks).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.core import Bijection, check_image, split_channels


class Coupling(Bijection):
    """Base of couplings. Args: ``channels`` (C >= `min_channels`) and ``net``, a module mapping
    x1 (the first part of `split`) to the parameters that `couple` and `uncouple` read."""

    min_channels = 2

    def __init__(self, channels: int, net: nn.Module):
        super().__init__()
        if channels < self.min_channels:
            raise ValueError(
                f"{type(self).__name__} needs at least {self.min_channels} channels, got {channels}"
            )
        self.channels = channels
        self.keep, self.transformed = split_channels(channels)
        self.net = net

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(x1, x2): what the network sees and what is transformed; the channel halves."""
        return x[:, : self.keep], x[:, self.keep :]

    def join(self, x1: Tensor, z2: Tensor) -> Tensor:
        """The output from x1 and the transformed z2: the inverse of `split`."""
        return torch.cat([x1, z2], 1)

    def couple(self, x2: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """(z2, logdet [B]) of the transformed part."""
        raise NotImplementedError

    def uncouple(self, z2: Tensor, params: Tensor) -> Tensor:
        """x2 from z2: the inverse of `couple` for the same ``params``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, type(self).__name__)
        x1, x2 = self.split(x)
        z2, logdet = self.couple(x2, self.net(x1))
        return self.join(x1, z2), logdet

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.channels, f"{type(self).__name__}.inverse")
        z1, z2 = self.split(z)
        return self.join(z1, self.uncouple(z2, self.net(z1)))
