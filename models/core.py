"""The bijection contract, composition, preprocessing and `Flow` (multiscale pieces:
`models.multiscale`).

The contract, one convention everywhere:

- ``forward(x) -> (z, logdet)`` is the density direction, data to latent; ``logdet`` has shape
  ``[B]`` and equals ``log|det dz/dx|`` per example.
- ``inverse(z) -> x`` is the sampling direction.

A `Flow` wraps a transform with a standard normal base: ``log_prob(x) = log N(z; 0, I) + logdet``.
Dequantization, scaling by 1/256 and the optional logit live inside the model as bijections, so
``bpd = -log_prob(x) / (D ln 2)`` for the uint8 image ``x`` (0..255) counts ``log 256`` once.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

LOG_2PI = math.log(2 * math.pi)
Shape = tuple[int, int, int]  # an image's (C, H, W), without the batch


class SingularOperatorError(ValueError):
    """A layer's linear operator is singular or has non-finite entries: it is not a bijection, so
    its solve or logdet would be silently non-finite. The message names the layer."""


class UnsupportedDtypeError(TypeError):
    """An input dtype other than float32 or float64 given to a layer or a flow."""


# The dtype policy: layers and flows compute in float32 or float64 and refuse anything else.
# Half precision (float16, bfloat16) is refused rather than supported: a logdet summed over
# thousands of dimensions loses whole nats in it, and torch.linalg (the solvers, slogdet) has no
# half-precision kernels, torch.fft only on CUDA for power-of-2 sizes.
SUPPORTED_DTYPES = (torch.float32, torch.float64)


def check_dtype(x: Tensor, name: str) -> None:
    """Raise `UnsupportedDtypeError` naming ``name`` unless x is float32 or float64."""
    if x.dtype not in SUPPORTED_DTYPES:
        raise UnsupportedDtypeError(
            f"{name}: {x.dtype} input is not supported; layers and flows compute in float32 or "
            "float64 (convert with .float() or .double())"
        )


def _dtype_checked(method):
    """``method(self, x, ...)`` that first applies `check_dtype` to a tensor x."""

    @functools.wraps(method)
    def checked(self, x, *args, **kwargs):
        if isinstance(x, Tensor):
            check_dtype(x, f"{type(unwrapped(self)).__name__}.{method.__name__}")
        return method(self, x, *args, **kwargs)

    checked.dtype_checked = True
    return checked


class Bijection(nn.Module):
    """Base class. ``forward(x) -> (z, logdet[B])`` (density direction), ``inverse(z) -> x``.

    ``domain``: the open interval of valid inputs, ``None`` for all reals (tests sample there).

    Every subclass's ``forward`` and ``inverse`` refuse an input that is not float32 or float64
    with `UnsupportedDtypeError` naming the layer (`SUPPORTED_DTYPES`): one O(1) check per
    call, added here for every layer, also ones written outside the package.
    """

    domain: tuple[float, float] | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("forward", "inverse"):
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "dtype_checked", False):
                setattr(cls, name, _dtype_checked(method))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def auxiliary_loss(self) -> Tensor | None:
        """Extra training loss [B] per example from the last forward call (SNF reconstruction)."""
        return None


class ModuleBijection(Bijection):
    """A plain ``torch.nn.Module`` with ``forward(x) -> (z, logdet[B])`` and ``inverse(z) -> x``
    as a `Bijection`: the one adapter through which a layer written outside the package (and
    not subclassing `Bijection`) enters `Compose`, `Flow` and training (`models.slots`
    applies it to whatever a layer factory returns).

    It adds what `Bijection` gives every layer: the dtype check on both directions, the
    wrapped module's ``domain`` (``None`` if it declares none) and ``auxiliary_loss()`` (the
    module's own if it has one, else ``None``). The wrapped module is ``self.module``, so its
    parameters are named ``module.<name>`` in the state dict.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.domain = getattr(module, "domain", None)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.module(x)

    def inverse(self, z: Tensor) -> Tensor:
        return self.module.inverse(z)

    def auxiliary_loss(self) -> Tensor | None:
        own = getattr(self.module, "auxiliary_loss", None)
        return own() if callable(own) else None


def as_bijection(layer: nn.Module) -> Bijection:
    """``layer`` itself if it is a `Bijection`, else wrapped in `ModuleBijection`."""
    return layer if isinstance(layer, Bijection) else ModuleBijection(layer)


def unwrapped(layer: nn.Module) -> nn.Module:
    """The user's module inside a `ModuleBijection`, else ``layer``: what messages name."""
    return layer.module if isinstance(layer, ModuleBijection) else layer


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
        d = math.prod(x.shape[1:])  # not x[0].numel(): batch size 0 is allowed
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
    """Dequantize, scale by 1/256, then logit (if alpha given) or centre to [-0.5, 0.5).

    Every image flow builder (`models.registry.MODELS`) takes ``logit_alpha``, defaulting to
    its paper's choice, and gives its flow ``image_preprocessing(logit_alpha)``: the
    preprocessing is declared in the builder's signature (`declared_preprocessing`)."""
    tail: Bijection = Logit(logit_alpha) if logit_alpha is not None else Shift(-0.5)
    return [UniformDequantization(), Scale(1.0 / 256), tail]


def declared_preprocessing(build: Callable[..., Flow], **kwargs) -> list[Bijection]:
    """The preprocessing that ``build(**kwargs)`` gives its flow, read from ``kwargs`` and the
    builder's ``logit_alpha`` default without building the model (reports need no model)."""
    name = getattr(getattr(build, "func", build), "__name__", repr(build))
    parameter = inspect.signature(build).parameters.get("logit_alpha")
    if parameter is None:
        raise TypeError(f"flow builder {name} does not declare its preprocessing (logit_alpha)")
    alpha = kwargs.get("logit_alpha", parameter.default)
    if alpha is inspect.Parameter.empty:
        raise TypeError(f"flow builder {name} has no logit_alpha default and none was given")
    return image_preprocessing(alpha)


class Flow(nn.Module):
    """A normalizing flow with a standard normal base on the flat latent.

    ``transform``: a bijection from ``[B, *input_shape]`` to the flat latent ``[B, D]`` (end a
    single-scale transform with `FlattenLatent`). ``preprocessing``: bijections applied first
    (dequantization, scaling, logit).
    log_prob(x) = log N(z; 0, I) + logdet, per example [B].

    Input checks (``forward``, so ``log_prob`` and ``bpd``): `UnsupportedDtypeError` unless
    float32 or float64 (`SUPPORTED_DTYPES`; a uint8 image too: pass it as floats), a
    ``ValueError`` for NaN or inf values and for values outside `pixel_range` when the flow
    dequantizes uint8 images; one min/max pass over the input, once per call (not per layer).
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

    @property
    def pixel_range(self) -> tuple[float, float] | None:
        """(0, 255) when the preprocessing starts by dequantizing uint8 images (then the input
        must be pixel values), else ``None``: any finite value."""
        first = self.preprocessing.layers[0] if len(self.preprocessing.layers) else None
        if isinstance(first, UniformDequantization):
            return 0.0, float(first.num_levels - 1)
        return None

    def _check(self, x: Tensor) -> None:
        """float32/float64 (else `UnsupportedDtypeError`), shape [B, *input_shape], finite
        values, inside `pixel_range` (else ``ValueError``)."""
        name = type(self).__name__
        check_dtype(x, name)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{name} expects input [B, {', '.join(map(str, self.input_shape))}], "
                f"got shape {tuple(x.shape)}"
            )
        if x.numel() == 0:
            return
        lo, hi = torch.stack(torch.aminmax(x.detach())).tolist()
        if math.isnan(lo) or math.isnan(hi):
            raise ValueError(f"{name} expects finite input, got NaN values")
        bounds = self.pixel_range
        if bounds is None and not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{name} expects finite input, got values in [{lo:g}, {hi:g}]")
        if bounds is not None and not bounds[0] <= lo <= hi <= bounds[1]:
            raise ValueError(
                f"{name} expects pixel values in {bounds[0]:g}..{bounds[1]:g}, got values in "
                f"[{lo:g}, {hi:g}] (the uint8 image as floats; the flow adds the dequantization "
                "noise)"
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

    def training_loss(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(loss, bpd) that training minimises and logs: the batch mean of (-log p(x) plus the
        layers' `auxiliary_loss`) / (D ln 2), and the batch's mean BPD without the auxiliary
        losses. ``bench.tasks.flow.FlowTask`` trains by it and ``check-layer``'s
        ``train_step`` takes one step by it."""
        nats = -self.log_prob(x)
        bpd = nats.mean() / (self.num_dims * math.log(2))
        aux = self.auxiliary_loss()
        if aux is not None:
            nats = nats + aux
        return nats.mean() / (self.num_dims * math.log(2)), bpd

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
