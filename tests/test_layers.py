"""Generic exactness tests over every entry of `models.registry.layer_examples()`, in float64.

Adding one registry line covers a new layer. The checks are those of `models.checks`, the
harness that ``python -m bench check-layer`` runs on layers outside the registry: round trip,
logdet against the autograd Jacobian in both directions, per-example logdets, batch 1,
dtype/device of the outputs, and gradcheck where a layer runs a custom autograd Function.
"""

from __future__ import annotations

import pytest
import torch

from models import checks
from models.core import Bijection, UnsupportedDtypeError, zero_logdet
from models.registry import layer_examples
from tests.helpers import sample_input

EXAMPLES = layer_examples()
BATCH = 3
# FFJORD's CNF differentiated through an ODE solve at 1e-12 (a dense Jacobian, or gradcheck's
# finite differences, of the solver): minutes each, so `make test-slow` runs these.
SOLVED_BY_AN_ODE = {"ffjord_cnf", "ffjord_cnf_adjoint"}


def examples(slow: set[str] = frozenset()) -> list:
    """Every example name, those in ``slow`` marked `pytest.mark.slow`."""
    return [pytest.param(n, marks=pytest.mark.slow) if n in slow else n for n in sorted(EXAMPLES)]


def build(name: str, device):
    factory, shape = EXAMPLES[name]
    layer = factory().to(device=device, dtype=torch.float64).eval()
    x = sample_input(layer, shape, BATCH, device)
    return layer, x


def assert_passes(result: checks.CheckResult) -> None:
    assert result.passed, result.message()


def assert_fails(result: checks.CheckResult) -> None:
    assert not result.passed, result.message()


# Asserting forms of the harness's checks, also imported by other tests (the Triton solver's).
def check_round_trip(layer, x) -> None:
    assert_passes(checks.check_round_trip_x(layer, x))
    assert_passes(checks.check_round_trip_z(layer, x))


def check_logdet_forward(layer, x) -> None:
    assert_passes(checks.check_logdet_forward(layer, x))


def check_logdet_inverse(layer, x) -> None:
    assert_passes(checks.check_logdet_inverse(layer, x))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_round_trip(name, device):
    check_round_trip(*build(name, device))


@pytest.mark.parametrize("name", examples(slow=SOLVED_BY_AN_ODE))
def test_logdet_matches_jacobian(name, device):
    check_logdet_forward(*build(name, device))


@pytest.mark.parametrize("name", examples(slow=SOLVED_BY_AN_ODE))
def test_inverse_logdet_matches_jacobian(name, device):
    check_logdet_inverse(*build(name, device))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_logdet_per_example(name, device):
    assert_passes(checks.check_per_example_logdet(*build(name, device)))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_batch_one(name, device):
    assert_passes(checks.check_batch_one(*build(name, device)))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_output_follows_input_dtype_and_device(name, device):
    assert_passes(checks.check_dtype_device(*build(name, device)))


@pytest.mark.parametrize("name", examples(slow=SOLVED_BY_AN_ODE))
def test_gradcheck_of_custom_autograd_functions(name, device):
    result = checks.check_gradcheck(*build(name, device))
    if result.skipped:
        pytest.skip(result.detail)
    assert_passes(result)


def test_harness_tolerances_are_the_documented_ones():
    assert (checks.ROUND_TRIP_TOL, checks.LOGDET_TOL, checks.PER_EXAMPLE_TOL) == (
        1e-9,
        1e-8,
        1e-10,
    )
    assert (checks.GRADCHECK_EPS, checks.GRADCHECK_ATOL, checks.GRADCHECK_RTOL) == (
        1e-6,
        1e-5,
        1e-3,
    )


class WrongLogdet(Bijection):
    """z = 2x with logdet 0 (should be D log 2): the harness must catch it."""

    def forward(self, x):
        return 2 * x, zero_logdet(x)

    def inverse(self, z):
        return z / 2


class WrongInverse(Bijection):
    """z = 2x whose inverse is off by a small shift."""

    def forward(self, x):
        return 2 * x, x.new_full((x.shape[0],), x[0].numel() * torch.log(torch.tensor(2.0)).item())

    def inverse(self, z):
        return z / 2 + 1e-6


def test_harness_catches_planted_wrong_logdet():
    x = torch.randn(2, 2, 3, 3)
    check_round_trip(WrongLogdet(), x)  # a correct round trip alone does not save it
    with pytest.raises(AssertionError):
        check_logdet_forward(WrongLogdet(), x)
    with pytest.raises(AssertionError):
        check_logdet_inverse(WrongLogdet(), x)
    measured = checks.check_logdet_forward(WrongLogdet(), x).error
    assert measured == pytest.approx(18 * torch.log(torch.tensor(2.0)).item())


def test_harness_catches_planted_wrong_inverse():
    x = torch.randn(2, 2, 3, 3)
    check_logdet_forward(WrongInverse(), x)
    with pytest.raises(AssertionError):
        check_round_trip(WrongInverse(), x)
    assert_fails(checks.check_round_trip_z(WrongInverse(), x))
    assert checks.check_round_trip_x(WrongInverse(), x).error == pytest.approx(1e-6)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_empty_batch_works_in_both_directions(name, device):
    """Batch size 0 gives empty outputs of the right shapes, in eval and in training mode
    (issue 14, item 8: some layers failed with reshape or reduction errors)."""
    layer, x = build(name, device)
    x = x[:0]
    for training in (False, True):
        layer.train(training)
        z, logdet = layer(x)
        assert z.shape[0] == 0 and logdet.shape == (0,)
        assert z.dtype == logdet.dtype == x.dtype
        assert layer.inverse(z).shape == x.shape


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_half_precision_is_refused_the_same_way_by_every_layer(name, device):
    """Policy: layers compute in float32 or float64 only. Half-precision input is refused with
    one clear error in both directions, also by a layer converted to half precision (issue 14,
    item 8: ActNorm and the spline silently returned float32, others failed inside torch)."""
    layer, x = build(name, device)
    z, _ = layer(x)
    cls = type(layer).__name__
    for dtype in (torch.float16, torch.bfloat16):
        for converted in (False, True):
            layer.to(dtype if converted else torch.float64)
            forward, inverse = (
                rf"^{cls}\.{d}: {dtype} input is not" for d in ("forward", "inverse")
            )
            with pytest.raises(UnsupportedDtypeError, match=forward):
                layer(x.to(dtype))
            with pytest.raises(UnsupportedDtypeError, match=inverse):
                layer.inverse(z.to(dtype))
