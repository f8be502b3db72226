"""Exactness checks of the bijection contract (`models.core`), one harness for every layer.

`tests/test_layers.py` runs these on every entry of `models.registry.layer_examples()` and
``python -m bench check-layer`` on a layer written anywhere else. Each check takes a layer and
a float64 input batch ``x`` [B, C, H, W] and returns a `CheckResult` (name, passed, measured
error, tolerance, detail); none raises for an inexact layer.

Checks and tolerances (float64):

- ``round_trip_x``: max |inverse(forward(x)) - x| < 1e-9.
- ``round_trip_z``: max |forward(inverse(z)) - z| < 1e-9 for z = forward(x).
- ``logdet_forward``: logdet has shape [B] and max |logdet - log|det dz/dx|| <= 1e-8, the
  reference from `torch.autograd.functional.jacobian` + `slogdet` per example.
- ``logdet_inverse``: max |-logdet - log|det dx/dz|| <= 1e-8, the Jacobian of ``inverse``.
- ``per_example_logdet``: max |logdet of the batch - logdet of each example alone| <= 1e-10.
- ``batch_one``: at batch 1 each example's z and inverse(z) equal its rows of the batch's,
  max difference <= 1e-10, and the logdet has shape [1].
- ``dtype_device``: z, logdet and inverse(z) have x's dtype and device; a float32 copy of the
  layer maps float32 inputs to float32 z and logdet.
- ``gradcheck``, only when a direction's autograd graph holds a custom `torch.autograd.Function`
  (found by walking the graph for `BackwardCFunction` nodes): in that direction, on the first
  two examples, the Jacobian of the outputs with respect to the input and every parameter by
  the layer's backward against central differences (eps 1e-6), passing where every entry has
  |autograd - numerical| <= 1e-5 + 1e-3 |numerical| (the criterion and defaults of
  `torch.autograd.gradcheck`); then `torch.autograd.gradcheck` itself in fast mode, for what it
  checks besides the Jacobian (reentrant backward, gradient shapes and dtypes). Skipped for
  layers without such Functions.
- ``train_step``: what training needs besides exact values. z keeps x's shape (a layer slot
  takes no other); the gradient of sum(logdet) with respect to each parameter, along one
  random direction, by autograd against central differences (eps 1e-6, |autograd - numerical|
  <= 1e-5 + 1e-3 |numerical|), which a logdet computed under ``.detach()``, ``.item()`` or
  ``no_grad`` fails; then one Adam step (lr 1e-3) of a float32 copy in a Glow step (`ActNorm`,
  the layer in `glow_step`'s slot, an affine coupling of width 8) by `Flow.training_loss`, the
  loss compare's training minimises: a finite loss, a finite non-zero gradient on every
  parameter of the layer (on the entries a ``parameter_masks()`` leaves free), finite
  parameters and loss after the step. Failures name the parameters.

A plain ``nn.Module`` (not a `models.core.Bijection`) is checked as `models.slots` builds it:
wrapped in `models.core.ModuleBijection`; messages name the module and its own parameters.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.core import Compose, Flow, unwrapped
from models.layers.glow import ActNorm
from models.multiscale import FlattenLatent

ROUND_TRIP_TOL = 1e-9
LOGDET_TOL = 1e-8
PER_EXAMPLE_TOL = 1e-10
GRADCHECK_EPS, GRADCHECK_ATOL, GRADCHECK_RTOL = 1e-6, 1e-5, 1e-3


@dataclass(frozen=True)
class CheckResult:
    """One check of one layer. ``error`` is the measured error (None for checks that measure
    nothing, such as dtypes), ``tolerance`` the bound it is held to, ``detail`` what was
    compared or why it failed; ``skipped`` checks did not apply (and count as passed)."""

    name: str
    passed: bool
    error: float | None = None
    tolerance: float | None = None
    detail: str = ""
    skipped: bool = False
    rtol: float | None = None

    def tolerance_text(self) -> str:
        """``1e-08``, or ``1e-05 + 1e-03 |numerical|`` for a relative part; '' if none."""
        if self.tolerance is None:
            return ""
        text = f"{self.tolerance:.0e}"
        return f"{text} + {self.rtol:.0e} |numerical|" if self.rtol else text

    def message(self) -> str:
        status = "skipped" if self.skipped else "passed" if self.passed else "FAILED"
        text = f"{self.name} {status}"
        if self.error is not None:
            text += f": measured {self.error:.3g}"
            if self.tolerance is not None:
                text += f", tolerance {self.tolerance_text()}"
        return f"{text} ({self.detail})" if self.detail else text


class LayerContractError(ValueError):
    """The layer cannot be checked at all: forward does not return (z, logdet), it has no
    inverse, or calling it raises. The message is one line."""


def one_line(error: BaseException, limit: int = 300) -> str:
    """``TypeName: message`` on one line, shortened to ``limit`` characters."""
    text = " ".join(str(error).split())
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sample_input(
    layer: nn.Module, shape: Sequence[int], batch: int, device, dtype=torch.float64
) -> Tensor:
    """A batch [batch, *shape] inside the layer's ``domain`` (standard normal if unbounded)."""
    domain = getattr(layer, "domain", None)
    if domain is None:
        return torch.randn(batch, *shape, dtype=dtype, device=device)
    lo, hi = domain
    margin = 0.05 * (hi - lo)
    u = torch.rand(batch, *shape, dtype=dtype, device=device)
    return lo + margin + (hi - lo - 2 * margin) * u


def jacobian_logdet(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """log|det d fn(x)/dx| per example of x [B, ...] by autograd Jacobian + slogdet -> [B]."""
    out = []
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda v: fn(v[None]).flatten(), xi)
        jac = jac.reshape(jac.shape[0], -1)
        out.append(torch.linalg.slogdet(jac).logabsdet)
    return torch.stack(out)


def _max_abs(a: Tensor, b: Tensor) -> float:
    """max |a - b| as a float (nan if any entry is nan; 0 for empty tensors)."""
    diff = (a.detach() - b.detach()).abs()
    if diff.numel() == 0:
        return 0.0
    if torch.isnan(diff).any():
        return math.nan
    return diff.max().item()


def _mismatch(actual: Tensor, expected: Tensor, what: str) -> str | None:
    """Why ``actual`` cannot be compared with ``expected`` entrywise (shape, dtype, device), as
    `torch.testing.assert_close` would refuse it; None when it can."""
    if not isinstance(actual, Tensor):
        return f"{what} is a {type(actual).__name__}, not a tensor"
    for attr in ("shape", "dtype", "device"):
        if getattr(actual, attr) != getattr(expected, attr):
            got, want = getattr(actual, attr), getattr(expected, attr)
            if attr == "shape":
                got, want = tuple(got), tuple(want)
            return f"{what} has {attr} {got}, expected {want}"
    return None


def _compare(
    name: str, actual: Tensor, expected: Tensor, tol: float, what: str, strict: bool = False
) -> CheckResult:
    """Entrywise max |actual - expected| against ``tol`` (``<`` if strict, else ``<=``, which
    is `assert_close(atol=tol, rtol=0)`); a shape, dtype or device mismatch fails. ``what``
    reads "actual - expected"."""
    problem = _mismatch(actual, expected, what.split(" - ")[0])
    if problem:
        return CheckResult(name, False, None, tol, problem)
    error = _max_abs(actual, expected)
    passed = error < tol if strict else error <= tol
    return CheckResult(name, passed, error, tol, f"max |{what}|")


def check_round_trip_x(layer: nn.Module, x: Tensor) -> CheckResult:
    """inverse(forward(x)) == x within 1e-9."""
    z, _ = layer(x)
    x_back = layer.inverse(z)
    return _compare(
        "round_trip_x", x_back, x, ROUND_TRIP_TOL, "inverse(forward(x)) - x", strict=True
    )


def check_round_trip_z(layer: nn.Module, x: Tensor) -> CheckResult:
    """forward(inverse(z)) == z within 1e-9, for z = forward(x)."""
    z, _ = layer(x)
    z_again, _ = layer(layer.inverse(z))
    return _compare(
        "round_trip_z", z_again, z, ROUND_TRIP_TOL, "forward(inverse(z)) - z", strict=True
    )


def check_logdet_forward(layer: nn.Module, x: Tensor) -> CheckResult:
    """logdet [B] == log|det dz/dx| (autograd Jacobian + slogdet) within 1e-8."""
    _, logdet = layer(x)
    if not isinstance(logdet, Tensor) or logdet.shape != (x.shape[0],):
        shape = tuple(logdet.shape) if isinstance(logdet, Tensor) else type(logdet).__name__
        detail = f"logdet has shape {shape}, expected ({x.shape[0]},)"
        return CheckResult("logdet_forward", False, None, LOGDET_TOL, detail)
    expected = jacobian_logdet(lambda v: layer(v)[0], x)
    return _compare(
        "logdet_forward", logdet, expected, LOGDET_TOL, "logdet - slogdet(autograd dz/dx)"
    )


def check_logdet_inverse(layer: nn.Module, x: Tensor) -> CheckResult:
    """-logdet == log|det dx/dz| of ``inverse`` at z = forward(x) within 1e-8."""
    z, logdet = layer(x)
    z = z.detach()
    expected = jacobian_logdet(layer.inverse, z)
    return _compare(
        "logdet_inverse", -logdet, expected, LOGDET_TOL, "-logdet - slogdet(autograd dx/dz)"
    )


def check_per_example_logdet(layer: nn.Module, x: Tensor) -> CheckResult:
    """The batch's logdet [B] equals each example's logdet computed alone, within 1e-10."""
    _, batch_logdet = layer(x)
    single = torch.cat([layer(x[i : i + 1])[1] for i in range(x.shape[0])])
    return _compare(
        "per_example_logdet",
        batch_logdet,
        single,
        PER_EXAMPLE_TOL,
        "logdet(batch) - logdet(each example alone)",
    )


def check_batch_one(layer: nn.Module, x: Tensor) -> CheckResult:
    """At batch 1: logdet [1], and z and inverse(z) equal the batch's rows within 1e-10."""
    z, _ = layer(x)
    x_back = layer.inverse(z)
    errors = []
    for i in range(x.shape[0]):
        zi, logdet_i = layer(x[i : i + 1])
        if not isinstance(logdet_i, Tensor) or logdet_i.shape != (1,):
            shape = tuple(logdet_i.shape) if isinstance(logdet_i, Tensor) else logdet_i
            detail = f"logdet at batch 1 has shape {shape}, expected (1,)"
            return CheckResult("batch_one", False, None, PER_EXAMPLE_TOL, detail)
        pairs = ((zi, z[i : i + 1], "z"), (layer.inverse(z[i : i + 1]), x_back[i : i + 1], "x"))
        for alone, row, what in pairs:
            problem = _mismatch(alone, row, f"{what} at batch 1")
            if problem:
                return CheckResult("batch_one", False, None, PER_EXAMPLE_TOL, problem)
            errors.append(_max_abs(alone, row))
    error = math.nan if any(math.isnan(e) for e in errors) else max(errors)
    detail = "max |z, inverse(z) at batch 1 - the batch's row|"
    return CheckResult("batch_one", error <= PER_EXAMPLE_TOL, error, PER_EXAMPLE_TOL, detail)


def check_dtype_device(layer: nn.Module, x: Tensor) -> CheckResult:
    """Outputs follow the input's dtype and device, in float64 and in a float32 copy."""
    z, logdet = layer(x)
    outputs = {"z": z, "logdet": logdet, "inverse(z)": layer.inverse(z)}
    for what, t in outputs.items():
        if not isinstance(t, Tensor) or t.dtype != x.dtype or t.device != x.device:
            got = (t.dtype, t.device) if isinstance(t, Tensor) else type(t).__name__
            detail = f"{what} is {got} for an input of {(x.dtype, x.device)}"
            return CheckResult("dtype_device", False, detail=detail)
    layer32 = copy.deepcopy(layer).float()
    z32, logdet32 = layer32(x.float())
    outputs32 = {"z": z32, "logdet": logdet32}
    for what, t in outputs32.items():
        if not isinstance(t, Tensor) or t.dtype != torch.float32:
            got = t.dtype if isinstance(t, Tensor) else type(t).__name__
            detail = f"float32 layer: {what} is {got} for a float32 input"
            return CheckResult("dtype_device", False, detail=detail)
    return CheckResult("dtype_device", True, detail=f"{x.dtype}, float32 on {x.device}")


def _custom_function_names(tensors: Sequence[Tensor]) -> list[str]:
    """Names of the custom `torch.autograd.Function`s in the autograd graph of ``tensors``."""
    names, seen = set(), set()
    stack = [t.grad_fn for t in tensors if isinstance(t, Tensor) and t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            cls = getattr(node, "_forward_cls", None)
            names.add(cls.__qualname__ if cls is not None else type(node).__name__)
        stack.extend(fn for fn, _ in node.next_functions)
    return sorted(names)


def custom_functions(layer: nn.Module, x: Tensor) -> dict[str, list[str]]:
    """{'forward': [...], 'inverse': [...]}: the custom autograd Functions each direction runs
    (the grad_fn nodes of their outputs that are `BackwardCFunction`s, i.e. the backward of a
    `torch.autograd.Function` subclass, torch.library custom ops with autograd included)."""
    with torch.enable_grad():
        z, logdet = layer(x.detach().requires_grad_(True))
        x_back = layer.inverse(z.detach().requires_grad_(True))
    return {
        "forward": _custom_function_names([z, logdet]),
        "inverse": _custom_function_names([x_back]),
    }


def _as_outputs(out) -> list[Tensor]:
    return [out] if isinstance(out, Tensor) else [t for t in out if isinstance(t, Tensor)]


def jacobian_mismatch(
    fn: Callable[..., Tensor | tuple[Tensor, ...]], inputs: Sequence[Tensor]
) -> tuple[float, float, int]:
    """The Jacobian of fn's outputs with respect to ``inputs`` (leaf tensors requiring grad,
    which fn may read from elsewhere, e.g. a layer's parameters) by autograd against central
    differences (eps 1e-6). Returns (max |autograd - numerical|, max of that over
    1e-5 + 1e-3 |numerical| (passes when <= 1), the index of the input of the worst entry)."""
    with torch.enable_grad():
        flat = torch.cat([o.reshape(-1) for o in _as_outputs(fn(*inputs))])
    sizes = [inp.numel() for inp in inputs]
    analytical = torch.zeros(flat.numel(), sum(sizes), dtype=flat.dtype, device=flat.device)
    for k in range(flat.numel()):
        grads = torch.autograd.grad(flat[k], inputs, retain_graph=True, allow_unused=True)
        analytical[k] = torch.cat(
            [
                (g if g is not None else torch.zeros_like(inp)).reshape(-1)
                for g, inp in zip(grads, inputs, strict=True)
            ]
        )
    del flat
    numerical = torch.zeros_like(analytical)
    column = 0
    with torch.no_grad():
        for inp in inputs:
            data = inp.data.view(-1)
            for i in range(data.numel()):
                original = data[i].item()
                data[i] = original + GRADCHECK_EPS
                plus = torch.cat([o.reshape(-1) for o in _as_outputs(fn(*inputs))])
                data[i] = original - GRADCHECK_EPS
                minus = torch.cat([o.reshape(-1) for o in _as_outputs(fn(*inputs))])
                data[i] = original
                numerical[:, column] = (plus - minus) / (2 * GRADCHECK_EPS)
                column += 1
    diff = (analytical - numerical).abs()
    if diff.numel() == 0:
        return 0.0, 0.0, 0
    ratio = diff / (GRADCHECK_ATOL + GRADCHECK_RTOL * numerical.abs())
    ratio = torch.where(torch.isnan(ratio), torch.inf, ratio)
    worst_column = int(ratio.max(dim=0).values.argmax())
    worst_input = int((torch.tensor(sizes).cumsum(0) <= worst_column).sum())
    error = math.nan if torch.isnan(diff).any() else diff.max().item()
    return error, ratio.max().item(), worst_input


def check_gradcheck(layer: nn.Module, x: Tensor) -> CheckResult:
    """gradcheck of each direction whose graph holds a custom autograd Function, with respect
    to the input and every parameter, on the first two examples of x (finite differences cost
    two calls per input entry; two examples still catch a backward that mixes the batch);
    skipped when neither direction has a custom Function."""
    tol, rtol = GRADCHECK_ATOL, GRADCHECK_RTOL
    x = x[:2]
    found = custom_functions(layer, x)
    if not (found["forward"] or found["inverse"]):
        detail = "no custom autograd Function in forward or inverse"
        return CheckResult("gradcheck", True, None, tol, detail, skipped=True, rtol=rtol)
    named = [(n, p) for n, p in layer.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    names = ["input", *(n for n, _ in named)]
    error, parts = 0.0, []
    for direction in ("forward", "inverse"):
        if not found[direction]:
            continue
        if direction == "forward":
            start = x.detach().clone().requires_grad_(True)

            def fn(v, *_params):
                return layer(v)
        else:
            start = layer(x)[0].detach().clone().requires_grad_(True)

            def fn(v, *_params):
                return layer.inverse(v)

        inputs = [start, *params]
        err, rat, where = jacobian_mismatch(fn, inputs)
        label = f"{direction} ({', '.join(found[direction])})"
        if not rat <= 1:
            detail = f"{label}: |autograd - finite differences| w.r.t. {names[where]} is"
            detail += f" {rat:.3g} times its tolerance"
            return CheckResult("gradcheck", False, err, tol, detail, rtol=rtol)
        if not torch.autograd.gradcheck(fn, inputs, fast_mode=True, raise_exception=False):
            detail = f"{label}: torch.autograd.gradcheck (fast mode) fails"
            return CheckResult("gradcheck", False, err, tol, detail, rtol=rtol)
        error = max(error, err)
        parts.append(label)
    detail = f"max |autograd - finite differences| in {' and '.join(parts)}"
    return CheckResult("gradcheck", True, error, tol, detail, rtol=rtol)


TRAIN_WIDTH = 8  # hidden channels of the train_step flow's coupling
TRAIN_LR = 1e-3


def _trainable(layer: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters an optimizer moves, named as the user's module names them."""
    inner = unwrapped(layer)
    return [(n, p) for n, p in inner.named_parameters() if p.requires_grad and p.numel()]


def _free_entries(layer: nn.Module) -> dict[str, Tensor]:
    """{name: mask} for parameters a module masks (``parameter_masks()``, as
    `models.registry.count_params` reads it): only the mask's nonzero entries are free."""
    masks = {}
    for prefix, module in unwrapped(layer).named_modules():
        if callable(getattr(module, "parameter_masks", None)):
            for name, mask in module.parameter_masks().items():
                masks[f"{prefix}.{name}" if prefix else name] = mask
    return masks


@torch.no_grad()
def inert_parameters(layer: nn.Module, x: Tensor) -> set[str]:
    """Parameters without influence at x's shape: moving one along a random direction (by 1e-3
    of its norm, at least 1e-3) changes neither z nor the logdet (e.g. a Householder vector at
    one channel, where every reflection is -1). Their zero gradient is right, not a bug."""
    inert = set()
    z, logdet = layer(x)
    generator = torch.Generator().manual_seed(1)
    for name, param in _trainable(layer):
        original = param.detach().clone()
        direction = torch.randn(param.shape, generator=generator, dtype=param.dtype)
        step = max(1e-3, 1e-3 * original.norm().item()) / direction.norm().item()
        param.add_(step * direction.to(param.device))
        moved_z, moved_logdet = layer(x)
        param.copy_(original)
        if torch.equal(moved_z, z) and torch.equal(moved_logdet, logdet):
            inert.add(name)
    return inert


def _gradient_problems(layer: nn.Module, inert: set[str] = frozenset()) -> dict[str, list[str]]:
    """After a backward: the layer's parameters by what is wrong with their gradient (none at
    all, zero on every free entry, non-finite); a fully masked parameter, and one without
    influence at this shape (``inert``) whose gradient is zero or missing, are left out."""
    masks = _free_entries(layer)
    found: dict[str, list[str]] = {"no gradient reaches": [], "zero gradient on": []}
    found["non-finite gradient on"] = []
    for name, param in _trainable(layer):
        mask = masks.get(name)
        if mask is not None and not mask.any():
            continue
        if name in inert and (param.grad is None or not param.grad.abs().max() > 0):
            continue
        grad = param.grad
        if grad is None:
            found["no gradient reaches"].append(name)
        elif not torch.isfinite(grad).all():
            found["non-finite gradient on"].append(name)
        elif not (grad if mask is None else grad * (mask != 0)).abs().max() > 0:
            found["zero gradient on"].append(name)
    return {what: names for what, names in found.items() if names}


def logdet_gradient_errors(
    layer: nn.Module, x: Tensor
) -> tuple[float, list[tuple[str, float, float]]]:
    """The gradient of sum(logdet) with respect to each parameter by autograd against central
    differences (eps 1e-6) along one random unit direction per parameter (seeded), in the
    layer's dtype and mode. Returns (max |autograd - numerical|, (name, autograd, numerical)
    of each parameter where it exceeds 1e-5 + 1e-3 |numerical|): a logdet computed under
    ``.detach()``, ``.item()`` or ``no_grad`` differs by finite differences only."""
    named = _trainable(layer)
    if not named:
        return 0.0, []
    with torch.enable_grad():
        total = layer(x)[1].sum()
    params = [p for _, p in named]
    grads = (
        torch.autograd.grad(total, params, allow_unused=True)
        if total.requires_grad
        else [None] * len(params)
    )
    generator = torch.Generator().manual_seed(0)
    worst, bad = 0.0, []
    for (name, param), grad in zip(named, grads, strict=True):
        direction = torch.randn(param.shape, generator=generator, dtype=param.dtype)
        direction = (direction / direction.norm()).to(param.device)
        autograd = 0.0 if grad is None else (grad * direction).sum().item()
        numerical = _directional_difference(layer, x, param, direction)
        error = abs(autograd - numerical)
        worst = error if math.isnan(error) else max(worst, error)
        if not error <= GRADCHECK_ATOL + GRADCHECK_RTOL * abs(numerical):
            bad.append((name, autograd, numerical))
    return worst, bad


@torch.no_grad()
def _directional_difference(layer: nn.Module, x: Tensor, param: Tensor, direction: Tensor):
    """(sum logdet(p + eps v) - sum logdet(p - eps v)) / (2 eps), p restored afterwards."""
    original = param.detach().clone()
    param.add_(GRADCHECK_EPS * direction)
    plus = layer(x)[1].sum().item()
    param.copy_(original - GRADCHECK_EPS * direction)
    minus = layer(x)[1].sum().item()
    param.copy_(original)
    return (plus - minus) / (2 * GRADCHECK_EPS)


def training_flow(layer: nn.Module, shape: Sequence[int]):
    """A small `Flow` around ``layer`` as compare trains it: one Glow step built by
    `models.flows.glow.glow_step` with ``layer`` in its ``mix`` slot (ActNorm, the layer, an
    affine coupling of width 8, which needs 2 channels: none for 1; from the slot on for a
    layer with a ``domain``, which ActNorm's data-dependent initialisation would leave), then
    `FlattenLatent`."""
    from models.flows.glow import glow_step  # here: it builds its slot by models.slots

    shape = tuple(shape)
    if shape[0] >= 2:
        step = glow_step(TRAIN_WIDTH, mix=lambda channels, spatial_shape: layer)(shape, 0)
    else:
        step = [ActNorm(shape[0]), layer]
    slot = next(i for i, part in enumerate(step) if unwrapped(part) is unwrapped(layer))
    if getattr(layer, "domain", None) is not None:
        step = step[slot:]
    return Flow(Compose([*step, FlattenLatent(shape)]), shape)


def check_train_step(layer: nn.Module, x: Tensor) -> CheckResult:
    """What training needs beyond exact values: (1) the gradient of the logdet with respect to
    every parameter by autograd matches finite differences (`logdet_gradient_errors`, in the
    layer's float64); (2) one Adam step (lr 1e-3) on a float32 copy of the layer in
    `training_flow`, by `models.core.Flow.training_loss` as ``bench compare``'s training
    takes it: the loss is finite and every parameter of the layer gets a finite, non-zero
    gradient; after the step the parameters and the loss are still finite."""
    tol, rtol = GRADCHECK_ATOL, GRADCHECK_RTOL
    z = layer(x)[0]
    if z.shape != x.shape:
        detail = (
            f"z has shape {tuple(z.shape)} for x {tuple(x.shape)}: a layer slot, where compare "
            "trains a layer, takes one that keeps x's shape"
        )
        return CheckResult("train_step", False, None, tol, detail, rtol=rtol)
    error, bad = logdet_gradient_errors(layer, x)
    if bad:
        return CheckResult("train_step", False, error, tol, _logdet_gradient_note(bad), rtol=rtol)
    inert = inert_parameters(layer, x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        trained = copy.deepcopy(layer).float().train()
        flow = training_flow(trained, x.shape[1:]).to(x.device, torch.float32).train()
        problem, losses = _one_step(flow, trained, x.float(), inert)
    if problem:
        return CheckResult("train_step", False, error, tol, problem, rtol=rtol)
    detail = (
        f"max |logdet gradient - finite differences|; float32 Glow step (ActNorm, layer, "
        f"coupling), one Adam step: loss {losses[0]:.3f} -> {losses[1]:.3f} bits/dim, "
        f"gradients on all {len(_trainable(trained)) - len(inert)} parameters"
        + (f" ({', '.join(sorted(inert))}: no influence at this shape)" if inert else "")
    )
    return CheckResult("train_step", True, error, tol, detail, rtol=rtol)


def _logdet_gradient_note(bad: list[tuple[str, float, float]]) -> str:
    """One line on the parameters whose logdet gradient is missing or wrong."""
    cut = [name for name, autograd, _ in bad if autograd == 0]
    parts = []
    if cut:
        parts.append(
            f"the logdet has no gradient path to {', '.join(cut)} (computed under .detach(), "
            ".item() or no_grad?), so training would miss its part of the gradient"
        )
    wrong = [(n, a, v) for n, a, v in bad if a != 0]
    if wrong:
        parts.append(f"the logdet's gradient is wrong for {', '.join(n for n, _, _ in wrong)}")
    values = ", ".join(f"{n}: autograd {a:.3g}, finite differences {v:.3g}" for n, a, v in bad)
    return f"{'; '.join(parts)} (d sum(logdet) along a random direction, {values})"


def _one_step(
    flow: nn.Module, layer: nn.Module, x: Tensor, inert: set[str] = frozenset()
) -> tuple[str, list[float]]:
    """One optimizer step of ``flow`` on x; (why it fails, '' if not; loss before and after);
    ``inert``: parameters without influence at this shape (`inert_parameters`)."""
    optimizer = torch.optim.Adam(flow.parameters(), lr=TRAIN_LR)
    with torch.enable_grad():
        loss = flow.training_loss(x)[0]
        if not torch.isfinite(loss):
            return f"float32 training loss is {loss.item()}", []
        loss.backward()
    problems = _gradient_problems(layer, inert)
    if problems:
        parts = [f"{what} {', '.join(names)}" for what, names in problems.items()]
        return (
            f"float32 training step: {'; '.join(parts)} (a parameter that is unused, read "
            "under .detach() or no_grad, or without influence at this shape never trains)",
            [],
        )
    optimizer.step()
    broken = [n for n, p in _trainable(layer) if not torch.isfinite(p).all()]
    if broken:
        return f"non-finite parameters after one Adam step: {', '.join(broken)}", []
    with torch.no_grad():
        after = flow.training_loss(x)[0]
    if not torch.isfinite(after):
        return f"float32 training loss is {after.item()} after one Adam step", []
    return "", [loss.item(), after.item()]


CHECKS: dict[str, Callable[[nn.Module, Tensor], CheckResult]] = {
    "round_trip_x": check_round_trip_x,
    "round_trip_z": check_round_trip_z,
    "logdet_forward": check_logdet_forward,
    "logdet_inverse": check_logdet_inverse,
    "per_example_logdet": check_per_example_logdet,
    "batch_one": check_batch_one,
    "dtype_device": check_dtype_device,
    "gradcheck": check_gradcheck,
    "train_step": check_train_step,
}


def check_contract(layer: nn.Module, x: Tensor) -> None:
    """Raise `LayerContractError` (one line) unless ``layer(x)`` returns two tensors (z, logdet)
    and ``layer.inverse(z)`` returns a tensor of x's shape: what every check needs to run."""
    if not isinstance(layer, nn.Module):
        raise LayerContractError(f"the layer is a {type(layer).__name__}, not a torch.nn.Module")
    if not callable(getattr(unwrapped(layer), "inverse", None)):
        raise LayerContractError(
            f"{type(unwrapped(layer)).__name__} is not invertible: it has no inverse(z) method"
        )
    try:
        out = layer(x)
    except Exception as error:
        raise LayerContractError(f"forward(x) raised {one_line(error)}") from error
    if not (isinstance(out, tuple | list) and len(out) == 2 and all(_is_tensor(t) for t in out)):
        got = type(out).__name__
        if isinstance(out, tuple | list):
            got += " of " + ", ".join(type(t).__name__ for t in out)
        raise LayerContractError(f"forward(x) must return a pair (z, logdet) of tensors, got {got}")
    try:
        x_back = layer.inverse(out[0])
    except Exception as error:
        raise LayerContractError(
            f"{type(unwrapped(layer)).__name__} is not invertible: inverse(z) raised "
            f"{one_line(error)}"
        ) from error
    if not _is_tensor(x_back) or x_back.shape != x.shape:
        got = tuple(x_back.shape) if _is_tensor(x_back) else type(x_back).__name__
        raise LayerContractError(
            f"inverse(z) must return a tensor of the input's shape {tuple(x.shape)}, got {got}"
        )


def _is_tensor(t) -> bool:
    return isinstance(t, Tensor)


def run_check(name: str, layer: nn.Module, x: Tensor) -> CheckResult:
    """CHECKS[name](layer, x), an exception inside it being a failed result naming it."""
    try:
        return CHECKS[name](layer, x)
    except Exception as error:
        return CheckResult(name, False, detail=f"raised {one_line(error)}")


def check_layer(
    layer: nn.Module,
    shape: Sequence[int],
    batch: int = 3,
    device: str | torch.device = "cpu",
    checks: Sequence[str] | None = None,
) -> list[CheckResult]:
    """Every check (or those named) of ``layer`` in float64 on a batch of ``batch`` inputs of
    ``shape`` (C, H, W) drawn from the global RNG inside the layer's ``domain``. Moves the
    layer to float64 on ``device`` in eval mode; raises `LayerContractError` when the layer
    cannot be called as a bijection at all."""
    layer = layer.to(device=device, dtype=torch.float64).eval()
    x = sample_input(layer, shape, batch, device)
    check_contract(layer, x)
    return [run_check(name, layer, x) for name in (checks or CHECKS)]
