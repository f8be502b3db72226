"""The bijection contract, composition, preprocessing and `Flow` (multiscale pieces:
`models.multiscale`).

Contract (DESIGN.md), one convention everywhere:

- ``forward(x) -> (z, logdet)`` is the density direction, data to latent; ``logdet`` has shape
  ``[B]`` and equals ``log|det dz/dx|`` per example.
- ``inverse(z) -> x`` is the sampling direction.

A `Flow` wraps a transform with a standard normal base: ``log_prob(x) = log N(z; 0, I) + logdet``.
Dequantization, scaling by 1/256 and the optional logit live inside the model as bijections, so
``bpd = -log_prob(x) / (D ln 2)`` for the uint8 image ``x`` (0..255) counts ``log 256`` once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

LOG_2PI = math.log(2 * math.pi)


class Bijection(nn.Module):
    """Base class. ``forward(x) -> (z, logdet[B])`` (density direction), ``inverse(z) -> x``.

    ``domain``: the open interval of valid inputs, ``None`` for all reals (tests sample there).
    """

    domain: tuple[float, float] | None = None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def auxiliary_loss(self) -> Tensor | None:
        """Extra training loss [B] per example from the last forward call (SNF reconstruction)."""
        return None


def zero_logdet(x: Tensor) -> Tensor:
    """A ``[B]`` zero logdet on the input's device and dtype."""
    return x.new_zeros(x.shape[0])


def check_image(x: Tensor, channels: int | None, name: str) -> None:
    """Raise ``ValueError`` naming the expected and actual shape of a ``[B, C, H, W]`` input."""
    if x.dim() != 4:
        raise ValueError(f"{name} expects input [B, C, H, W], got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} expects {channels} channels, got input of shape {tuple(x.shape)}")


def split_channels(channels: int) -> tuple[int, int]:
    """(kept, transformed) channel counts of a coupling or split: x1 is the first C - C//2
    channels, x2 the last C//2 (Glow's and RealNVP's convention, used by every coupling)."""
    return channels - channels // 2, channels // 2


def dense_matrix(linear_fn, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """The explicit [D, D] matrix of a linear map on [*shape] inputs (D = prod(shape)), rows and
    columns in row-major order of ``shape``; built by applying ``linear_fn`` to the basis."""
    d = math.prod(shape)
    basis = torch.eye(d, dtype=like.dtype, device=like.device).reshape(d, *shape)
    return linear_fn(basis).reshape(d, d).T


class Compose(Bijection):
    """Composition ``f_n o ... o f_1``. forward applies in order and sums logdets [B]."""

    def __init__(self, layers: Iterable[Bijection]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = zero_logdet(x)
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor) -> Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z

    def auxiliary_loss(self) -> Tensor | None:
        """Sum over the layers of their per-example auxiliary losses, [B]."""
        losses = [loss for layer in self.layers if (loss := layer.auxiliary_loss()) is not None]
        return sum(losses) if losses else None


class ZeroConv2d(nn.Module):
    """Glow's zero-initialised 3x3 conv with a learned per-channel output scale exp(3 * logs)."""

    def __init__(self, in_channels: int, out_channels: int, logscale_factor: float = 3.0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.logs = nn.Parameter(torch.zeros(out_channels, 1, 1))
        self.logscale_factor = logscale_factor
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) * torch.exp(self.logs * self.logscale_factor)


class ElementwiseShift(Bijection):
    """z = x + b with a learned b per element of [*shape] (SNF's ConvExp biases); logdet = 0."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(*shape))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x + self.shift, zero_logdet(x)

    def inverse(self, z: Tensor) -> Tensor:
        return z - self.shift


class UniformDequantization(Bijection):
    """x in {0..255} -> x + u, u ~ U[0, 1) per element; logdet = 0. Inverse: floor, clamped.

    Stochastic, so it sits outside `layer_examples()`; ``tests/test_core.py`` checks it directly.
    """

    def __init__(self, num_levels: int = 256):
        super().__init__()
        self.num_levels = num_levels

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x + torch.rand_like(x), zero_logdet(x)

    def inverse(self, z: Tensor) -> Tensor:
        return torch.floor(z).clamp(0, self.num_levels - 1)


class Scale(Bijection):
    """z = x * factor; logdet = D log|factor| with D = elements per example (1/256 for images)."""

    def __init__(self, factor: float = 1.0 / 256):
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        d = x[0].numel()
        return x * self.factor, x.new_full((x.shape[0],), d * math.log(abs(self.factor)))

    def inverse(self, z: Tensor) -> Tensor:
        return z / self.factor


class Logit(Bijection):
    """RealNVP's logit: s = alpha + (1 - 2 alpha) x, z = log s - log(1 - s), x in (0, 1).

    logdet = sum [log(1 - 2 alpha) - log s - log(1 - s)].
    """

    domain = (0.0, 1.0)

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise ValueError(f"Logit alpha must be in [0, 0.5), got {alpha}")
        self.alpha = alpha

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s = self.alpha + (1 - 2 * self.alpha) * x
        z = torch.log(s) - torch.log1p(-s)
        ld = math.log(1 - 2 * self.alpha) - torch.log(s) - torch.log1p(-s)
        return z, ld.flatten(1).sum(1)

    def inverse(self, z: Tensor) -> Tensor:
        return (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha)


class Shift(Bijection):
    """z = x + shift (e.g. -0.5 to centre data scaled to [0, 1)); logdet = 0."""

    def __init__(self, shift: float = -0.5):
        super().__init__()
        self.shift = shift

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x + self.shift, zero_logdet(x)

    def inverse(self, z: Tensor) -> Tensor:
        return z - self.shift


def image_preprocessing(logit_alpha: float | None = None) -> list[Bijection]:
    """Dequantize, scale by 1/256, then logit (if alpha given) or centre to [-0.5, 0.5)."""
    tail: Bijection = Logit(logit_alpha) if logit_alpha is not None else Shift(-0.5)
    return [UniformDequantization(), Scale(1.0 / 256), tail]


class Flow(nn.Module):
    """A normalizing flow with a standard normal base on the flat latent.

    ``transform``: a bijection from ``[B, *input_shape]`` to the flat latent ``[B, D]`` (end a
    single-scale transform with `FlattenLatent`). ``preprocessing``: bijections applied first
    (dequantization, scaling, logit).
    log_prob(x) = log N(z; 0, I) + logdet, per example [B].
    """

    def __init__(
        self,
        transform: Bijection,
        input_shape: tuple[int, int, int],
        preprocessing: Sequence[Bijection] = (),
    ):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.preprocessing = Compose(preprocessing)
        self.transform = transform

    @property
    def num_dims(self) -> int:
        return math.prod(self.input_shape)

    def _check(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"Flow expects input [B, {', '.join(map(str, self.input_shape))}], "
                f"got shape {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        x, logdet = self.preprocessing(x)
        z, ld = self.transform(x)
        return z, logdet + ld

    def inverse(self, z: Tensor) -> Tensor:
        return self.preprocessing.inverse(self.transform.inverse(z))

    def generate(self, z: Tensor) -> Tensor:
        """x = inverse(z): the interface samplers (FID) share with other generators."""
        return self.inverse(z)

    def log_prob(self, x: Tensor) -> Tensor:
        z, logdet = self(x)
        z = z.flatten(1)
        log_base = -0.5 * (z.pow(2).sum(1) + z.shape[1] * LOG_2PI)
        return log_base + logdet

    def bpd(self, x: Tensor) -> Tensor:
        """Bits per dimension [B] of the uint8-valued image x: -log_prob(x) / (D ln 2)."""
        return -self.log_prob(x) / (self.num_dims * math.log(2))

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """Draw n samples [n, *input_shape]: z ~ N(0, temperature^2 I), x = inverse(z)."""
        param = next(self.parameters(), None)
        like = param if param is not None else torch.zeros(())
        z = like.new_empty((n, self.num_dims)).normal_() * temperature
        return self.inverse(z)

    def auxiliary_loss(self) -> Tensor | None:
        """Sum of the layers' auxiliary losses from the last forward (SNF reconstruction)."""
        return self.transform.auxiliary_loss()
