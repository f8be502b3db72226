"""MADE and MAF: the Jacobian is triangular in the MADE order with the stated diagonal, the
sequential inverse matches a dense reference, masks count as the registry says, and the MAF row's
size reproduces CDFlow's 105.0M when masked-out weights are counted as CDFlow does."""

from __future__ import annotations

import pytest
import torch

from models.flows.maf import made, maf
from models.layers.made import MADE, ElementwiseActNorm
from models.registry import MODELS, count_params, randomize


def dense_jacobian(fn, x):
    """d fn(x)/dx [D, D] of one example x [C,H,W] (fn maps [1,C,H,W] -> [1,C,H,W])."""
    d = x.numel()
    jac = torch.autograd.functional.jacobian(lambda v: fn(v[None]).flatten(), x)
    return jac.reshape(d, d)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("hidden", [(12,), (12, 9)])
def test_jacobian_is_triangular_in_the_made_order(reverse, hidden):
    layer = randomize(MADE((2, 3, 2), hidden, reverse=reverse, seed=3), 0.3).eval()
    x = torch.randn(2, 3, 2)
    jac = dense_jacobian(lambda v: layer(v)[0], x)
    order = torch.argsort(layer.degrees()[0])
    in_order = jac[order][:, order]
    assert in_order.triu(1).abs().max() == 0  # z_i never depends on a later input
    assert in_order.tril(-1).abs().max() > 1e-3  # and does depend on earlier ones
    _, alpha = layer.conditionals(x.flatten()[None])
    torch.testing.assert_close(torch.diagonal(jac), torch.exp(-alpha[0]), atol=1e-12, rtol=0)
    _, logdet = layer(x[None])
    torch.testing.assert_close(logdet[0], torch.linalg.slogdet(jac).logabsdet, atol=1e-10, rtol=0)


def test_sequential_inverse_matches_the_dense_fixed_point_reference():
    """D passes of v <- mu(v) + exp(alpha(v)) z are exact (one more correct input per pass);
    the incremental inverse must agree with them."""
    layer = randomize(MADE((3, 4, 4), (40, 30), seed=5), 0.2).eval()
    z = torch.randn(4, 3, 4, 4)
    flat = z.flatten(1)
    v = torch.zeros_like(flat)
    for _ in range(flat.shape[1]):
        mu, alpha = layer.conditionals(v)
        v = mu + torch.exp(alpha) * flat
    torch.testing.assert_close(layer.inverse(z).flatten(1), v, atol=1e-12, rtol=0)


def test_inverse_round_trips_in_float32_at_a_larger_shape():
    layer = randomize(MADE((3, 8, 8), (64, 64), seed=0), 0.05).float().eval()
    x = torch.randn(5, 3, 8, 8, dtype=torch.float32)
    z, _ = layer(x)
    assert (layer.inverse(z) - x).abs().max() < 1e-4


def test_count_params_counts_only_unmasked_weights():
    layer = MADE((2, 3, 3), (7, 5), seed=4)
    deg_in, deg_1, deg_2 = layer.degrees()
    first = int((deg_in[None, :] <= deg_1[:, None]).sum())
    second = int((deg_1[None, :] <= deg_2[:, None]).sum())
    output = 2 * int((deg_2[None, :] < deg_in[:, None]).sum())
    biases = 7 + 5 + 2 * 18
    assert count_params(layer) == first + second + output + biases
    assert sum(p.numel() for p in layer.parameters()) == 18 * 7 + 7 * 5 + 5 * 36 + biases


def test_masked_weights_get_no_gradient():
    layer = randomize(MADE((1, 2, 3), (6,), seed=0))
    layer(torch.randn(4, 1, 2, 3))[1].sum().backward()
    for sub in (layer.hidden[0], layer.output):
        assert sub.weight.grad[~sub.mask].abs().max() == 0


def test_maf_alternates_the_order_and_round_trips():
    flow = randomize(maf((1, 2, 4), layers=3, hidden=(6,), seed=1)).eval()
    mades = [m for m in flow.transform.layers if isinstance(m, MADE)]
    firsts = [int(torch.argsort(m.degrees()[0])[0]) for m in mades]
    assert firsts == [0, 7, 0]
    x = torch.randint(0, 256, (3, 1, 2, 4)).double()
    z, _ = flow(x)
    assert torch.equal(flow.inverse(z), x)
    jac = dense_jacobian(lambda v: flow.transform(v)[0].view_as(v), x[0] / 100)
    _, logdet = flow.transform(x[:1] / 100)
    torch.testing.assert_close(logdet[0], torch.linalg.slogdet(jac).logabsdet, atol=1e-10, rtol=0)


def test_elementwise_actnorm_initialises_from_the_first_training_batch():
    norm = ElementwiseActNorm((2, 3, 3)).train()
    x = 3.0 + 2.0 * torch.randn(64, 2, 3, 3)
    z, _ = norm(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(2, 3, 3), atol=1e-10, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(2, 3, 3), atol=1e-5, rtol=0)
    assert bool(norm.initialized)


# CDFlow Table 2 prints MAF at 105.0M. One MADE of the MAF paper's CIFAR-10 setting (two hidden
# layers of 1024, D = 3072) has 3072*1024 + 1024*1024 + 1024*6144 weights and 1024 + 1024 + 6144
# biases; with the normalisation's 2 * 3072 per layer, ten layers are exactly 105,000,960.
MAF_DENSE_PER_LAYER = 3072 * 1024 + 1024 * 1024 + 1024 * 6144 + 1024 + 1024 + 6144 + 2 * 3072


def test_one_maf_layer_at_the_paper_size_matches_cdflows_count_when_counted_densely():
    flow = maf((3, 32, 32), layers=1, hidden=(1024, 1024))
    dense = sum(p.numel() for p in flow.parameters())
    assert dense == MAF_DENSE_PER_LAYER
    assert 10 * dense == 105_000_960  # CDFlow: 105.0M
    effective = count_params(flow) / dense
    assert 0.45 < effective < 0.55, effective  # MADE masks keep about half the weights


def test_made_row_is_one_maf_layer_without_normalisation():
    flow = made((3, 32, 32), hidden=(1024, 1024))
    assert sum(p.numel() for p in flow.parameters()) == MAF_DENSE_PER_LAYER - 2 * 3072


@pytest.mark.slow
def test_maf_row_at_full_size():
    flow = MODELS["maf_cifar10"]()
    assert sum(p.numel() for p in flow.parameters()) == 105_000_960
    assert abs(count_params(flow) / 1e6 - 52.5) < 0.5
