"""Residual flows (i-ResNet, Residual Flows, i-DenseNet): the estimators against the exact logdet,
the fixed-point inverse's tolerance, the Lipschitz bound, and the estimated BPD in the tables.
The exact mode's round trip and logdet are the generic tests (tests/test_layers.py)."""

from __future__ import annotations

import pytest
import torch

from bench.report.conditions import condition_label
from models.flows.residual import idensenet, iresnet, residual_flow
from models.layers.residual import (
    LipSwish,
    ResidualBlock,
    SpectralNormConv2d,
    idensenet_block,
    iresnet_block,
    residual_flow_block,
)
from models.registry import randomize

BLOCKS = {
    "iresnet": lambda: iresnet_block(2, 8),
    "residual_flow": lambda: residual_flow_block(2, 8),
    "idensenet": lambda: idensenet_block(2, 4, 2),
}


def built(name: str) -> ResidualBlock:
    torch.manual_seed(0)
    return randomize(BLOCKS[name](), 0.3).eval()


def exact_logdet(block: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
    mode, block.logdet_mode = block.logdet_mode, "exact"
    try:
        return block(x)[1]
    finally:
        block.logdet_mode = mode


@pytest.mark.parametrize("name", ["residual_flow", "idensenet"])
def test_russian_roulette_is_unbiased(name):
    """Mean of 1000 draws within 4 standard errors of the exact logdet, per example."""
    block = built(name)
    x = torch.randn(2, 2, 3, 3)
    exact = exact_logdet(block, x)
    with torch.no_grad():
        draws = torch.stack([block(x)[1] for _ in range(1000)])
    error = (draws.mean(0) - exact).abs()
    assert (error < 4 * draws.std(0) / 1000**0.5 + 1e-9).all(), (draws.mean(0), exact)


def test_power_series_converges_to_the_exact_logdet():
    """i-ResNet's truncated series: the bias shrinks with the terms (Lip(g) < 1)."""
    block = built("iresnet")
    x = torch.randn(2, 2, 3, 3)
    exact = exact_logdet(block, x)
    errors = []
    for terms in (1, 8):
        block.terms = terms
        with torch.no_grad():
            draws = torch.stack([block(x)[1] for _ in range(1000)])
        errors.append(float((draws.mean(0) - exact).abs().max()))
        standard_error = float(draws.std(0).max()) / 1000**0.5
    assert errors[1] < 4 * standard_error + 1e-6 and errors[0] > errors[1]


def test_the_estimator_is_differentiable_and_unbiased_in_its_gradient():
    """Training: the gradient of the estimate reaches the parameters; its mean over draws
    matches the exact logdet's gradient."""
    block = built("residual_flow").train()
    for module in block.modules():  # freeze the normalisation so the draws see one g
        if isinstance(module, SpectralNormConv2d):
            module.iterations = 0
    x = torch.randn(1, 2, 3, 3)
    weight = next(m for m in block.net if isinstance(m, SpectralNormConv2d)).weight
    (exact,) = torch.autograd.grad(exact_logdet(block, x).sum(), weight)
    grads = [torch.autograd.grad(block(x)[1].sum(), weight)[0] for _ in range(600)]
    mean = torch.stack(grads).mean(0)
    spread = torch.stack(grads).std(0) / 600**0.5
    assert ((mean - exact).abs() <= 5 * spread + 1e-6).all()


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_fixed_point_inverse_reaches_its_tolerance(name):
    block = built(name)
    block.tol = 1e-12
    x = torch.randn(3, 2, 4, 4)
    z = block(x)[0]
    with torch.no_grad():
        back = block.inverse(z)
    assert block.last_inverse["change"] <= 1e-12
    assert (back + block.net(back) - z).abs().max() < 1e-10  # the fixed-point equation holds
    assert (back - x).abs().max() < 1e-10


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_float32_inverse_stops_at_what_float32_resolves(name):
    """A tolerance below float32's resolution (1e-10) is raised to 16 eps max(1, max|z|): the
    inverse of a float32 block converges instead of raising (it raised on every block before)."""
    block = built(name).float()
    z = block(16 * torch.randn(4, 2, 4, 4, dtype=torch.float32))[0]
    with torch.no_grad():
        block.inverse(z)
    resolution = 16 * torch.finfo(torch.float32).eps * float(z.abs().max())
    assert block.last_inverse["change"] <= resolution


def test_a_non_contractive_g_is_reported_by_the_inverse():
    block = built("iresnet")
    for module in block.modules():
        if isinstance(module, SpectralNormConv2d):
            module.coeff = 50.0  # no longer contractive
            module.power_iteration((4, 4), 50)
    block.max_iter = 30
    with pytest.raises(RuntimeError, match="did not reach tol .* is g contractive"):
        block.inverse(torch.randn(2, 2, 4, 4))


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_lipschitz_constant_of_g_is_below_one(name):
    """The largest singular value of the dense Jacobian of g at random points, and of each
    normalised convolution as an operator, stays below 1 after the normalisation (each within
    2% of its bound c: the normalisation divides by a power-iteration estimate of sigma, which
    approaches it from below, as in the papers' code)."""
    block = built(name)
    for _ in range(5):
        x = torch.randn(2, 4, 4)
        jac = torch.autograd.functional.jacobian(lambda v: block.net(v[None])[0], x)
        assert torch.linalg.matrix_norm(jac.reshape(32, 32), 2) < 1.0
    for conv in (m for m in block.modules() if isinstance(m, SpectralNormConv2d)):
        c_in = conv.weight.shape[1]
        operator = torch.autograd.functional.jacobian(
            lambda v, conv=conv: conv(v[None])[0], torch.zeros(c_in, 4, 4)
        ).reshape(-1, c_in * 16)
        # power iteration estimates sigma from below: within 2% of the bound, and below 1
        assert torch.linalg.matrix_norm(operator, 2) < min(1.0, 1.02 * conv.coeff)


@pytest.mark.parametrize("flow", [iresnet, residual_flow, idensenet])
def test_flows_in_exact_mode_match_their_estimate_and_sample(flow):
    torch.manual_seed(0)
    kwargs = {"input_shape": (1, 4, 4), "levels": 2, "steps": 1}
    width = {"growth": 4} if flow is idensenet else {"width": 8}
    model = flow(**kwargs, **width, logdet_mode="exact").eval()
    x = torch.randint(0, 256, (2, 1, 4, 4)).double()
    torch.manual_seed(1)
    exact = model.log_prob(x)
    for module in model.modules():
        if isinstance(module, ResidualBlock):
            module.logdet_mode = "russian_roulette"
    torch.manual_seed(1)  # the same dequantization noise
    with torch.no_grad():
        estimate = torch.stack([model.log_prob(x) for _ in range(40)]).mean(0)
    assert torch.allclose(estimate, exact.detach(), atol=0.5)
    assert model.sample(2).shape == (2, 1, 4, 4)


def test_the_table_marks_an_estimated_bpd():
    record = {"metrics": {"bpd": 3.3, "logdet_estimated": 1}, "dataset": "cifar10"}
    assert condition_label(record, "bpd", "cifar10") == " (est.)"
    assert condition_label({**record, "metrics": {"bpd": 3.3}}, "bpd", "cifar10") == ""


def test_residual_flows_preactivate_every_block_but_the_first():
    """The Residual Flows code puts a LipSwish before the first convolution of every residual
    branch except the network's first (rtqichen/residual-flows resflows/resflow.py _resblock);
    i-ResNet has none."""
    flow = residual_flow(input_shape=(3, 8, 8), levels=2, steps=2, width=4)
    firsts = [type(b.net[0]) for b in flow.modules() if isinstance(b, ResidualBlock)]
    assert firsts == [SpectralNormConv2d] + [LipSwish] * 3
    resnet = iresnet(input_shape=(3, 8, 8), levels=2, steps=2, width=4)
    assert all(
        isinstance(b.net[0], SpectralNormConv2d)
        for b in resnet.modules()
        if isinstance(b, ResidualBlock)
    )
    assert isinstance(residual_flow_block(2, 4, preact=False).net[0], SpectralNormConv2d)
