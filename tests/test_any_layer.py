"""Any layer, one contract: a plain ``torch.nn.Module`` with ``forward(x) -> (z, logdet[B])``
and ``inverse(z)`` (`tests/plain_layers.py`) enters the suite through one adapter
(`models.core.ModuleBijection`, applied by `models.slots.build_layer`), passes ``check-layer``
including its ``train_step`` check, and trains in ``compare``; layers that cannot train fail
``train_step`` naming the parameter."""

from __future__ import annotations

import json

import pytest
import torch

from models import checks
from models.core import Compose, ModuleBijection, UnsupportedDtypeError
from models.flows.glow import glow
from models.flows.linear import LINEAR_LAYERS, linear_flow
from models.layers.snf import ExactConv2d, SelfNormConv2d
from models.multiscale import Squeeze
from models.registry import randomize
from models.slots import SLOT_LAYERS, build_layer, slot_layer
from tests.plain_layers import GivensScale
from tests.test_check_layer import at_root, run, table_row  # noqa: F401 (at_root: a fixture)
from tests.test_compare import compare, float32  # noqa: F401 (float32: a fixture)
from tests.user_layers import HouseholderConv1x1

PLAIN = "tests/plain_layers.py:GivensScale"


def test_a_plain_module_is_wrapped_once_and_a_bijection_is_used_as_it_is():
    layer = build_layer(GivensScale, (3, 4, 5), "GivensScale")
    assert isinstance(layer, ModuleBijection) and type(layer.module) is GivensScale
    assert layer.auxiliary_loss() is None and layer.domain is None
    own = build_layer(HouseholderConv1x1, (3, 4, 5), "HouseholderConv1x1")
    assert type(own) is HouseholderConv1x1
    x = torch.randn(2, 3, 4, 5)
    z, logdet = Compose([layer, own])(x)  # Compose reads every part's auxiliary_loss
    assert Compose([layer, own]).auxiliary_loss() is None
    assert torch.allclose(layer.inverse(layer(x)[0]), x)
    with pytest.raises(UnsupportedDtypeError, match="GivensScale.forward"):
        layer(x.half())


def test_a_plain_module_fills_a_flow_templates_slot_and_its_loss_backpropagates():
    """The audit's crash: Compose.auxiliary_loss on a plain module in the first training step."""
    flow = glow(input_shape=(1, 8, 8), levels=2, steps=1, width=8, mix=PLAIN).float()
    x = torch.randint(0, 256, (2, 1, 8, 8)).float()
    loss, _ = flow.training_loss(x)
    loss.backward()
    givens = [m for m in flow.modules() if type(m).__name__ == "GivensScale"]
    assert len(givens) == 2 and all(m.log_scale.grad is not None for m in givens)
    assert slot_layer(GivensScale, None)((4, 2, 2)).module.channels == 4


def test_a_plain_module_passes_every_check_of_check_layer(capsys):
    code, out, err = run(capsys, PLAIN, "--shape", "3,4,5")
    assert code == 0, out + err
    assert "GivensScale at shape (3, 4, 5)" in out
    for name in checks.CHECKS:
        assert table_row(out, name)[1] == ("skip" if name == "gradcheck" else "pass")
    assert "one Adam step" in out and "all 8 checks passed" in out and err == ""


def test_a_detached_logdet_fails_the_training_check_naming_the_parameter(capsys):
    code, out, err = run(capsys, "tests/plain_layers.py:DetachedLogdetGivens", "--shape", "3,4,5")
    assert code == 1
    assert all(table_row(out, n)[1] in ("pass", "skip") for n in checks.CHECKS if n != "train_step")
    assert table_row(out, "train_step")[1] == "FAIL"
    assert "train_step FAILED" in err and "the logdet has no gradient path to log_scale" in err
    assert "1 of 8 checks failed" in out


def test_a_parameter_without_gradient_fails_the_training_check_naming_it(capsys):
    code, out, err = run(capsys, "tests/plain_layers.py:DetachedShiftGivens", "--shape", "3,4,5")
    assert code == 1 and table_row(out, "train_step")[1] == "FAIL"
    assert "no gradient reaches shift" in err and "angles" not in err.split("reaches")[1]


def test_a_layer_that_changes_the_shape_fails_the_training_check():
    layer = Squeeze().double()
    result = checks.check_train_step(layer, torch.randn(2, 2, 4, 6))
    assert not result.passed and "keeps x's shape" in result.detail


@pytest.mark.parametrize("name", sorted(SLOT_LAYERS))
def test_every_built_in_slot_layer_passes_the_training_check(name):
    """No false failure on the layers compare trains its baselines with."""
    torch.manual_seed(0)
    layer = randomize(SLOT_LAYERS[name](4, (4, 4)), 0.1, 0).double().eval()
    result = checks.check_train_step(layer, checks.sample_input(layer, (4, 4, 4), 3, "cpu"))
    assert result.passed, result.message()


def test_the_linear_rows_take_their_convolutions_and_options_from_the_slot_table():
    """Inverse-Flow Table 4's rows are slot layers by name; ``init`` and ``gradient_rule``
    reach the built-in exact and SNF convolutions and no other layer."""
    assert set(LINEAR_LAYERS) <= set(SLOT_LAYERS)
    options = dict(layers=3, blocks=3, init="ours", gradient_rule="paper")
    convs = [m for m in linear_flow("snf", (1, 8, 8), **options).modules()]
    convs = [m for m in convs if isinstance(m, SelfNormConv2d)]
    assert len(convs) == 3 and {(m.init, m.gradient_rule) for m in convs} == {("ours", "paper")}
    exact = linear_flow("exact", (1, 8, 8), **options).modules()
    assert {m.init for m in exact if isinstance(m, ExactConv2d)} == {"ours"}
    assert linear_flow("inverse_conv", (1, 8, 8), **options)  # options it does not name: unused


def test_the_training_check_leaves_the_layer_and_the_global_rng_alone():
    layer = randomize(GivensScale(3), 0.1, 0)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    x = torch.randn(3, 3, 4, 5)
    state = torch.get_rng_state()
    wrapped = build_layer(lambda channels: layer, (3, 4, 5), "GivensScale")
    assert checks.check_train_step(wrapped, x).passed
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())


def test_a_plain_module_trains_in_compare(tmp_path, capsys, monkeypatch, float32):  # noqa: F811
    monkeypatch.setenv("WANDB_MODE", "disabled")
    extra = ["--no-baselines"]  # the user row alone: what the audit saw crash
    code, out, err = compare(tmp_path, capsys, PLAIN, "inverse_flow_t2", extra=extra)
    assert code == 0, out + err
    assert "train_step" in out
    records = [json.loads(x) for x in (tmp_path / "r/runs/inverse_flow_t2.jsonl").open()]
    assert records[-1]["row"] == "GivensScale" and records[-1]["steps"] == 3
    assert records[-1]["metrics"]["bpd"] > 0


def test_compare_trains_nothing_for_a_layer_that_fails_the_training_check(tmp_path, capsys):
    layer = "tests/plain_layers.py:DetachedShiftGivens"
    code, out, _ = compare(tmp_path, capsys, layer, "inverse_flow_t2")
    assert code == 1 and "nothing trained or recorded" in out
    assert "train_step          FAIL" in out
    assert not (tmp_path / "r" / "runs").exists()


def test_a_parameter_without_influence_at_the_shape_does_not_fail_train_step(capsys):
    """At one channel every Householder reflection is -1: the vectors cannot train there, and
    that is right (the table's first slot has one channel); a detached parameter still fails."""
    from bench.__main__ import main

    assert (
        main(["check-layer", "examples/householder.py:HouseholderConv1x1", "--shape", "1,4,4"]) == 0
    )
    out = capsys.readouterr().out
    assert "vectors: no influence at this shape" in out and "all 8 checks passed" in out
    assert (
        main(["check-layer", "tests/plain_layers.py:DetachedShiftGivens", "--shape", "1,4,4"]) == 1
    )
