"""The config schema: every row loads under every profile, and every kind of typo fails before
anything trains, naming the key, the file and the nearest valid key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bench.__main__ import main
from bench.catalog import configured_tables, resolve_tables, row_configs, table_groups
from bench.config import PROFILES, ConfigError, load_config
from bench.experiments.run_tables import row_paths
from bench.records import METRICS
from bench.schema import RowConfig
from bench.tasks import TASK_SPECS, TASKS, model_index

ROW = Path("bench/configs/inverse_flow_t2/glow_mnist_small.yaml")


@pytest.mark.parametrize("profile", PROFILES)
def test_every_row_config_loads_under_every_profile(profile):
    paths = row_configs()
    assert len(paths) >= 40
    for path in paths:
        config = load_config(path, profile)
        assert config.table == path.parent.name
        assert config.profile == profile and config.task in TASKS
        assert set(type(config.module).model_fields) >= {
            "lr",
            "optimizer",
            "warmup_steps",
            "schedule",
        }


def write_row(tmp_path: Path, **changes) -> Path:
    row = yaml.safe_load(ROW.read_text())
    row.update(changes)
    path = tmp_path / "row.yaml"
    path.write_text(yaml.safe_dump(row))
    return path


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"modle_kwargs": {"width": 8}}, r"row.yaml: unknown key 'modle_kwargs'.*'model_kwargs'"),
        ({"module": {"lrr": 1e-3}}, r"row.yaml: unknown key 'module.lrr'.*did you mean 'lr'"),
        ({"trainer": {"max_step": 5}}, r"unknown key 'trainer.max_step'.*'max_steps'"),
        ({"profiles": {"demo": {"data": {"batchsize": 8}}}}, r"profiles.demo.*'data.batchsize'"),
        ({"profiles": {"dmeo": {}}}, r"unknown profile 'profiles.dmeo'.*'demo'"),
        ({"model_kwargs": {"widht": 8}}, r"model_kwargs.widht is not an option.*'width'"),
        ({"data": {"num_train": 8}}, r"data.num_train is not an option of the mnist datamodule"),
        ({"module": {"lr": "fast"}}, r"row.yaml: 'module.lr' = 'fast'"),
        ({"module": {"schedule": "cosin"}}, r"'module.schedule' = 'cosin'"),
        ({"model": "glow_mnsit"}, r"unknown model 'glow_mnsit'.*'glow_mnist'"),
        ({"dataset": "fashion"}, r"unknown dataset 'fashion'.*'fashion_mnist'"),
        ({"recipe": "glow_adamx"}, r"unknown recipe 'glow_adamx'.*'glow_adamax'"),
        ({"task": "classify"}, r"unknown key 'module.ema_decay'|unknown model 'glow_mnist'"),
    ],
)
def test_config_typos_fail_naming_key_file_and_nearest_key(tmp_path, changes, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(write_row(tmp_path, **changes), "demo")


def test_override_typos_and_types_name_the_override():
    with pytest.raises(ConfigError, match=r"--set module.lrr=3: unknown key 'module.lrr'"):
        load_config(ROW, "demo", ["module.lrr=3"])
    with pytest.raises(ConfigError, match=r"--set trainer.max_steps=ten: 'trainer.max_steps'"):
        load_config(ROW, "demo", ["trainer.max_steps=ten"])
    assert load_config(ROW, "demo", ["module.lr=3e-4"]).module.lr == 3e-4


def test_task_sections_differ_a_flow_key_on_a_classifier_fails(tmp_path):
    path = Path("bench/configs/iconvnet_t1/iconvnet_classifier_base.yaml")
    assert load_config(path, "demo").module.weight_decay == 5e-4  # from its recipe
    with pytest.raises(ConfigError, match="unknown key 'module.ema_decay'"):
        load_config(path, "demo", ["module.ema_decay=0.99"])


def test_cli_config_error_is_one_line_with_exit_status_2(capsys):
    code = main(["fit", "--config", str(ROW), "--profile", "demo", "--set", "module.lrr=3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: --set module.lrr=3: unknown key 'module.lrr'")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["module.schedule=linear", "module.warmup_steps=5"],
            "schedule 'linear' needs module.final_lr",
        ),
        (["module.schedule=exponential"], "schedule 'exponential' needs module.gamma"),
        (["module.warmup_steps=5", "module.warmup_epochs=1"], "warmup_epochs, not both"),
        (["module.betas=[0.9]"], "betas must be two numbers"),
    ],
)
def test_config_refuses_what_fit_would_rules_between_keys(capsys, overrides, message):
    """`bench config` applies the schedule's rules itself (one line, exit status 2), so a row
    that validates is one a Task accepts."""
    code = main(["config", "--config", str(ROW), "--profile", "demo", "--set", *overrides])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err


def test_table_groups_come_from_table_yaml_in_order():
    groups = table_groups()
    assert groups["mnist"] == ["inverse_flow_t2", "inverse_flow_t3", "inverse_flow_t4", "dfm_mnist"]
    assert groups["imagenet"] == ["cdflow_t2_imagenet32", "dfm_compression"]
    assert resolve_tables(["classification", "iconvnet_t1"]) == [
        "iconvnet_t1",
        "inverse_flow_classifier",
    ]
    titles = {meta.name: meta.title for meta in configured_tables()}
    assert titles["inverse_flow_t4"] == "Inverse-Flow Table 4: 9-layer linear flows on MNIST"


def test_unknown_tables_and_rows_are_errors():
    with pytest.raises(ConfigError, match=r"unknown table or group 'mnits'.*'mnist'"):
        resolve_tables(["mnits"])
    with pytest.raises(ConfigError, match=r"--rows 'glow_mnist_smal' matches no row"):
        row_paths(["inverse_flow_t2"], ["glow_mnist_smal"])
    by_label = row_paths(["inverse_flow_t2"], ["Inverse-Flow", "glow_mnist_small"])
    assert [p.stem for p in by_label] == ["glow_mnist_small", "inverse_flow_mnist_k4"]


def test_every_task_declares_its_protocol():
    for name, task in TASKS.items():
        assert (task.monitor or name == "gan") and task.mode in ("min", "max")
        spec = TASK_SPECS[name]
        assert issubclass(spec.schema, RowConfig) and spec.metric in METRICS
        assert model_index(name) and all(map(callable, model_index(name).values()))
    assert [name for name, task in TASKS.items() if task.timed] == ["flow", "vae", "wae", "gan"]
    assert [name for name, task in TASKS.items() if task.density] == ["flow"]
