"""Whole-flow tests: log_prob against the Jacobian, sampling round trip, exact BPD, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from models.core import (
    Flow,
    Scale,
    Shift,
    UniformDequantization,
    UnsupportedDtypeError,
    image_preprocessing,
)
from models.flows.glow import glow
from models.layers.glow import ActNorm
from models.multiscale import FlattenLatent, MultiscaleLevel, Squeeze
from models.registry import MODELS, count_params, randomize
from tests.helpers import jacobian_logdet


def small_glow(shape=(2, 4, 4)):
    flow = randomize(glow(shape, levels=2, steps=2, width=8))
    return flow.eval()


def test_log_prob_of_multiscale_flow_matches_jacobian():
    flow = small_glow()
    flow.preprocessing = type(flow.preprocessing)([Scale(1 / 256), Shift(-0.5)])
    x = torch.rand(2, 2, 4, 4) * 256
    z, _ = flow(x)
    log_base = -0.5 * (z.pow(2).sum(1) + z.shape[1] * math.log(2 * math.pi))
    expected = log_base + jacobian_logdet(lambda v: flow(v)[0], x)
    torch.testing.assert_close(flow.log_prob(x), expected, atol=1e-8, rtol=0)


def test_sample_then_forward_round_trips():
    flow = small_glow()
    flow.preprocessing = type(flow.preprocessing)([Scale(1 / 256), Shift(-0.5)])
    torch.manual_seed(1)
    x = flow.sample(4, temperature=0.7)
    assert x.shape == (4, 2, 4, 4)
    torch.manual_seed(1)
    z = torch.randn(4, flow.num_dims) * 0.7
    torch.testing.assert_close(flow(x)[0], z, atol=1e-9, rtol=0)


def test_bpd_of_identity_flow_on_dequantized_data_is_exact():
    shape = (1, 3, 5)
    flow = Flow(FlattenLatent(shape), shape, image_preprocessing())
    x = torch.randint(0, 256, (4, *shape)).double()
    torch.manual_seed(7)
    bpd = flow.bpd(x)
    torch.manual_seed(7)
    z = (x + torch.rand_like(x)) / 256 - 0.5
    d = math.prod(shape)
    nats_per_dim = 0.5 * z.pow(2).flatten(1).sum(1) / d + 0.5 * math.log(2 * math.pi)
    expected = 8 + nats_per_dim / math.log(2)
    torch.testing.assert_close(bpd, expected, atol=1e-12, rtol=0)


def test_dequantization_adds_unit_noise_and_inverts_by_floor():
    x = torch.randint(0, 256, (8, 1, 4, 4)).double()
    y, logdet = UniformDequantization()(x)
    assert ((y - x) >= 0).all() and ((y - x) < 1).all()
    assert (logdet == 0).all()
    assert torch.equal(UniformDequantization().inverse(y), x)


def test_sampled_images_are_in_pixel_range():
    flow = small_glow()
    x = flow.sample(3)
    assert x.min() >= 0 and x.max() <= 255 and torch.equal(x, x.floor())


def test_squeeze_rejects_odd_spatial_size_naming_shapes():
    with pytest.raises(ValueError, match=r"even height and width.*\(2, 3, 5, 4\)"):
        Squeeze()(torch.zeros(2, 3, 5, 4))


def test_wrong_channel_count_names_expected_and_actual():
    with pytest.raises(ValueError, match=r"3 channels.*\(2, 4, 4, 4\)"):
        ActNorm(3)(torch.zeros(2, 4, 4, 4))
    flow = small_glow()
    with pytest.raises(ValueError, match=r"\[B, 2, 4, 4\].*\(1, 3, 4, 4\)"):
        flow.log_prob(torch.zeros(1, 3, 4, 4))


def test_actnorm_data_dependent_init_is_persisted():
    layer = ActNorm(3).train()
    x = torch.randn(16, 3, 4, 4) * 5 + 2
    z, _ = layer(x)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-10, rtol=0)
    std = z.std(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(std, torch.ones(3), atol=1e-5, rtol=0)
    restored = ActNorm(3)
    restored.load_state_dict(layer.state_dict())
    assert bool(restored.initialized)
    restored.train()(x * 3)  # a second batch must not re-initialise
    torch.testing.assert_close(restored.bias, layer.bias)


def test_glow_cifar10_has_published_parameter_count():
    n = count_params(MODELS["glow_cifar10"]())
    assert abs(n / 44.2e6 - 1) < 0.03, n


def test_models_build_at_any_size():
    flow = MODELS["glow_cifar10"](levels=2, steps=1, width=4)
    assert flow.bpd(torch.randint(0, 256, (2, 3, 32, 32)).double()).shape == (2,)


def test_level_shapes_squeeze_then_keep_half_the_channels():
    from models.multiscale import level_shapes, squeezed_shape

    assert level_shapes((1, 28, 28), 2) == [(4, 14, 14), (8, 7, 7)]
    assert level_shapes((3, 32, 32), 3) == [(12, 16, 16), (24, 8, 8), (48, 4, 4)]
    assert level_shapes((5, 4, 4), 2, squeeze_first=False) == [(5, 4, 4), (12, 2, 2)]
    with pytest.raises(ValueError, match=r"level 2 cannot squeeze odd shape \(4, 7, 7\)"):
        level_shapes((1, 28, 28), 3)
    assert squeezed_shape((2, 6, 4)) == (8, 3, 2)


@pytest.mark.parametrize(
    "bad,message",
    [
        (-1.0, r"^Flow expects pixel values in 0\.\.255, got values in \[-1, 255\]"),
        (256.0, r"^Flow expects pixel values in 0\.\.255, got values in \[0, 256\]"),
        (float("inf"), r"^Flow expects pixel values in 0\.\.255, got values in \[0, inf\]"),
        (float("nan"), r"^Flow expects finite input, got NaN values"),
    ],
)
def test_log_prob_refuses_pixels_outside_0_255_or_nan(bad, message):
    """They gave a NaN (or a meaningless) BPD instead of an error (issue 14, item 8)."""
    flow = small_glow()
    x = torch.randint(0, 256, (2, 2, 4, 4)).double()
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0, 255  # the range's ends are valid
    assert torch.isfinite(flow.log_prob(x)).all()
    x[1, 1, 2, 3] = bad
    with pytest.raises(ValueError, match=message):
        flow.log_prob(x)
    with pytest.raises(ValueError, match=message):
        flow.bpd(x)


def test_flow_without_dequantization_takes_any_finite_input():
    """The pixel range belongs to flows that dequantize uint8 images; any flow refuses NaN."""
    flow = small_glow()
    flow.preprocessing = type(flow.preprocessing)([Shift(-0.5)])
    x = 3 * torch.randn(2, 2, 4, 4) - 300
    assert torch.isfinite(flow.log_prob(x)).all()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="^Flow expects finite input, got NaN values"):
        flow.log_prob(x)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.uint8], ids=str)
def test_flow_refuses_inputs_other_than_float32_and_float64(dtype):
    flow = small_glow()
    x = torch.randint(0, 256, (2, 2, 4, 4)).to(dtype)
    with pytest.raises(UnsupportedDtypeError, match=rf"^Flow: {dtype} input is not supported"):
        flow.log_prob(x)
    assert torch.isfinite(flow.float().log_prob(x.float())).all()


def test_multiscale_level_checks_its_input_before_running_any_step():
    """A wrong input size is reported as the level's own input shape, before the steps ahead of
    the squeeze run (FFJORD's there are ODE solves)."""
    before = ActNorm(2)
    calls = []
    before.register_forward_hook(lambda *args: calls.append(1))
    level = MultiscaleLevel([ActNorm(8)], (8, 2, 2), before_squeeze=[before])
    with pytest.raises(ValueError, match=r"expects \[B, 2, 4, 4\], got shape \(1, 2, 6, 6\)"):
        level(torch.zeros(1, 2, 6, 6))
    assert not calls
    assert level(torch.randn(3, 2, 4, 4))[0].shape == (3, 32) and calls
