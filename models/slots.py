"""Layer slots: the one place in a table's reference step where any channel-preserving invertible
layer goes, and how a layer is named there.

A slot value (a model argument such as ``inverse_flow(conv=...)``, ``glow(mix=...)`` or
``linear_flow(kind=...)``) is one of

- a built-in name of `SLOT_LAYERS` (``"inverse_conv"``, ``"invconv1x1_lu"``, ``"cdflow"``, ...);
- ``"PATH.py:FACTORY"``, a file anywhere (its folder is on ``sys.path`` while it imports);
- ``"MODULE:FACTORY"``, an importable module (the current folder is searched first, as
  ``python -m`` does);
- the name of an entry point of group ``convflow_bench.layers`` that a pip-installed package
  declares, e.g. in its pyproject.toml::

      [project.entry-points."convflow_bench.layers"]
      householder = "my_layers.householder:HouseholderConv1x1"

- or a callable factory (from Python).

A factory (a class or a function; ``a.b`` in FACTORY reaches an attribute of an attribute) is
called with the channel count C, and with the spatial shape (H, W) as well when its signature
asks for it: a parameter named ``spatial_shape``, or a second positional parameter without a
default. What it returns follows the bijection contract: ``forward(x) -> (z, logdet[B])`` with
x, z [B, C, H, W], and ``inverse(z)``. It may be a plain ``torch.nn.Module``: `build_layer`,
the one place every entry point (``check-layer``, ``compare``, the slots of the flow
templates) builds a layer through, wraps a module that is not a `models.core.Bijection` in
`models.core.ModuleBijection` (dtype checks, no auxiliary loss unless the module has one), so
what ``check-layer`` accepts is what ``compare`` trains; a `Bijection` is used as it is. A
value that cannot be resolved or built raises `LayerSpecError` with one line saying what is
wrong.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from functools import partial

from torch import nn

from models.checks import one_line
from models.core import Bijection, Compose, ElementwiseShift, Shape, as_bijection
from models.layers.circulant import CirculantDiagonal
from models.layers.emerging import ConvExponential, emerging_conv
from models.layers.glow import InvConv1x1, InvConv1x1LU
from models.layers.inverse_conv import CausalConv2d, FInCConv2d, InverseConv2d
from models.layers.snf import ExactConv2d, SelfNormConv2d
from models.layers.woodbury import Woodbury
from models.names import register

ENTRY_POINT_GROUP = "convflow_bench.layers"
SPEC_HELP = "give PATH.py:FACTORY, MODULE:FACTORY or the name of an installed entry point"


class LayerSpecError(ValueError):
    """A layer that cannot be found, imported or built (one line: what and why)."""


def _import_note(error: BaseException) -> str:
    """The exception on one line with the deepest file and line of its traceback."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return one_line(error) + where


def _load_file(path_text: str):
    from pathlib import Path

    path = Path(path_text)
    if not path.is_file():
        raise LayerSpecError(f"no file {path_text} ({SPEC_HELP})")
    name = f"_convflow_bench_user_{path.stem}"
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LayerSpecError(f"{path_text} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(name, None)
        raise LayerSpecError(f"{path_text} failed to import: {_import_note(error)}") from error
    finally:
        sys.path.remove(folder)
    return module


def _load_module(name: str):
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # first, as `python -m bench` has it; console scripts not
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and (name == error.name or name.startswith(error.name + ".")):
            raise LayerSpecError(
                f"no module named {error.name!r} for {name!r} (run from the folder that holds "
                f"it or pip install it; a file is given as PATH.py:FACTORY)"
            ) from error
        raise LayerSpecError(f"module {name} failed to import: {_import_note(error)}") from error
    except Exception as error:
        raise LayerSpecError(f"module {name} failed to import: {_import_note(error)}") from error


def _entry_point(name: str) -> tuple[Callable, str]:
    points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    found = [ep for ep in points if ep.name == name]
    if not found:
        installed = ", ".join(sorted(ep.name for ep in points)) or "none installed"
        raise LayerSpecError(
            f"no layer {name!r}: {SPEC_HELP}, or a built-in slot layer "
            f"({', '.join(SLOT_LAYERS)}) (entry points of group {ENTRY_POINT_GROUP}: {installed})"
        )
    if len({ep.value for ep in found}) > 1:
        values = ", ".join(sorted(ep.value for ep in found))
        raise LayerSpecError(f"entry point {name!r} is declared more than once: {values}")
    try:
        return found[0].load(), f"{name} ({found[0].value})"
    except Exception as error:
        raise LayerSpecError(
            f"entry point {name!r} ({found[0].value}) failed to load: {_import_note(error)}"
        ) from error


def resolve_factory(spec: str) -> tuple[Callable, str]:
    """The factory named by ``spec`` (PATH.py:FACTORY, MODULE:FACTORY or an entry point name)
    and a description of where it came from; `LayerSpecError` if it cannot be found."""
    if ":" not in spec:
        return _entry_point(spec)
    source, _, attr = spec.rpartition(":")
    if not source or not attr:
        raise LayerSpecError(f"layer {spec!r} must look like PATH.py:FACTORY or MODULE:FACTORY")
    is_file = source.endswith(".py") or "/" in source or os.sep in source
    module = _load_file(source) if is_file else _load_module(source)
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            defined = sorted(
                n
                for n, v in vars(module).items()
                if not n.startswith("_")
                and callable(v)
                and getattr(v, "__module__", None) == module.__name__
            )
            raise LayerSpecError(
                f"{source} has no name {attr!r} (classes and functions it defines: "
                f"{', '.join(defined) or 'none'})"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise LayerSpecError(
            f"{spec} is not a class or function (it is of type {type(obj).__name__})"
        )
    return obj, spec


def build_layer(factory: Callable, shape: Shape, label: str) -> Bijection:
    """``factory(C)``, ``factory(C, spatial_shape=(H, W))`` or ``factory(C, (H, W))`` as its
    signature asks, as a `Bijection` (a plain module wrapped by `as_bijection`);
    `LayerSpecError` for another signature, an exception or a non-module."""
    channels, spatial = shape[0], tuple(shape[1:])
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    args: tuple = (channels,)
    kwargs: dict = {}
    if signature is not None:
        if "spatial_shape" in signature.parameters:
            kwargs = {"spatial_shape": spatial}
        elif not _binds(signature, channels):
            if not _binds(signature, channels, spatial):
                raise LayerSpecError(
                    f"factory {label} has signature {signature}; it must take the channel "
                    f"count, and optionally the spatial shape: f(channels) or "
                    f"f(channels, spatial_shape)"
                )
            args = (channels, spatial)
    shown = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
    try:
        layer = factory(*args, **kwargs)
    except Exception as error:
        raise LayerSpecError(f"{label}({shown}) raised {_import_note(error)}") from error
    if not isinstance(layer, nn.Module):
        raise LayerSpecError(
            f"{label}({shown}) returned an object of type {type(layer).__name__}, not a "
            "torch.nn.Module"
        )
    return as_bijection(layer)


def _binds(signature: inspect.Signature, *args) -> bool:
    try:
        signature.bind(*args)
    except TypeError:
        return False
    return True


def _exponential(channels: int, spatial_shape: tuple[int, int]) -> Compose:
    """SNF's ConvExp step: per-element biases around exp(M), then a 1x1 convolution."""
    shape = (channels, *spatial_shape)
    parts = [ElementwiseShift(shape), ConvExponential(channels, 3), ElementwiseShift(shape)]
    return Compose([*parts, InvConv1x1(channels)])


def _exact(channels: int, spatial_shape: tuple[int, int], init: str = "authors") -> ExactConv2d:
    """SNF's exact 3x3 convolution; ``init`` as `ExactConv2d`'s."""
    return ExactConv2d(channels, 3, init=init)


def _snf(
    channels: int,
    spatial_shape: tuple[int, int],
    init: str = "authors",
    gradient_rule: str = "authors",
) -> SelfNormConv2d:
    """SNF's self-normalizing 3x3 convolution; ``init`` and ``gradient_rule`` as its own."""
    return SelfNormConv2d(channels, 3, init=init, gradient_rule=gradient_rule)


def _any_shape(make: Callable[[int], nn.Module]) -> Callable[[int, tuple[int, int]], nn.Module]:
    return lambda channels, spatial_shape: make(channels)


# The suite's own slot layers by name: factory(channels, spatial_shape, **options) -> Bijection;
# the options a factory names (the exact and SNF convs' ``init``, SNF's ``gradient_rule``) are
# those `slot_layer` passes on.
SLOT_LAYERS: dict[str, Callable[[int, tuple[int, int]], nn.Module]] = register(
    {},
    "slot layer",
    invconv1x1=_any_shape(InvConv1x1),
    invconv1x1_lu=_any_shape(InvConv1x1LU),
    inverse_conv=_any_shape(lambda c: InverseConv2d(c, 3)),
    inverse_conv_k2=_any_shape(lambda c: InverseConv2d(c, 2)),
    finc=_any_shape(lambda c: FInCConv2d(c, 3)),
    cinc=_any_shape(lambda c: CausalConv2d(c, 3)),
    emerging=_any_shape(lambda c: emerging_conv(c, 2)),
    exact=_exact,
    snf_1x1=_any_shape(lambda c: SelfNormConv2d(c, 1)),
    snf=_snf,
    exponential=_exponential,
    cdflow=_any_shape(lambda c: CirculantDiagonal(c, m=2)),
    woodbury=lambda channels, spatial_shape: Woodbury((channels, *spatial_shape), 16),
)

SlotValue = str | Callable | None


def slot_layer(
    value: SlotValue, default: Callable | str, **options
) -> Callable[[Shape], Bijection]:
    """``make(shape) -> layer`` for a slot ``value`` (a built-in name, a layer spec, a factory,
    or None for the template's ``default``); a spec is resolved once, here. ``options`` go to a
    built-in layer whose factory names them (`SLOT_LAYERS`); other layers take none."""
    value = default if value is None else value
    if isinstance(value, str) and value in SLOT_LAYERS:
        factory = _with_options(SLOT_LAYERS[value], options)
        return lambda shape: build_layer(factory, tuple(shape), value)
    if isinstance(value, str):
        factory, label = resolve_factory(value)
    elif callable(value):
        factory, label = value, getattr(value, "__name__", repr(value))
    else:
        raise LayerSpecError(f"a layer slot takes a name or a factory, got {value!r}")
    if isinstance(factory, partial):
        label = getattr(factory.func, "__name__", label)
    return lambda shape: build_layer(factory, tuple(shape), label)


def _with_options(factory: Callable, options: dict) -> Callable:
    """``factory`` with those of ``options`` that its signature names."""
    names = inspect.signature(factory).parameters
    taken = {name: value for name, value in options.items() if name in names}
    return partial(factory, **taken) if taken else factory
