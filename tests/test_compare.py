"""Layer slots (`models.slots`) and ``python -m bench compare``: a layer from outside the package
in each table's reference step, fitted, tested and timed beside the table's rows."""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import pytest
import torch

from bench.__main__ import main
from bench.catalog import configured_tables
from bench.config import CONFIG_DIR, load_config
from bench.experiments.compare import build_model, slot_shapes
from models.flows.glow import glow
from models.flows.inverse_flow import inverse_flow
from models.flows.linear import linear_flow
from models.flows.structured import cdflow
from models.layers.inverse_conv import InverseConv2d
from models.layers.snf import ExactConv2d
from models.registry import MODELS
from models.slots import SLOT_LAYERS, LayerSpecError, slot_layer
from tests.user_layers import HouseholderConv1x1

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "examples/householder.py:HouseholderConv1x1"
TINY = {"input_shape": (1, 8, 8), "levels": 2, "steps": 1, "width": 8}


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def fingerprint(module: torch.nn.Module) -> str:
    digest = hashlib.md5()
    for key, value in module.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().float().numpy().tobytes())
    return digest.hexdigest()


def seeded(build):
    torch.manual_seed(0)
    return fingerprint(build())


def test_a_slot_filled_with_the_rows_own_layer_builds_the_row():
    """The templates with their own layer named in the slot give the rows' models, weights
    and all: the slot is where the baselines' layers sit, not a second architecture."""
    own = seeded(lambda: inverse_flow(**TINY, kernel_size=2))
    assert seeded(lambda: inverse_flow(**TINY, conv="inverse_conv_k2")) == own
    assert seeded(lambda: inverse_flow(**TINY, conv=lambda c: InverseConv2d(c, 2))) == own
    assert seeded(lambda: glow(**TINY, mix="cdflow")) == seeded(lambda: cdflow(**TINY))
    exact = seeded(lambda: linear_flow("exact", (1, 8, 8), init="ours"))
    conv = lambda c: ExactConv2d(c, 3, init="ours")  # noqa: E731
    assert seeded(lambda: linear_flow(conv, (1, 8, 8), init="ours")) == exact
    assert seeded(lambda: inverse_flow(**TINY, conv=HouseholderConv1x1)) != own


def test_a_slot_takes_a_file_spec_with_or_without_the_spatial_shape():
    flow = glow(**TINY, mix=EXAMPLE)
    layers = [m for m in flow.modules() if type(m).__name__ == "HouseholderConv1x1"]
    assert len(layers) == 2 and {m.channels for m in layers} == {4, 8}
    shapes = []
    glow(
        **TINY,
        mix=lambda channels, spatial_shape: (
            shapes.append(spatial_shape) or HouseholderConv1x1(channels)
        ),
    )
    assert shapes == [(2, 2), (4, 4)]  # the inner level is built first


@pytest.mark.parametrize(
    "value, message",
    [
        ("no_such_layer", "no layer 'no_such_layer'"),
        ("examples/nope.py:X", "no file examples/nope.py"),
        ("examples/householder.py:Nope", "has no name 'Nope'"),
        (3, "a layer slot takes a name or a factory"),
    ],
)
def test_a_bad_slot_value_is_one_clear_error(value, message):
    with pytest.raises(LayerSpecError, match=message):
        slot_layer(value, None)((4, 4, 4))


@pytest.mark.parametrize(
    "meta", [m for m in configured_tables() if m.compare is not None], ids=lambda m: m.name
)
def test_each_reference_step_has_a_working_slot(meta):
    """Every ``compare:`` names a row of its table, a parameter of that row's model, and
    built-in layers that fill the slot at its shapes."""
    config = load_config(CONFIG_DIR / meta.name / meta.compare.row)
    assert meta.compare.slot in inspect.signature(MODELS[config.model]).parameters
    shapes = slot_shapes(config, meta.compare.slot)
    assert shapes and all(len(s) == 3 for s in shapes)
    for name in meta.compare.layers:
        layer = SLOT_LAYERS[name](shapes[-1][0], shapes[-1][1:])
        x = torch.randn(2, *shapes[-1])
        z, logdet = layer(x)
        assert z.shape == x.shape and logdet.shape == (2,)
    assert build_model(config, **{meta.compare.slot: EXAMPLE}) is not None


@pytest.fixture
def float32():
    """Training runs in float32 (the test session's default dtype is float64)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(previous)


def compare(tmp_path, capsys, layer, *tables, extra=()):
    args = ["compare", layer, "--tables", *tables, "--profile", "demo", "--dataset", "synthetic"]
    args += ["--results_dir", str(tmp_path / "r"), "--work_dir", str(tmp_path / "o")]
    args += ["--runs", "1", "--layer-batch", "2", *extra]
    args += ["--set", "data.shape=[1,28,28]", "data.num_train=96", "data.num_test=16"]
    args += ["trainer.max_steps=3", "evaluate.st_runs=1", "evaluate.ft_runs=1"]
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_compare_fits_tests_and_times_a_layer_beside_the_table(
    tmp_path, capsys, monkeypatch, float32
):
    """The worked example on the demo profile on generated data, end to end, with the table's
    own rows (the default): the row YAML, the record of what ran, the layer timing records and
    plot, the table with a user row beside rows measured under the same condition."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    code, out, err = compare(tmp_path, capsys, EXAMPLE, "inverse_flow_t4", extra=["--steps", "3"])
    assert code == 0, out + err
    row_yaml = tmp_path / "r" / "rows" / "inverse_flow_t4" / "HouseholderConv1x1.yaml"
    config = load_config(row_yaml, "demo")  # a row YAML the user can fit again
    assert config.model_kwargs["kind"].endswith("examples/householder.py:HouseholderConv1x1")
    records = [json.loads(x) for x in (tmp_path / "r/runs/inverse_flow_t4.jsonl").open()]
    assert len(records) == 6  # the table's five rows, then the user row
    record = records[-1]
    assert record["row"] == "HouseholderConv1x1" and record["steps"] == 3
    assert {r["budget_steps"] for r in records} == {3}  # one step budget for every row
    assert record["compared_layer"] == config.compared_layer
    assert record["dataset"] == "synthetic" and record["metrics"]["bpd"] > 0
    layers = [json.loads(x) for x in (tmp_path / "r/runs/layers.jsonl").open()]
    parts = [r["row"].split("/") for r in layers]  # compare/<table>/<layer>/<pass>/<shape>
    baselines = {"exact", "exponential", "emerging", "snf", "inverse_conv"}
    assert {p[2] for p in parts} == {"HouseholderConv1x1", *baselines}
    assert {p[3] for p in parts} == {"density", "sampling", "backward"}
    assert {p[4] for p in parts} == {"1x28x28", "4x14x14", "16x7x7"}
    assert all(r["metrics"]["ratio_to_conv2d"] > 0 for r in layers)
    assert (tmp_path / "r/tables/compare_inverse_flow_t4_HouseholderConv1x1_layers.png").is_file()
    table = (tmp_path / "r/tables/inverse_flow_t4.md").read_text()
    assert "| HouseholderConv1x1 (user row) |" in table
    exact = next(line for line in table.splitlines() if line.startswith("| Exact Conv. |"))
    assert "(synthetic, demo: 3 steps)" in exact  # the baselines: the rows on the same data
    assert "results/runs/" not in table  # ... and not the suite's records
    assert "parameters: HouseholderConv1x1 0.0" in out and "Exact Conv. (reference row" in out
    assert not (
        ROOT / "results" / "tables" / "compare_inverse_flow_t4_HouseholderConv1x1_layers.png"
    ).exists()


def test_compare_trains_nothing_for_an_inexact_layer(tmp_path, capsys):
    code, out, _ = compare(
        tmp_path, capsys, "tests/user_layers.py:WrongLogdetHouseholder", "inverse_flow_t2"
    )
    assert code == 1
    assert "logdet_forward      FAIL" in out and "nothing trained or recorded" in out
    assert not (tmp_path / "r" / "runs").exists() and not (tmp_path / "o").exists()


def test_compare_refuses_a_table_without_a_slot_in_one_line(tmp_path, capsys):
    code, out, err = compare(tmp_path, capsys, EXAMPLE, "inverse_flow_t2", "iconvnet_t1")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "iconvnet_t1 has no reference step with a layer slot" in err
    assert not (tmp_path / "r").exists()


def test_compare_without_baselines_shows_the_suites_records(tmp_path, capsys, float32):
    """--no-fit: parameters and layer timing only; the table is the suite's committed records
    (referenced by their file under results/runs) and no user row."""
    code, out, err = compare(tmp_path, capsys, EXAMPLE, "inverse_flow_t4", extra=["--no-fit"])
    assert code == 0, out + err
    table = (tmp_path / "r/tables/inverse_flow_t4.md").read_text()
    assert "results/runs/inverse_flow_t4.jsonl:" in table and "(user row)" not in table
    assert not (tmp_path / "r/runs/inverse_flow_t4.jsonl").exists()
    assert (tmp_path / "r/runs/layers.jsonl").is_file()


def test_compare_refuses_the_name_of_a_row_of_the_table(tmp_path, capsys):
    code, _, err = compare(
        tmp_path, capsys, EXAMPLE, "inverse_flow_t4", extra=["--name", "SNF Conv."]
    )
    assert code == 2 and "'SNF Conv.' is a row of inverse_flow_t4 already" in err
    assert not (tmp_path / "r" / "runs").exists()
