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


def fit_row(tmp_path, config: dict, *extra: str) -> dict:
    """`python -m bench fit` of ``config`` (written to tmp_path/row.yaml) with results and
    outputs under tmp_path; returns the one record it appended."""
    import json

    import yaml

    from bench.__main__ import main

    path = tmp_path / "row.yaml"
    path.write_text(yaml.safe_dump(config))
    args = [
        "fit",
        "--config",
        str(path),
        "--results_dir",
        str(tmp_path / "r"),
        "--work_dir",
        str(tmp_path / "o"),
        *extra,
    ]
    assert main(args) == 0
    (record,) = [json.loads(x) for x in (tmp_path / "r/runs" / f"{config['table']}.jsonl").open()]
    return record
