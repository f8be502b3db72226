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
from models.core import Bijection, zero_logdet
from models.registry import layer_examples
from tests.helpers import sample_input

EXAMPLES = layer_examples()
BATCH = 3


def build(name: str, device):
    factory, shape = EXAMPLES[name]
    layer = factory().to(device=device, dtype=torch.float64).eval()
    x = sample_input(layer, shape, BATCH, device)
    return layer, x


def assert_passes(result: checks.CheckResult) -> None:
    assert result.passed, result.message()


def assert_fails(result: checks.CheckResult) -> None:
    assert not result.passed, result.message()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_round_trip(name, device):
    layer, x = build(name, device)
    assert_passes(checks.check_round_trip_x(layer, x))
    assert_passes(checks.check_round_trip_z(layer, x))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_logdet_matches_jacobian(name, device):
    assert_passes(checks.check_logdet_forward(*build(name, device)))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_inverse_logdet_matches_jacobian(name, device):
    assert_passes(checks.check_logdet_inverse(*build(name, device)))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_logdet_per_example(name, device):
    assert_passes(checks.check_per_example_logdet(*build(name, device)))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_batch_one(name, device):
    assert_passes(checks.check_batch_one(*build(name, device)))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_output_follows_input_dtype_and_device(name, device):
    assert_passes(checks.check_dtype_device(*build(name, device)))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
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
    # a correct round trip alone does not save it
    assert_passes(checks.check_round_trip_x(WrongLogdet(), x))
    assert_passes(checks.check_round_trip_z(WrongLogdet(), x))
    forward = checks.check_logdet_forward(WrongLogdet(), x)
    assert_fails(forward)
    assert forward.error == pytest.approx(18 * torch.log(torch.tensor(2.0)).item())
    assert_fails(checks.check_logdet_inverse(WrongLogdet(), x))


def test_harness_catches_planted_wrong_inverse():
    x = torch.randn(2, 2, 3, 3)
    assert_passes(checks.check_logdet_forward(WrongInverse(), x))
    result = checks.check_round_trip_x(WrongInverse(), x)
    assert_fails(result)
    assert result.error == pytest.approx(1e-6)
    assert_fails(checks.check_round_trip_z(WrongInverse(), x))
