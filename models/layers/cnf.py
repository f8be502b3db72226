"""Continuous normalizing flow (FFJORD): the solution map of an ODE as a bijection.

x [B,C,H,W] is the state at t = 0 of dz/dt = f(t, z), z the state at t = T, and by the
instantaneous change of variables

    log|det dz(T)/dx| = integral_0^T tr(df/dz(t, z(t))) dt,

integrated beside z as an extra state. The inverse integrates dz/dt = f backwards from T to 0.
f is a small convolutional network that sees the time as an extra input channel (`ODENet`,
FFJORD's "concat" layers). The ODE is solved by torchdiffeq (``odeint``, or ``odeint_adjoint``
for the adjoint-method gradients FFJORD trains with).

The trace has two modes (``trace``, an attribute of each layer):

- ``"hutchinson"`` (FFJORD): tr(J) estimated by e^T J e with e Rademacher, one noise e per
  solve (the ODE must stay one ODE for an adaptive solver), one vector-Jacobian product per
  function evaluation. Unbiased; the flow's BPD is then an estimate (``logdet_estimated``).
- ``"exact"``: tr(J) = sum_i (J^T e_i)_i by D vector-Jacobian products per evaluation, O(D);
  small shapes only. The generic exactness tests use it.

Either way z and the logdet are exact up to the solver's tolerance (``rtol``, ``atol``), not to
rounding: the exactness tests run with 1e-12 tolerances in float64.

References:
    Chen, Rubanova, Bettencourt & Duvenaud, "Neural Ordinary Differential Equations",
        NeurIPS 2018 (arXiv:1806.07366).
    Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud, "FFJORD: Free-form Continuous Dynamics
        for Scalable Reversible Generative Models", ICLR 2019 (arXiv:1810.01367).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from models.core import Bijection, check_image

TRACE_MODES = ("exact", "hutchinson")
# Tolerances below this many machine epsilons of the input's dtype are raised to it: an adaptive
# solver asked for 1e-12 in float32 shrinks its steps without end.
RESOLVABLE_TOL_EPS = 10


class ConcatConv2d(nn.Module):
    """A k x k convolution (zero padding, stride 1) of [t, x]: the time t as a constant extra
    input channel. (t, x [B,C_in,H,W]) -> [B,C_out,H,W].

    Args:
        in_channels, out_channels: channels of x and of the output.
        kernel_size: odd kernel size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels + 1, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        time = torch.ones_like(x[:, :1]) * t
        return self.conv(torch.cat([time, x], dim=1))


class ODENet(nn.Module):
    """f(t, z): `ConcatConv2d` layers channels -> hidden[0] -> ... -> channels, softplus between
    them (FFJORD's image network). (t, z [B,C,H,W]) -> dz/dt [B,C,H,W].

    Args:
        channels: channels of z.
        hidden: hidden channels of each intermediate layer (FFJORD's CIFAR-10: 64, 64, 64).
    """

    def __init__(self, channels: int, hidden: Sequence[int] = (64, 64, 64)):
        super().__init__()
        widths = [channels, *hidden, channels]
        self.layers = nn.ModuleList(
            ConcatConv2d(c_in, c_out) for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        for index, layer in enumerate(self.layers):
            z = layer(t, z)
            if index < len(self.layers) - 1:
                z = F.softplus(z)
        return z


def exact_trace(dz: Tensor, z: Tensor, create_graph: bool) -> Tensor:
    """tr(d dz / d z) per example [B] by one vector-Jacobian product per dimension."""
    flat = dz.flatten(1)
    trace = dz.new_zeros(dz.shape[0])
    for i in range(flat.shape[1]):
        (row,) = torch.autograd.grad(
            flat[:, i].sum(), z, retain_graph=True, create_graph=create_graph
        )
        trace = trace + row.flatten(1)[:, i]
    return trace


def check_finite(x: Tensor, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` for NaN or inf values: an adaptive solver would
    shrink its step to nothing and fail on every example of the batch."""
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: the input has NaN or inf values")


def rademacher_like(x: Tensor) -> Tensor:
    """Independent signs +-1 (probability 1/2 each) of x's shape, dtype and device."""
    return torch.randint_like(x, 2) * 2 - 1


def hutchinson_trace(dz: Tensor, z: Tensor, noise: Tensor, create_graph: bool) -> Tensor:
    """e^T (d dz / d z) e per example [B]: an unbiased estimate of the trace for E[e e^T] = I."""
    (vjp,) = torch.autograd.grad(dz, z, noise, create_graph=create_graph)
    return (vjp * noise).flatten(1).sum(1)


class CNFDynamics(nn.Module):
    """The augmented ODE (dz/dt, dlogdet/dt) = (f(t, z), tr(df/dz)) of one solve of `CNF`.

    Built per solve, so what a solve integrates (the trace mode, its noise, whether a graph is
    built) cannot change between it and its adjoint backward pass. With ``trace`` None (the
    inverse) the second component is 0 and costs nothing.
    """

    def __init__(self, net: nn.Module, trace: str | None, noise: Tensor | None, create_graph: bool):
        super().__init__()
        self.net, self.trace, self.noise, self.create_graph = net, trace, noise, create_graph
        self.evaluations = 0

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        z, logdet = state
        self.evaluations += 1
        if self.trace is None:
            return self.net(t, z), torch.zeros_like(logdet)
        # A graph through the solve is wanted when the caller asked for one and this evaluation
        # runs with grad on (not so in the adjoint method's forward solve).
        create_graph = self.create_graph and torch.is_grad_enabled()
        with torch.enable_grad():
            if not (create_graph and z.requires_grad):  # differentiate from here
                z = z.detach().requires_grad_(True)
            dz = self.net(t, z)
            if self.trace == "exact":
                trace = exact_trace(dz, z, create_graph)
            else:
                trace = hutchinson_trace(dz, z, self.noise, create_graph)
        if not create_graph:
            dz, trace = dz.detach(), trace.detach()
        return dz, trace


class CNF(Bijection):
    """z = x + integral_0^T f(t, z(t)) dt, logdet = integral_0^T tr(df/dz) dt (module
    docstring); inverse by integrating from T back to 0. ``evaluations``: the number of
    evaluations of f in the last forward or inverse solve (FFJORD's NFE).

    Args:
        net: the dynamics f(t, z) [B,C,H,W] -> [B,C,H,W] (`ODENet`).
        channels: C of the input, checked.
        time: the integration time T (FFJORD: 1).
        trace: ``"hutchinson"`` (Rademacher noise, estimated) or ``"exact"``.
        solver: a torchdiffeq method (``"dopri5"``, FFJORD's; ``"dopri8"``, ``"rk4"``, ...).
        rtol, atol: the adaptive solver's tolerances (FFJORD: 1e-5 both), raised to
            `RESOLVABLE_TOL_EPS` epsilons of the input's dtype when below.
        adjoint: gradients by the adjoint ODE (``odeint_adjoint``, FFJORD's, O(1) memory in
            the number of steps) instead of backpropagating through the solver's steps.
    """

    def __init__(
        self,
        net: nn.Module,
        channels: int,
        time: float = 1.0,
        trace: str = "hutchinson",
        solver: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        adjoint: bool = True,
    ):
        super().__init__()
        if time <= 0:
            raise ValueError(f"CNF integration time must be positive, got {time}")
        self.net, self.channels, self.time = net, channels, time
        self.trace = trace
        self.solver, self.rtol, self.atol, self.adjoint = solver, rtol, atol, adjoint
        self.evaluations = 0

    @property
    def trace(self) -> str:
        return self._trace

    @trace.setter
    def trace(self, mode: str) -> None:
        if mode not in TRACE_MODES:
            raise ValueError(f"trace must be one of {TRACE_MODES}, got {mode!r}")
        self._trace = mode

    @property
    def logdet_estimated(self) -> bool:
        return self.trace != "exact"

    def _solve(self, x: Tensor, start: float, end: float, with_trace: bool):
        """Integrate (x, 0) from ``start`` to ``end``: (state at end, integral of the trace)."""
        trace = self.trace if with_trace else None
        noise = rademacher_like(x) if trace == "hutchinson" else None  # one noise per solve
        dynamics = CNFDynamics(self.net, trace, noise, torch.is_grad_enabled())
        times = torch.tensor([start, end], dtype=x.dtype, device=x.device)
        floor = RESOLVABLE_TOL_EPS * torch.finfo(x.dtype).eps  # float32 cannot reach 1e-12
        options = dict(rtol=max(self.rtol, floor), atol=max(self.atol, floor), method=self.solver)
        state = (x, x.new_zeros(x.shape[0]))
        try:
            if self.adjoint and torch.is_grad_enabled():
                params = tuple(p for p in self.net.parameters() if p.requires_grad)
                solution = odeint_adjoint(dynamics, state, times, adjoint_params=params, **options)
            else:
                solution = odeint(dynamics, state, times, **options)
        except AssertionError as error:  # torchdiffeq's "underflow in dt"
            raise RuntimeError(
                f"CNF: the {self.solver} solve failed ({error}) at rtol {options['rtol']:.0e}, "
                f"atol {options['atol']:.0e}: the dynamics are too stiff or not finite"
            ) from error
        self.evaluations = dynamics.evaluations
        return tuple(s[-1] for s in solution)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_image(x, self.channels, "CNF")
        check_finite(x, "CNF")
        if x.shape[0] == 0:
            return x, x.new_zeros(0)
        return self._solve(x, 0.0, self.time, with_trace=True)

    def inverse(self, z: Tensor) -> Tensor:
        check_image(z, self.channels, "CNF.inverse")
        check_finite(z, "CNF.inverse")
        if z.shape[0] == 0:
            return z
        return self._solve(z, self.time, 0.0, with_trace=False)[0]


def ffjord_block(channels: int, hidden: Sequence[int] = (64, 64, 64), **options) -> CNF:
    """One FFJORD block: a `CNF` over `ODENet(channels, hidden)`; ``options`` go to `CNF`."""
    return CNF(ODENet(channels, hidden), channels, **options)
