"""Layers and factories as a user would write them, right and wrong, for the check-layer tests
(``tests/user_layers.py:NAME`` or ``tests.user_layers:NAME``): deliberately inexact variants of
the worked example `examples/householder.py` (the kind of bug a new layer has), a custom
autograd Function with a wrong backward, and factories and layers that cannot be checked."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

from models.core import Bijection

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "householder.py"


def _example_module():
    name = "_convflow_bench_example_householder"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


HouseholderConv1x1 = _example_module().HouseholderConv1x1


class WrongLogdetHouseholder(HouseholderConv1x1):
    """Forgets that W acts on every pixel: logdet = sum(s) instead of H W sum(s)."""

    def forward(self, x):
        z, _ = super().forward(x)
        return z, self.log_scale.sum() * x.new_ones(x.shape[0])


class WrongInverseHouseholder(HouseholderConv1x1):
    """Applies the reflections in forward order: Q instead of Q^T = H_K ... H_1."""

    def inverse(self, z):
        weight = self.orthogonal() * torch.exp(-self.log_scale)[None, :]
        return torch.einsum("ij,bjhw->bihw", weight, z)


class _Scale(torch.autograd.Function):
    """y = x * exp(s) per channel, whose gradient for s is 1% off: only gradcheck sees it."""

    @staticmethod
    def forward(ctx, x, log_scale):
        y = x * torch.exp(log_scale)[None, :, None, None]
        ctx.save_for_backward(y, log_scale)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, log_scale = ctx.saved_tensors
        grad_x = grad * torch.exp(log_scale)[None, :, None, None]
        return grad_x, 1.01 * (grad * y).sum((0, 2, 3))


class WrongBackwardScale(Bijection):
    """z = exp(s) x per channel by a custom autograd Function with a wrong ds backward; its
    values, logdet and input gradient are right."""

    def __init__(self, channels):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        pixels = x.shape[2] * x.shape[3]
        return _Scale.apply(x, self.log_scale), pixels * self.log_scale.sum() * x.new_ones(
            x.shape[0]
        )

    def inverse(self, z):
        return z * torch.exp(-self.log_scale)[None, :, None, None]


def needs_three_arguments(channels, height, width):
    return HouseholderConv1x1(channels)


def spatial_factory(channels, spatial_shape=None):
    """Asks for the spatial shape by name: called as f(C, spatial_shape=(H, W))."""
    if tuple(spatial_shape) != (2, 3):
        raise ValueError(f"expected spatial_shape (2, 3), got {spatial_shape}")
    return HouseholderConv1x1(channels)


def positional_factory(channels, size):
    """Asks for the spatial shape positionally: called as f(C, (H, W))."""
    if tuple(size) != (2, 3):
        raise ValueError(f"expected size (2, 3), got {size}")
    return HouseholderConv1x1(channels)


def returns_a_number(channels):
    return 3


def raises(channels):
    raise ValueError("channels must be even")


class NoInverse(nn.Module):
    def __init__(self, channels):
        super().__init__()

    def forward(self, x):
        return x, x.new_zeros(x.shape[0])


class ForwardReturnsTensor(HouseholderConv1x1):
    def forward(self, x):
        return super().forward(x)[0]


class InverseNotImplemented(HouseholderConv1x1):
    def inverse(self, z):
        raise NotImplementedError("sampling direction not written yet")


NOT_CALLABLE = 42
