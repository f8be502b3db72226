"""Registry: every model builds and runs at a small size (the papers' parameter counts:
tests/test_published_params.py)."""

from __future__ import annotations

import copy

import pytest
import torch

from models.core import declared_preprocessing
from models.names import DuplicateNameError, register
from models.registry import MODELS, count_params


def test_a_registry_refuses_a_name_given_twice():
    """A second entry under a taken name would silently replace a row's model: it is an error
    naming the registry and the name, and nothing of that call is added."""
    registry = register({}, "model", glow=1)
    with pytest.raises(DuplicateNameError, match="^model name 'glow' is registered twice$"):
        register(registry, "model", other=2, glow=3)
    assert registry == {"glow": 1}
    with pytest.raises(SyntaxError, match="repeated"):  # twice in one call: Python refuses it
        compile("register({}, 'model', glow=1, glow=2)", "<registry>", "exec")


def test_an_ema_copy_counts_as_the_model_it_averages():
    """`python -m bench time` times the EMA weights of the residual-flow rows: their parameter
    count is the model's, not 0 (the copy's parameters do not require grad)."""
    model = MODELS["iresnet_galaxy"](levels=1, steps=1, width=4)
    frozen = copy.deepcopy(model).requires_grad_(False)
    assert count_params(frozen) == count_params(model) > 0


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


def _settings(layers) -> list[tuple[str, dict]]:
    """Each preprocessing layer's class and settings (num_levels, scale, alpha, shift)."""
    return [
        (type(layer).__name__, {k: v for k, v in vars(layer).items() if k[0] != "_"})
        for layer in layers
    ]


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("override", [{}, {"logit_alpha": 0.01}, {"logit_alpha": None}])
def test_every_model_declares_the_preprocessing_it_builds(name, override):
    """The report writes each row's preprocessing from the builder's declared ``logit_alpha``
    without building the model: the declaration is what the built flow applies, by default and
    when a config sets it."""
    build = MODELS[name]
    flow = build(**small_kwargs(name), **override)
    expected = _settings(declared_preprocessing(build, **override))
    assert _settings(flow.preprocessing.layers) == expected


def test_a_builder_that_does_not_declare_its_preprocessing_is_named():
    """The report's notes need ``logit_alpha`` in the builder's signature (README, adding a
    layer): without it, or without a value, the error names the builder."""

    def undeclared(input_shape=(1, 8, 8)):
        raise AssertionError("not built")

    def no_default(logit_alpha, input_shape=(1, 8, 8)):
        raise AssertionError("not built")

    with pytest.raises(TypeError, match="builder undeclared does not declare its preproc"):
        declared_preprocessing(undeclared)
    with pytest.raises(TypeError, match="no_default has no logit_alpha default and none was"):
        declared_preprocessing(no_default)
    assert len(declared_preprocessing(no_default, logit_alpha=None)) == 3
