"""Initial state of the rows that come from the SNF code base (and its Inverse-Flow fork) has
the statistics of the released code's initialisation, as documented in `ExactConv2d` (module
docstring of models/layers/snf.py) and `SplineActivation`.

Sources (commit 4007e24 of akandykeller/SelfNormalizingFlows):
- snf/layers/selfnorm.py, SelfNormConv.reset_parameters (lines 136-153): W = dirac +
  xavier_normal_(gain=0.01) for k x k, a QR-orthogonal matrix for 1 x 1; R = flip_kernel(W);
  bias ~ N(0, std(w_noise)^2). The exact-conv rows use the same class (exact_cnn_mnist.py).
- snf/layers/activations.py, SplineActivation.__init__ (lines 134-140): raw widths, heights and
  derivatives randn * 0.01; snf/layers/splines/rational_quadratic.py (lines 38-46) adds
  c = log(e^(1 - min_derivative) - 1) to the raw derivatives and pads the boundary ones to c.
  girish-lab/Inverse-Flow (176f2c7) inf/layers/activations.py has the same lines 134-140.

Each check compares a pooled sample statistic with its target within five standard errors, so
it holds for any seed while a wrong scale (e.g. our former N(0, 0.01^2) kernels, zero biases,
identity splines) misses by far more.
"""

from __future__ import annotations

import math

import pytest
import torch

from models.flows.linear import LINEAR_LAYERS, linear_flow
from models.layers.snf import ExactConv2d, SelfNormConv2d, flip_kernel, xavier_std
from models.layers.spline import SplineActivation
from models.registry import MODELS

SPLINE_ROWS = [f"{kind}_mnist_linear9" for kind in LINEAR_LAYERS] + [
    "inverse_flow_mnist_k4",
    "inverse_flow_mnist_k16",
    "inverse_flow_cifar10_k4",
    "inverse_flow_cifar10_k16",
]
CONV3_ROWS = ["exact_mnist_linear9", "snf_mnist_linear9"]
CONV1_ROWS = ["snf_mnist_k4", "snf_mnist_k16", "snf_cifar10_k4", "snf_cifar10_k16"]


@pytest.fixture
def float32_build():
    """Rows are built in float32 (their training dtype; float64 init of the big coupling nets
    only costs time); the statistics below are taken in float64."""
    torch.set_default_dtype(torch.float32)


def assert_standard_normal(sample: torch.Tensor, slack: float = 0.0) -> None:
    """Sample mean within 5 standard errors of 0, sample std within 5 (+ slack) of 1."""
    sample = sample.double().flatten()
    n = sample.numel()
    assert abs(sample.mean().item()) < 5 / math.sqrt(n), sample.mean()
    assert abs(sample.std().item() - 1) < 5 / math.sqrt(2 * n) + slack, sample.std()


def dirac(weight: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(weight)
    k = weight.shape[-1]
    out[:, :, k // 2, k // 2] = torch.eye(weight.shape[0])
    return out


def check_conv3(layers: list[ExactConv2d]) -> None:
    """k x k: (W - dirac) / xavier_std ~ N(0, 1); bias / std(W - dirac) ~ N(0, 1)."""
    noise, bias = [], []
    for layer in layers:
        w = layer.weight.detach().double()
        c, k = w.shape[0], w.shape[-1]
        drawn = w - dirac(w)
        noise.append(drawn.flatten() / xavier_std(c, k))
        bias.append(layer.bias.detach().double() / drawn.std())
        if isinstance(layer, SelfNormConv2d):
            assert torch.equal(layer.inverse_weight, flip_kernel(layer.weight))
    assert_standard_normal(torch.cat(noise))
    assert_standard_normal(torch.cat(bias))


def check_conv1(layers: list[SelfNormConv2d]) -> None:
    """1 x 1: W orthogonal, R = W^T, bias / xavier_std ~ N(0, 1) (the code scales the bias by
    the sample std of C^2 unused Xavier draws: a few % of extra spread, the slack)."""
    bias = []
    for layer in layers:
        w = layer.weight.detach().double()[:, :, 0, 0]
        eye = torch.eye(w.shape[0], dtype=w.dtype)
        torch.testing.assert_close(w @ w.T, eye, atol=1e-5, rtol=0)
        assert torch.equal(layer.inverse_weight[:, :, 0, 0], layer.weight[:, :, 0, 0].T)
        bias.append(layer.bias.detach().double() / xavier_std(w.shape[0], 1))
    assert_standard_normal(torch.cat(bias), slack=0.1)


def check_splines(splines: list[SplineActivation]) -> None:
    """Raw widths, heights / 0.01 ~ N(0, 1); raw derivatives - c likewise; knot derivatives at
    the ends exactly 1, inside 1 + 0.01 sigmoid(c) N(0, 1) to first order."""
    assert splines
    widths, heights, derivs, knots = [], [], [], []
    for spline in splines:
        c = math.log(math.expm1(1 - spline.min_derivative))
        widths.append(spline.widths.detach().flatten() / 0.01)
        heights.append(spline.heights.detach().flatten() / 0.01)
        derivs.append((spline.derivatives.detach().double().flatten() - c) / 0.01)
        _, _, dk = spline._knots()
        dk = dk.detach().double()
        assert torch.equal(dk[..., 0], torch.ones_like(dk[..., 0]))
        assert torch.equal(dk[..., -1], torch.ones_like(dk[..., -1]))
        sigmoid_c = 1 - math.exp(-(1 - spline.min_derivative))  # sigmoid(c)
        knots.append(((dk[..., 1:-1] - 1) / (0.01 * sigmoid_c)).flatten())
    for sample in (widths, heights, derivs):
        assert_standard_normal(torch.cat(sample))
    assert_standard_normal(torch.cat(knots), slack=0.01)  # first-order (softplus) approximation


def modules(model, kind) -> list:
    return [m for m in model.modules() if isinstance(m, kind)]


@pytest.mark.parametrize("row", CONV3_ROWS)
def test_row_convs_start_at_the_snf_init(row, float32_build):
    layers = modules(MODELS[row](), ExactConv2d)
    assert len(layers) == 9
    check_conv3(layers)


@pytest.mark.parametrize("row", CONV1_ROWS)
def test_row_selfnorm_1x1_convs_start_at_the_snf_init(row, float32_build):
    layers = modules(MODELS[row](), SelfNormConv2d)
    assert len(layers) in (8, 32)
    check_conv1(layers)


@pytest.mark.parametrize("row", SPLINE_ROWS)
def test_row_splines_start_at_the_snf_init(row, float32_build):
    check_splines(modules(MODELS[row](), SplineActivation))


def test_layer_init_statistics_and_the_old_init():
    check_conv3([SelfNormConv2d(16, 3) for _ in range(10)])
    check_conv3([ExactConv2d(8, 5) for _ in range(10)])
    check_conv1([SelfNormConv2d(8, 1) for _ in range(20)])
    old = ExactConv2d(16, 3, init="ours")
    assert torch.equal(old.bias, torch.zeros(16))
    assert abs((old.weight - dirac(old.weight)).std().item() / 0.01 - 1) < 0.1
    with pytest.raises(ValueError, match="unknown init"):
        ExactConv2d(2, init="xavier")


def test_old_init_keeps_the_identity_start():
    """init="ours": splines exactly the identity, conv biases zero (the earlier behaviour)."""
    flow = linear_flow("snf", (1, 8, 8), layers=3, blocks=3, init="ours")
    for spline in modules(flow, SplineActivation):
        x = torch.randn(2, *spline.shape)
        z, logdet = spline(x)
        torch.testing.assert_close(z, x)
        torch.testing.assert_close(logdet, torch.zeros(2), atol=1e-12, rtol=0)
    for conv in modules(flow, SelfNormConv2d):
        assert torch.equal(conv.bias, torch.zeros_like(conv.bias))
    with pytest.raises(ValueError, match="unknown init"):
        SplineActivation((1, 2, 2), init="identity")


def test_authors_spline_is_near_but_not_the_identity():
    spline = SplineActivation((4, 8, 8))
    x = 3 * torch.randn(5, 4, 8, 8)
    z, logdet = spline(x)
    assert 0 < (z - x).abs().mean() < 0.1 and (z - x).abs().max() < 0.5  # tail bound 10
    assert 0 < logdet.abs().max() < 1  # a sum over 256 elements
