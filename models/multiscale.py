"""Multiscale pieces: squeeze, the Glow split, levels, flattening, and their output shapes.

A multiscale flow of L levels maps x [B,C,H,W] to a flat latent [B, C*H*W]: each level squeezes
(C, H, W) -> (4C, H/2, W/2), runs its K steps, and factors out the last C//2 channels through a
learned Gaussian (`GaussianSplit`); the last level keeps everything. `squeezed_shape` and
`level_shapes` compute those shapes once, for every architecture.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from models.core import (
    Bijection,
    Compose,
    Shape,
    ZeroConv2d,
    check_image,
    split_channels,
    zero_logdet,
)


def squeezed_shape(shape: Shape) -> Shape:
    """(C, H, W) -> (4C, H/2, W/2); a ValueError for odd H or W."""
    c, h, w = shape
    if h % 2 or w % 2:
        raise ValueError(f"cannot squeeze odd shape {(c, h, w)}")
    return c * 4, h // 2, w // 2


def level_shapes(input_shape: Shape, levels: int, squeeze_first: bool = True) -> list[Shape]:
    """The (C, H, W) each level's steps see: squeeze (the first level only if
    ``squeeze_first``), then the next level gets the kept C - C//2 channels."""
    shape, shapes = tuple(input_shape), []
    for level in range(levels):
        if squeeze_first or level > 0:
            try:
                shape = squeezed_shape(shape)
            except ValueError as err:
                raise ValueError(f"level {level} {err}") from None
        shapes.append(shape)
        shape = (split_channels(shape[0])[0], *shape[1:])
    return shapes


class Squeeze(Bijection):
    """Space to depth. x [B,C,H,W] -> z [B,4C,H/2,W/2]; logdet = 0.

    Output channel ``c * 4 + 2 * i + j`` holds input channel ``c`` at offset ``(i, j)`` of each
    2x2 block (the RealNVP/Glow order).
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, None, "Squeeze")
        b, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(
                f"Squeeze expects even height and width [B, C, 2h, 2w], got shape {tuple(x.shape)}"
            )
        z = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return z.reshape(b, c * 4, h // 2, w // 2), zero_logdet(x)

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, None, "Squeeze.inverse")
        b, c, h, w = z.shape
        if c % 4:
            raise ValueError(
                f"Squeeze.inverse expects channels divisible by 4, got shape {tuple(z.shape)}"
            )
        x = z.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c // 4, h * 2, w * 2)


class GaussianSplit(Bijection):
    """Glow split with a learned conditional Gaussian prior, written as a bijection.

    x [B,C,H,W] = (x1, x2) with x1 the first ``C - C//2`` channels; (mu, log_sigma) = g(x1) with
    g a zero-initialised 3x3 conv. z = (x1, (x2 - mu) / sigma) and logdet = -sum log_sigma, so a
    standard normal on z equals Glow's ``N(x2; mu, sigma)`` on the factored-out half.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.keep, transformed = split_channels(channels)
        self.prior = ZeroConv2d(self.keep, 2 * transformed)

    def _params(self, x1: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_sigma = self.prior(x1).chunk(2, dim=1)
        return mean, log_sigma

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, "GaussianSplit")
        x1, x2 = x[:, : self.keep], x[:, self.keep :]
        mean, log_sigma = self._params(x1)
        z2 = (x2 - mean) * torch.exp(-log_sigma)
        return torch.cat([x1, z2], dim=1), -log_sigma.flatten(1).sum(1)

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.channels, "GaussianSplit.inverse")
        z1, z2 = z[:, : self.keep], z[:, self.keep :]
        mean, log_sigma = self._params(z1)
        return torch.cat([z1, z2 * torch.exp(log_sigma) + mean], dim=1)


class MultiscaleLevel(Bijection):
    """One level of a multiscale flow: squeeze, K steps, split, then the inner levels on x1.

    x [B,C,H,W] -> z [B, C*H*W] (flat): the factored-out half ``z2`` of this level followed by the
    flat latent of the inner levels. The last level (``inner=None``) has no split and flattens.
    logdet = sum of the steps' logdets + the split's + the inner levels'. ``shape`` is (C, H, W)
    after the squeeze.

    Args:
        steps: the bijections after the squeeze, at ``shape``.
        shape: (C, H, W) after the squeeze.
        inner: the next level (on the kept channels), or None for the last level.
        squeeze: squeeze first (2x2 space to channels).
        split_prior: the factored-out half gets Glow's learned conditional prior
            (`GaussianSplit`); False factors it out to the standard normal as is (Real NVP,
            FFJORD).
        before_squeeze: bijections applied before the squeeze, at the unsqueezed shape (FFJORD's
            levels have blocks on both sides of the squeeze).
    """

    def __init__(
        self,
        steps: Sequence[Bijection],
        shape: tuple[int, int, int],
        inner: MultiscaleLevel | None = None,
        squeeze: bool = True,
        split_prior: bool = True,
        before_squeeze: Sequence[Bijection] = (),
    ):
        super().__init__()
        self.before_squeeze = Compose(before_squeeze) if before_squeeze else None
        self.squeeze = Squeeze() if squeeze else None
        self.steps = Compose(steps)
        self.shape = tuple(shape)
        self.inner = inner
        self.keep = split_channels(shape[0])[0]
        self.split = GaussianSplit(shape[0]) if inner is not None and split_prior else None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the level's input: ``shape`` before the squeeze."""
        c, h, w = self.shape
        return (c // 4, 2 * h, 2 * w) if self.squeeze is not None else self.shape

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"MultiscaleLevel expects [B, {', '.join(map(str, self.input_shape))}], "
                f"got shape {tuple(x.shape)}"
            )
        logdet = zero_logdet(x)
        if self.before_squeeze is not None:
            x, logdet = self.before_squeeze(x)
        if self.squeeze is not None:
            x, _ = self.squeeze(x)
        x, ld = self.steps(x)
        logdet = logdet + ld
        if self.inner is None:
            return x.flatten(1), logdet
        if self.split is not None:
            x, ld = self.split(x)
            logdet = logdet + ld
        z_inner, ld_inner = self.inner(x[:, : self.keep])
        return torch.cat([x[:, self.keep :].flatten(1), z_inner], dim=1), logdet + ld_inner

    def inverse(self, z: Tensor) -> Tensor:
        c, h, w = self.shape
        if self.inner is None:
            x = z.reshape(-1, c, h, w)
        else:
            n_out = (c - self.keep) * h * w
            x1 = self.inner.inverse(z[:, n_out:])
            x = torch.cat([x1, z[:, :n_out].reshape(-1, c - self.keep, h, w)], dim=1)
            if self.split is not None:
                x = self.split.inverse(x)
        x = self.steps.inverse(x)
        if self.squeeze is not None:
            x = self.squeeze.inverse(x)
        return self.before_squeeze.inverse(x) if self.before_squeeze is not None else x

    def auxiliary_loss(self) -> Tensor | None:
        parts = [self.steps.auxiliary_loss()]
        if self.before_squeeze is not None:
            parts.append(self.before_squeeze.auxiliary_loss())
        if self.inner is not None:
            parts.append(self.inner.auxiliary_loss())
        parts = [p for p in parts if p is not None]
        return sum(parts) if parts else None


def multiscale(
    input_shape: tuple[int, int, int],
    levels: int,
    make_steps,
    squeeze_first: bool = True,
) -> MultiscaleLevel:
    """Build L levels: each squeezes, applies ``make_steps((C, H, W), level)`` (a list of
    bijections, the K steps of that level, at that level's shape), and splits half the channels
    off (Glow; the last level does not split). input [B,C,H,W] -> flat latent [B, C*H*W].
    """
    shapes = level_shapes(input_shape, levels, squeeze_first)
    inner = None
    for level in reversed(range(levels)):
        shape = shapes[level]
        squeeze = squeeze_first or level > 0
        inner = MultiscaleLevel(make_steps(shape, level), shape, inner=inner, squeeze=squeeze)
    return inner


class FlattenLatent(Bijection):
    """Flatten x [B,C,H,W] -> z [B, C*H*W]; logdet = 0 (a single-scale flow's last step)."""

    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.flatten(1), zero_logdet(x)

    def inverse(self, z: Tensor) -> Tensor:
        return z.reshape(-1, *self.shape)
