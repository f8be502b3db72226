"""FFJORD: what the generic exactness tests (tests/test_layers.py, the exact-trace CNF) do not
cover: the Hutchinson estimator against the exact trace, the solver's tolerance, the dtype
floor of the tolerances, the multiscale architecture and its size, training."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from models.flows.ffjord import ffjord, ffjord_scales
from models.layers import cnf
from models.layers.cnf import (
    CNF,
    RESOLVABLE_TOL_EPS,
    ODENet,
    exact_trace,
    ffjord_block,
    hutchinson_trace,
    rademacher_like,
)
from models.registry import MODELS, count_params, randomize


def test_exact_trace_is_the_trace_of_the_dense_jacobian():
    torch.manual_seed(0)
    net = randomize(ODENet(2, (5,)), 0.5).double()
    z = torch.randn(3, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(0.3, dtype=torch.float64)
    trace = exact_trace(net(t, z), z, create_graph=False)
    for b in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: net(t, v[None])[0], z[b].detach())
        torch.testing.assert_close(trace[b], jac.reshape(12, 12).trace(), rtol=0, atol=1e-12)


def all_signs(shape: tuple[int, ...]) -> torch.Tensor:
    """Every +-1 vector of ``shape`` [2^D, *shape]: E[e e^T] = I exactly over them."""
    d = math.prod(shape)
    bits = (torch.arange(2**d)[:, None] >> torch.arange(d)) & 1
    return (bits * 2 - 1).to(torch.float64).reshape(2**d, *shape)


def test_hutchinson_trace_averages_to_the_trace_over_all_sign_vectors():
    torch.manual_seed(0)
    net = randomize(ODENet(1, (5,)), 0.5).double()
    signs = all_signs((1, 2, 2))
    z = torch.randn(1, 1, 2, 2, dtype=torch.float64).expand(len(signs), -1, -1, -1)
    z = z.clone().requires_grad_(True)
    t = torch.tensor(0.4, dtype=torch.float64)
    dz = net(t, z)
    exact = exact_trace(dz, z, create_graph=False)
    estimates = hutchinson_trace(dz, z, signs, create_graph=False)
    assert estimates.std() > 0.1  # each one is off
    torch.testing.assert_close(estimates.mean(), exact[0], rtol=0, atol=1e-12)


def test_hutchinson_logdet_over_all_sign_vectors_is_the_exact_logdet(monkeypatch):
    """The layer draws one noise per solve (a sign vector, by `rademacher_like`) and integrates
    e^T J e with it: averaged over all 2^D sign vectors that is the exact logdet, to the
    solver's tolerance."""
    torch.manual_seed(0)
    layer = randomize(ffjord_block(1, (4,), trace="exact", rtol=1e-11, atol=1e-11), 0.5)
    layer = layer.double().eval()
    x = torch.randn(1, 1, 2, 2, dtype=torch.float64)
    signs = iter(all_signs((1, 1, 2, 2)))
    drawn = []

    def next_signs(like):
        drawn.append(next(signs))
        return drawn[-1]

    monkeypatch.setattr(cnf, "rademacher_like", next_signs)
    with torch.no_grad():
        _, exact = layer(x)
        layer.trace = "hutchinson"
        estimates = torch.cat([layer(x)[1] for _ in range(16)])
        layer.inverse(x)  # the inverse integrates no trace: no noise
    assert len(drawn) == 16 and layer.logdet_estimated
    assert estimates.std() > 0.1
    torch.testing.assert_close(estimates.mean(), exact[0], rtol=0, atol=1e-8)


def test_rademacher_noise_is_plus_or_minus_one():
    x = torch.zeros(4000, dtype=torch.float32)
    e = rademacher_like(x)
    assert e.dtype == x.dtype and set(e.unique().tolist()) == {-1.0, 1.0}
    assert abs(e.mean().item()) < 0.1


def test_the_solve_reaches_its_tolerance():
    """At FFJORD's tolerances (1e-5) the map and logdet agree with a 1e-12 solve within a small
    multiple of the local tolerance, atol + rtol |z| (the solver controls the local error)."""
    torch.manual_seed(1)
    layer = randomize(ffjord_block(2, (6,), trace="exact"), 0.3).double().eval()
    x = torch.randn(4, 2, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        z, logdet = layer(x)
        layer.rtol = layer.atol = 1e-12
        z_ref, logdet_ref = layer(x)
        x_back = layer.inverse(z_ref)
    assert ((z - z_ref).abs() / (1e-5 + 1e-5 * z_ref.abs())).max() < 20
    assert ((logdet - logdet_ref).abs() / (1e-5 + 1e-5 * logdet_ref.abs())).max() < 20
    assert (x_back - x).abs().max() < 1e-9


def test_float32_tolerance_is_raised_to_what_float32_resolves():
    """1e-12 asked in float32 solves as 10 float32 epsilons (without the floor this solve does
    not end within a minute)."""
    factory = partial(ffjord_block, 1, (4,), trace="exact", rtol=1e-12, atol=1e-12)
    layer = randomize(factory(), 0.5).float().eval()
    x = torch.randn(2, 1, 3, 3, dtype=torch.float32)
    with torch.no_grad():
        z, _ = layer(x)
        asked = layer.evaluations
        layer.rtol = layer.atol = RESOLVABLE_TOL_EPS * torch.finfo(torch.float32).eps
        layer(x)
    assert asked == layer.evaluations
    assert (layer.inverse(z) - x).abs().max() < 1e-4


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="trace must be one of"):
        CNF(ODENet(1, (2,)), 1, trace="brute")
    with pytest.raises(ValueError, match="time must be positive"):
        CNF(ODENet(1, (2,)), 1, time=0.0)
    with pytest.raises(ValueError, match="expects 2 channels"):
        ffjord_block(2, (2,))(torch.zeros(1, 3, 2, 2))


def test_architecture_is_the_authors_odenvp():
    """4 scales on 32x32; 14 CNFs whose sizes are those of the released configuration: per CNF
    on C channels, 3x3 convs (C+1 -> 64), (65 -> 64) twice, (65 -> C), with biases."""
    assert ffjord_scales((3, 32, 32)) == 4 and ffjord_scales((1, 8, 8)) == 2
    model = MODELS["ffjord_cifar10"]()
    cnfs = [m for m in model.modules() if isinstance(m, CNF)]
    channels = sorted(cnf.channels for cnf in cnfs)
    assert channels == sorted([3, 3, 12, 12, 6, 6, 24, 24, 12, 12, 48, 48, 24, 24])

    def odenet(c: int) -> int:
        return (c + 1) * 64 * 9 + 64 + 2 * (65 * 64 * 9 + 64) + 65 * c * 9 + c

    assert count_params(model) == sum(odenet(c) for c in channels)
    assert model.transform.before_squeeze is not None and model.transform.split is None


def test_flow_exact_and_estimated_logdets_agree_and_it_samples():
    torch.manual_seed(0)
    model = ffjord((1, 8, 8), hidden=(4,), trace="exact", rtol=1e-8, atol=1e-8).eval()
    y = torch.randn(2, 1, 8, 8)  # after the preprocessing: the CNFs' logdet
    with torch.no_grad():
        _, exact = model.transform(y)
        for cnf in (m for m in model.modules() if isinstance(m, CNF)):
            cnf.trace = "hutchinson"
        draws = torch.stack([model.transform(y)[1] for _ in range(40)])
    stderr = draws.std(0) / draws.shape[0] ** 0.5
    assert (stderr > 0).all() and ((draws.mean(0) - exact).abs() < 4 * stderr).all()
    assert model.sample(3).shape == (3, 1, 8, 8)


@pytest.mark.parametrize("adjoint", [False, True])
def test_training_steps_lower_the_loss(adjoint):
    torch.manual_seed(0)
    model = ffjord((1, 8, 8), hidden=(8,), adjoint=adjoint, rtol=1e-4, atol=1e-4).float()
    x = torch.randint(0, 256, (16, 1, 8, 8)).float()
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(8):
        torch.manual_seed(2)  # the same dequantization and trace noise: a deterministic loss
        loss = model.bpd(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert losses[-1] < losses[0] - 0.05, losses


def test_adjoint_gradients_use_each_solves_own_noise():
    """Two Hutchinson forwards before one backward: the adjoint pass of each solve integrates
    that solve's noise, so the gradients equal backpropagation through the solver's steps."""
    layer = randomize(ffjord_block(2, (4,), rtol=1e-10, atol=1e-10), 0.5).double()
    x = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    grads = []
    for adjoint in (False, True):
        layer.adjoint = adjoint
        layer.zero_grad()
        torch.manual_seed(5)
        (layer(x)[1].sum() + layer(2 * x)[1].sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in layer.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)


def test_non_finite_input_and_a_failed_solve_get_one_clear_line():
    layer = ffjord_block(1, (2,))
    x = torch.zeros(2, 1, 2, 2)
    x[1, 0, 0, 0] = float("nan")
    for call in (layer, layer.inverse):
        with pytest.raises(ValueError, match="NaN or inf"):
            call(x)
    with torch.no_grad():  # a net that explodes: the solver's step underflows
        for p in layer.parameters():
            p.fill_(40.0)
    with pytest.raises(RuntimeError, match="CNF: the dopri5 solve failed"):
        layer(torch.ones(1, 1, 2, 2))
