"""Reference computations for the exactness tests: dense Jacobians and inputs in a domain."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def sample_input(layer: nn.Module, shape: tuple[int, ...], batch: int, device) -> Tensor:
    """A float64 batch [batch, *shape] inside the layer's ``domain`` (normal if unbounded)."""
    domain = getattr(layer, "domain", None)
    if domain is None:
        return torch.randn(batch, *shape, dtype=torch.float64, device=device)
    lo, hi = domain
    margin = 0.05 * (hi - lo)
    u = torch.rand(batch, *shape, dtype=torch.float64, device=device)
    return lo + margin + (hi - lo - 2 * margin) * u


def jacobian_logdet(fn, x: Tensor) -> Tensor:
    """log|det d fn(x)/dx| per example of x [B, ...] by autograd Jacobian + slogdet -> [B]."""
    out = []
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda v: fn(v[None]).flatten(), xi)
        jac = jac.reshape(jac.shape[0], -1)
        out.append(torch.linalg.slogdet(jac).logabsdet)
    return torch.stack(out)
