"""``python -m bench check-layer LAYER --shape C,H,W``: the registry's exactness checks
(`models.checks`) on a layer written outside this package.

LAYER is one of
- ``PATH.py:FACTORY``, a file anywhere (its folder is on ``sys.path`` while it imports);
- ``MODULE:FACTORY``, an importable module (the current folder is searched first, as
  ``python -m`` does, also from the console script);
- ``NAME``, an entry point of group ``convflow_bench.layers`` that a pip-installed package
  declares, e.g. in its pyproject.toml::

      [project.entry-points."convflow_bench.layers"]
      householder = "my_layers.householder:HouseholderConv1x1"

FACTORY (a class or a function; ``a.b`` reaches an attribute of an attribute) is called with the
channel count C, and with the spatial shape (H, W) as well when its signature asks for it: a
parameter named ``spatial_shape``, or a second positional parameter without a default. What it
returns must follow the bijection contract: ``forward(x) -> (z, logdet[B])``, ``inverse(z)``.

Input that cannot be checked (a file or module that does not import, a missing name, a factory
with another signature, a shape that is not C,H,W, a factory that raises or returns something
that cannot be called as a bijection) is a `ConfigError`: one line, exit status 2. A layer that
runs but is not exact prints the table and, on stderr, each failing check with its measured
error; exit status 1.
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
from pathlib import Path

import torch

from bench.config import ConfigError

ENTRY_POINT_GROUP = "convflow_bench.layers"
SPEC_HELP = "give PATH.py:FACTORY, MODULE:FACTORY or the name of an installed entry point"
MANY_ENTRIES = 1024  # C*H*W above which the dense Jacobians get slow


def _import_note(error: BaseException) -> str:
    """The exception on one line with the deepest file and line of its traceback."""
    from models.checks import one_line

    frames = traceback.extract_tb(error.__traceback__)
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return one_line(error) + where


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"C,H,W"`` -> (C, H, W), three positive integers, else `ConfigError`."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(
            f"--shape must be C,H,W (three positive integers, e.g. 4,4,5), got {text!r}"
        )
    return shape


def _load_file(path_text: str):
    path = Path(path_text)
    if not path.is_file():
        raise ConfigError(f"no file {path_text} ({SPEC_HELP})")
    name = f"_convflow_bench_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path_text} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(name, None)
        raise ConfigError(f"{path_text} failed to import: {_import_note(error)}") from error
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
            raise ConfigError(
                f"no module named {error.name!r} for {name!r} (run from the folder that holds "
                f"it or pip install it; a file is given as PATH.py:FACTORY)"
            ) from error
        raise ConfigError(f"module {name} failed to import: {_import_note(error)}") from error
    except Exception as error:
        raise ConfigError(f"module {name} failed to import: {_import_note(error)}") from error


def _entry_point(name: str) -> tuple[Callable, str]:
    found = [
        ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name
    ]
    if not found:
        names = sorted(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        installed = ", ".join(names) if names else "none installed"
        raise ConfigError(
            f"no layer {name!r}: {SPEC_HELP} (entry points of group {ENTRY_POINT_GROUP}: "
            f"{installed})"
        )
    if len({ep.value for ep in found}) > 1:
        values = ", ".join(sorted(ep.value for ep in found))
        raise ConfigError(f"entry point {name!r} is declared more than once: {values}")
    try:
        return found[0].load(), f"{name} ({found[0].value})"
    except Exception as error:
        raise ConfigError(
            f"entry point {name!r} ({found[0].value}) failed to load: {_import_note(error)}"
        ) from error


def resolve_factory(spec: str) -> tuple[Callable, str]:
    """The factory named by ``spec`` (PATH.py:FACTORY, MODULE:FACTORY or an entry point name)
    and a description of where it came from; `ConfigError` if it cannot be found."""
    if ":" not in spec:
        return _entry_point(spec)
    source, _, attr = spec.rpartition(":")
    if not source or not attr:
        raise ConfigError(f"layer {spec!r} must look like PATH.py:FACTORY or MODULE:FACTORY")
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
            raise ConfigError(
                f"{source} has no name {attr!r} (classes and functions it defines: "
                f"{', '.join(defined) or 'none'})"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{spec} is not a class or function (it is of type {type(obj).__name__})")
    return obj, spec


def build_layer(factory: Callable, shape: tuple[int, int, int], label: str) -> torch.nn.Module:
    """``factory(C)``, ``factory(C, spatial_shape=(H, W))`` or ``factory(C, (H, W))`` as its
    signature asks; `ConfigError` for another signature, an exception or a non-module."""
    channels, spatial = shape[0], tuple(shape[1:])
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    call = (channels,), {}
    if signature is not None:
        params = signature.parameters
        if "spatial_shape" in params:
            call = (channels,), {"spatial_shape": spatial}
        else:
            try:
                signature.bind(channels)
            except TypeError:
                try:
                    signature.bind(channels, spatial)
                except TypeError:
                    raise ConfigError(
                        f"factory {label} has signature {signature}; it must take the channel "
                        f"count, and optionally the spatial shape: f(channels) or "
                        f"f(channels, spatial_shape)"
                    ) from None
                call = (channels, spatial), {}
    args, kwargs = call
    shown = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
    try:
        layer = factory(*args, **kwargs)
    except Exception as error:
        raise ConfigError(f"{label}({shown}) raised {_import_note(error)}") from error
    if not isinstance(layer, torch.nn.Module):
        raise ConfigError(
            f"{label}({shown}) returned an object of type {type(layer).__name__}, not a "
            "torch.nn.Module"
        )
    return layer


def format_table(results) -> str:
    rows = [("check", "result", "measured", "tolerance", "detail")]
    for r in results:
        status = "skip" if r.skipped else "pass" if r.passed else "FAIL"
        error = "-" if r.error is None else f"{r.error:.2e}"
        tolerance = "-" if r.skipped else r.tolerance_text() or "-"
        rows.append((r.name, status, error, tolerance, r.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=False)) + "  " + row[4]
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(line.rstrip() for line in lines)


def run_check_layer(args) -> int:
    """The ``check-layer`` command: 0 if every check passes, 1 if one fails."""
    from models.checks import LayerContractError, check_layer, one_line
    from models.registry import randomize

    shape = parse_shape(args.shape)
    if args.batch < 2:
        raise ConfigError(f"--batch must be at least 2 (per-example checks), got {args.batch}")
    if args.perturb < 0:
        raise ConfigError(f"--perturb must be >= 0, got {args.perturb}")
    try:
        torch.empty(0, device=args.device)
    except (RuntimeError, AssertionError) as error:
        raise ConfigError(f"--device {args.device} is not usable: {one_line(error)}") from error
    factory, label = resolve_factory(args.layer)
    torch.manual_seed(args.seed)
    layer = build_layer(factory, shape, label)
    if args.perturb:
        randomize(layer, args.perturb, args.seed)
    entries = shape[0] * shape[1] * shape[2]
    if entries > MANY_ENTRIES:
        print(
            f"note: C*H*W = {entries}; the logdet checks build a {entries} x {entries} Jacobian "
            "per example, slow at this size (H, W <= 8 keep it to seconds)",
            file=sys.stderr,
        )
    try:
        results = check_layer(layer, shape, batch=args.batch, device=args.device)
    except LayerContractError as error:
        raise ConfigError(f"{label}: {error}") from error
    print(
        f"check-layer {label}: {type(layer).__name__} at shape {shape}, batch {args.batch}, "
        f"float64 on {args.device}, parameters perturbed by N(0, {args.perturb}^2) "
        f"(seed {args.seed})"
    )
    print(format_table(results))
    failed = [r for r in results if not r.passed]
    for r in failed:
        print(f"check-layer {label}: {r.message()}", file=sys.stderr)
    ran = sum(not r.skipped for r in results)
    if failed:
        print(f"{len(failed)} of {ran} checks failed")
        return 1
    print(f"all {ran} checks passed")
    return 0
