"""Registry: every model builds and runs at a small size; parameter counts match the papers."""

from __future__ import annotations

import copy

import pytest
import torch

from models.registry import MODELS, count_params

# Parameter counts printed in the papers (millions): the targets the registry's widths were
# chosen for. Inverse-Flow Tables 2, 3, 5, 6 and 4.
PUBLISHED_PARAMS_M = {
    "inverse_flow_mnist_k4": 0.6,
    "inverse_flow_mnist_k16": 1.6,
    "inverse_flow_cifar10_k4": 0.466,
    "inverse_flow_cifar10_k16": 1.76,
    "exact_mnist_linear9": 0.103,
    "exponential_mnist_linear9": 0.110,
    "emerging_mnist_linear9": 0.103,
    "inverse_conv_mnist_linear9": 0.096,
}
# CDFlow Table 2 (within 3%) and its Woodbury/ButterflyFlow baselines (within 5%), i-ConvNet.
PUBLISHED_PARAMS_TOLERANCE = {
    "cdflow_cifar10": (44.2, 0.03),
    "cdflow_imagenet32": (44.2, 0.03),
    "cdflow_galaxy": (6.25, 0.03),
    "woodbury_cifar10": (45.3, 0.05),
    "butterflyflow_cifar10": (44.4, 0.05),
    "woodbury_cifar10_k4": (3.125, 0.05),
    "woodbury_cifar10_k16": (12.49, 0.05),
    "butterflyflow_cifar10_k4": (3.168, 0.05),
    "butterflyflow_cifar10_k16": (12.58, 0.05),
    "iconvnet_cifar10": (1.4, 0.05),
    # Inverse-Flow Tables 3 and 6, within 10%.
    "macow_cifar10_k16": (2.68, 0.10),
    "mintnet_mnist_k16": (125.9, 0.10),
    "mintnet_cifar10_k16": (12.466, 0.10),
    # CDFlow Table 2: Emerging (CIFAR-10, ImageNet32, Galaxy) and Real NVP, within 10%.
    "emerging_cifar10": (46.6, 0.10),
    "emerging_imagenet32": (44.0, 0.10),
    "emerging_galaxy": (6.68, 0.10),
    "realnvp_imagenet32": (46.2, 0.10),
    "realnvp_galaxy": (6.38, 0.10),
    # The Glow-step baselines at ImageNet32 (same image size as CIFAR-10) and Galaxy (L=2, K=8).
    "woodbury_imagenet32": (45.3, 0.05),
    "butterflyflow_imagenet32": (44.4, 0.05),
    "glow_galaxy": (6.25, 0.10),
    "woodbury_galaxy": (6.68, 0.10),
    "butterflyflow_galaxy": (6.39, 0.10),
    # The residual flows of CDFlow Table 2, within 10%.
    "iresnet_cifar10": (25.0, 0.10),
    "residual_flow_cifar10": (25.2, 0.10),
    "idensenet_cifar10": (24.9, 0.10),
    "iresnet_imagenet32": (29.7, 0.10),
    "residual_flow_imagenet32": (47.1, 0.10),
    "idensenet_imagenet32": (47.0, 0.10),
    "iresnet_galaxy": (6.88, 0.10),
    "residual_flow_galaxy": (5.58, 0.10),
    "idensenet_galaxy": (6.07, 0.10),
}
# Reproduced from the released SNF configuration, the SNF 9-layer flow has the same parameters
# as the exact one (W, R and a bias per conv, 0.103M); Table 4's 0.364M cannot be reached without
# counting parameters that do not exist, so it is checked against the exact row's count instead.
SNF_LINEAR_PUBLISHED_M = 0.364


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_M))
def test_parameter_count_within_ten_percent_of_paper(name):
    n = count_params(MODELS[name]()) / 1e6
    assert abs(n / PUBLISHED_PARAMS_M[name] - 1) < 0.10, n


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS_TOLERANCE))
def test_structured_models_match_published_sizes(name):
    target, tolerance = PUBLISHED_PARAMS_TOLERANCE[name]
    n = count_params(MODELS[name]()) / 1e6
    assert abs(n / target - 1) < tolerance, n


def test_an_ema_copy_counts_as_the_model_it_averages():
    """`python -m bench time` times the EMA weights of the residual-flow rows: their parameter
    count is the model's, not 0 (the copy's parameters do not require grad)."""
    model = MODELS["iresnet_galaxy"](levels=1, steps=1, width=4)
    frozen = copy.deepcopy(model).requires_grad_(False)
    assert count_params(frozen) == count_params(model) > 0


def test_snf_linear_counts_conv_and_learned_inverse():
    snf = count_params(MODELS["snf_mnist_linear9"]())
    exact = count_params(MODELS["exact_mnist_linear9"]())
    convs = 3 * (1 + 16 + 256) * 9  # W, 3x3, per block of three layers
    assert snf == exact + convs


SMALL = {
    "glow": dict(levels=2, steps=1, width=4),
    "realnvp": dict(levels=2, width=4, blocks=1),
    "linear9": dict(layers=3, blocks=3),
    "iconvnet": dict(blocks=2, convs_per_block=1),
    "macow": dict(steps=1, hidden=4),
    "mintnet": dict(steps=1, multiplier=1, tol=1e-9, max_iter=300),
    "made": dict(hidden=(4,)),
    "maf": dict(layers=2, hidden=(4,)),
    "idensenet": dict(steps=1, growth=2, depth=1),
    "ffjord": dict(blocks=1, hidden=(4,), rtol=1e-7, atol=1e-7),
}


def small_kwargs(name: str) -> dict:
    for key, kwargs in SMALL.items():
        if key in name:
            return kwargs
    return dict(steps=1, width=4)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_builds_small_and_round_trips(name):
    flow = MODELS[name](**small_kwargs(name)).eval()
    x = torch.randint(0, 256, (2, *flow.input_shape)).double()
    bpd = flow.bpd(x)
    assert bpd.shape == (2,) and torch.isfinite(bpd).all()
    z, _ = flow(x)
    assert torch.equal(flow.inverse(z), x)  # floor of the dequantized image


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_takes_an_empty_batch(name):
    """Batch size 0: empty log_prob and samples, in training mode too, and no state is spoiled
    (ActNorm's data-dependent initialisation waits for a non-empty batch)."""
    c, h, w = MODELS[name].keywords["input_shape"]
    small = (c, 8, 8) if "conf" not in name else (c, h, w)  # CONF: 3x3 kernels at the last level
    flow = MODELS[name](**small_kwargs(name), input_shape=small).float()  # float32: faster
    for training in (True, False):
        flow.train(training)
        assert flow.log_prob(torch.zeros(0, *flow.input_shape, dtype=torch.float32)).shape == (0,)
        assert flow.sample(0).shape == (0, *flow.input_shape)
    assert all(torch.isfinite(p).all() for p in flow.parameters())  # no init on empty data
