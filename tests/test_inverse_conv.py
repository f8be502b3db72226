"""Inverse-of-convolution family: exact solves against a dense reference, gradients, masks."""

from __future__ import annotations

import pytest
import torch

from models.core import SingularOperatorError
from models.layers.inverse_conv import (
    SOLVERS,
    CausalConv2d,
    FInCConv2d,
    InverseConv2d,
    causal_conv,
    causal_solve,
    default_strips,
    dense_operator,
    solve_rows,
)
from models.layers.snf import ExactConv2d, SelfNormConv2d
from models.registry import count_params

FAST_SOLVERS = [s for s in SOLVERS if s != "dense"]


def random_causal_kernel(c: int, k: int, scale: float = 0.2, unit: bool = True) -> torch.Tensor:
    weight = scale * torch.randn(c, c, k, k)
    centre = torch.tril(weight[:, :, -1, -1], -1)
    diag = torch.eye(c) if unit else torch.diag(torch.exp(0.3 * torch.randn(c)))
    weight[:, :, -1, -1] = centre + diag
    return weight


def error_to_dense_solve(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> float:
    """max |x - T^-1 y| / max |T^-1 y| with T^-1 y from the explicit D x D matrix."""
    b, _, h, w = y.shape
    expected = torch.linalg.solve(dense_operator(weight, h, w), y.reshape(b, -1).T).T
    return ((x.reshape(b, -1) - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("solver", FAST_SOLVERS)
@pytest.mark.parametrize("c", [1, 3, 8, 12])
@pytest.mark.parametrize("k", [2, 3])
def test_solve_matches_dense_solve(solver, c, k):
    h, w = (5, 7) if c < 8 else (4, 6)
    weight = random_causal_kernel(c, k)
    y = torch.randn(3, c, h, w)
    x = causal_solve(y, weight, solver)
    error = error_to_dense_solve(x, y, weight)
    assert error < 1e-10, error
    assert (causal_conv(x, weight) - y).abs().max() < 1e-10


@pytest.mark.parametrize("solver", FAST_SOLVERS)
def test_solvers_agree_with_wavefront(solver):
    weight = random_causal_kernel(6, 3, unit=False)
    y = torch.randn(4, 6, 9, 7)
    reference = causal_solve(y, weight, "wavefront")
    torch.testing.assert_close(causal_solve(y, weight, solver), reference, atol=1e-11, rtol=0)


@pytest.mark.parametrize("strips", [1, 2, 3, 100])
@pytest.mark.parametrize("c", [1, 3, 8, 12])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_row_solver_in_strips_matches_dense_solve(strips, c, k):
    """Strips of any width, also ones that do not divide W (7 columns in 2 or 3 strips) and
    strips as narrow as the kernel allows (100 asks for one column; k - 1 is the minimum)."""
    h, w = (5, 7) if c < 8 else (3, 7)
    weight = random_causal_kernel(c, k)
    y = torch.randn(2, c, h, w)
    assert error_to_dense_solve(solve_rows(y, weight, strips), y, weight) < 1e-10


def test_row_solver_with_a_general_centre_and_strided_input():
    """A centre tap that is not triangular (block lower triangular row operators), and an input
    that is a strided view (a channel group of FInC's split)."""
    weight = random_causal_kernel(4, 3)
    weight[:, :, -1, -1] = torch.eye(4) + 0.3 * torch.randn(4, 4)
    y = torch.randn(2, 8, 6, 9)[:, ::2]
    for strips in (1, 3):
        assert error_to_dense_solve(solve_rows(y, weight, strips), y, weight) < 1e-10


def test_default_strips_cut_only_wide_rows_on_cpu():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert default_strips(12, 16, cpu) == 4  # 192 values a row: strips of 48
    assert default_strips(3, 32, cpu) == 1  # two strips would not pay
    assert default_strips(12, 16, gpu) == 1  # GPUs: fewest steps


def test_gradcheck_through_the_default_strips():
    assert default_strips(3, 48, torch.device("cpu")) == 3
    weight = random_causal_kernel(3, 2).requires_grad_()
    y = torch.randn(1, 3, 2, 48, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: causal_solve(a, b, "rows"), (y, weight))


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("c,k", [(1, 2), (3, 3), (5, 2)])
def test_gradcheck_of_custom_backward(solver, c, k):
    weight = random_causal_kernel(c, k).requires_grad_()
    y = torch.randn(2, c, 3, 4, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: causal_solve(a, b, solver), (y, weight))


def test_masked_entries_get_no_gradient_and_are_not_counted():
    layer = InverseConv2d(3, 3)
    z, _ = layer(torch.randn(2, 3, 4, 4))
    z.pow(2).sum().backward()
    grad = layer.weight.grad[0]
    assert (grad[:, :, -1, -1].triu() == 0).all()  # centre diagonal and upper triangle
    assert grad[:, :, :-1].abs().sum() > 0
    assert count_params(layer) == 3 * 3 * 9 - 6


@pytest.mark.parametrize("channels", [8, 12, 16])
def test_round_trip_for_many_channels(channels):
    """The case the released Inverse-Flow CUDA code gets wrong (C >= 8)."""
    for layer in (InverseConv2d(channels, 3), FInCConv2d(channels, 3)):
        with torch.no_grad():
            layer.weight.normal_(0, 0.2)
        x = torch.randn(5, channels, 6, 5)
        z, _ = layer(x)
        assert (layer.inverse(z) - x).abs().max() < 1e-10
        assert (z - x).abs().max() > 1e-2  # not the identity


def test_finc_groups_use_four_corners():
    layer = FInCConv2d(4, 2)
    with torch.no_grad():
        layer.weight.normal_(0, 0.5)
    x = torch.zeros(1, 4, 5, 5)
    x[:, :, 2, 2] = 1.0
    z, _ = layer(x)
    support = [(z[0, g].abs() > 0).nonzero() for g in range(4)]
    assert support[0].min(0).values.tolist() == [2, 2]  # top-left causal: reaches down-right
    assert support[3].max(0).values.tolist() == [2, 2]  # bottom-right: reaches up-left


def test_cinc_logdet_is_learnable_diagonal():
    layer = CausalConv2d(3, 3)
    with torch.no_grad():
        layer.log_diag.copy_(torch.tensor([[0.1, -0.2, 0.3]]))
    _, logdet = layer(torch.randn(2, 3, 4, 5))
    torch.testing.assert_close(logdet, torch.full((2,), 20 * 0.2))


def test_unknown_solver_and_bad_channels_raise():
    with pytest.raises(ValueError, match="unknown solver"):
        InverseConv2d(3, 3, solver="magic")
    with pytest.raises(ValueError, match="divisible by 4"):
        FInCConv2d(6, 3)
    with pytest.raises(ValueError, match=r"3 channels.*\(1, 4, 4, 4\)"):
        InverseConv2d(3)(torch.zeros(1, 4, 4, 4))


def test_exact_conv_refuses_large_images_clearly():
    with pytest.raises(ValueError, match=r"dense 12288 x 12288.*max_dims"):
        ExactConv2d(3)(torch.zeros(1, 3, 64, 64))


def test_selfnorm_training_gradient_uses_learned_inverse():
    torch.manual_seed(3)
    layer = SelfNormConv2d(2, gradient_rule="paper").train()
    x = torch.randn(4, 2, 5, 5)
    _, logdet = layer(x)
    (grad,) = torch.autograd.grad(logdet.sum(), layer.weight)
    counts = layer.tap_counts(x)
    expected = 4 * layer.inverse_weight.detach().flip(2, 3).transpose(0, 1) * counts
    torch.testing.assert_close(grad, expected)
    assert layer.auxiliary_loss().shape == (4,)
    # R initialised to the adjoint of a near-identity W: the surrogate is close to the truth.
    exact = torch.autograd.grad(layer.eval().exact_logdet(x), layer.weight)[0]
    assert (grad / 4 - exact).abs().max() < 0.2 * exact.abs().max()


def test_layer_benchmark_pairs_every_method_with_its_own_conv2d(monkeypatch):
    """`python -m bench layers` rows: every solver's solve and backward, conv2d and the dense
    solve, each ratio taken to a conv2d timed just before it (not to one shared timing)."""
    import bench.experiments.layer_bench as layers

    calls = []
    real_time_call = layers.time_call

    def recording_time_call(fn, device, runs):
        timing = real_time_call(fn, device, runs)
        calls.append(timing)
        return timing

    monkeypatch.setattr(layers, "time_call", recording_time_call)
    rows = layers.benchmark_inverse_conv(batch=2, runs=2, shapes=((3, 4, 5),))
    methods = {(r["method"], r["pass"]) for r in rows}
    for solver in layers.INVERSE_CONV_SOLVERS:
        assert {(solver, "solve"), (solver, "backward")} <= methods
    assert {("conv2d", "conv"), ("dense_solve_triangular", "solve")} <= methods
    assert len(calls) == 2 * len(rows)  # one conv2d reference per measurement
    for row, (conv, measured) in zip(rows, zip(calls[::2], calls[1::2], strict=True), strict=True):
        assert row["ms"] == measured.mean_ms
        assert row["ratio_to_conv2d"] == measured.mean_ms / conv.mean_ms


# A singular or non-finite operator is reported, naming the layer, by every solver and in both
# directions (issue 14, item 8): T is invertible exactly when its centre tap is.
CAUSAL_LAYERS = [(InverseConv2d, 4), (FInCConv2d, 8), (CausalConv2d, 4)]


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("cls,channels", CAUSAL_LAYERS)
def test_singular_centre_tap_raises_naming_the_layer(cls, channels, solver):
    layer = cls(channels, 3, solver=solver)
    with torch.no_grad():
        layer.diag[1, 1, -1, -1] = 0.0  # one zero on the centre tap's diagonal
    x = torch.randn(2, channels, 4, 5)
    pattern = rf"^{cls.__name__}: the centre tap's diagonal has a zero entry .*singular operator"
    with pytest.raises(SingularOperatorError, match=pattern):
        layer(x)
    with pytest.raises(SingularOperatorError, match=pattern):
        layer.inverse(x)


def test_issue_reproductions_of_zeroed_diagonals_raise():
    """InverseConv2d gave non-finite z with logdet 0, FInC logdet 0 and a NaN inverse."""
    for layer in (InverseConv2d(3, 3, "rows"), FInCConv2d(4, 3)):
        layer.diag.zero_()
        x = torch.randn(2, layer.channels, 4, 4)
        with pytest.raises(SingularOperatorError, match=type(layer).__name__):
            layer(x)
        with pytest.raises(SingularOperatorError, match=type(layer).__name__):
            layer.inverse(x)


@pytest.mark.parametrize("log_diag", [float("-inf"), -800.0])
def test_cinc_diagonal_that_underflows_to_zero_is_singular(log_diag):
    layer = CausalConv2d(3, 3)
    with torch.no_grad():
        layer.log_diag[0, 2] = log_diag  # exp(-800) is 0 in float64
    with pytest.raises(SingularOperatorError, match="CausalConv2d: .*zero entry"):
        layer(torch.randn(1, 3, 4, 4))


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_kernel_raises_naming_the_layer(solver, bad):
    layer = InverseConv2d(3, 3, solver)
    with torch.no_grad():
        layer.weight[0, 1, 2, 0, 1] = bad
    with pytest.raises(SingularOperatorError, match=r"^InverseConv2d: the kernel has non-finite"):
        layer(torch.randn(2, 3, 4, 4))


@pytest.mark.parametrize("solver", SOLVERS)
def test_causal_solve_refuses_a_singular_centre(solver):
    y = torch.randn(2, 2, 3, 4)
    triangular = random_causal_kernel(2, 3)
    triangular[1, 1, -1, -1] = 1e-310  # its reciprocal overflows: as good as singular
    general = random_causal_kernel(2, 3)
    general[:, :, -1, -1] = torch.ones(2, 2)  # not triangular, rank 1
    for weight in (triangular, general):
        with pytest.raises(SingularOperatorError, match=r"^causal_solve: .*singular operator"):
            causal_solve(y, weight, solver)


@pytest.mark.parametrize("solver", SOLVERS)
def test_empty_batch_solves_with_gradients(solver):
    """power_series and dense failed with a reshape error on batch size 0."""
    weight = random_causal_kernel(3, 3).requires_grad_()
    y = torch.zeros(0, 3, 4, 5, requires_grad=True)
    x = causal_solve(y, weight, solver)
    assert x.shape == y.shape
    x.sum().backward()
    assert y.grad.shape == y.shape and torch.equal(weight.grad, torch.zeros_like(weight))
