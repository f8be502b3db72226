"""``bench check-layer``: the worked example passes, inexact layers fail with their measured
error (exit 1), input that cannot be checked gives one line (exit 2); entry-point lookup and
the console script declaration."""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
import torch

from bench.__main__ import main
from models import checks
from models.registry import randomize
from models.slots import ENTRY_POINT_GROUP, resolve_factory
from tests import user_layers

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "examples/householder.py:HouseholderConv1x1"


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["check-layer", *args])
    out, err = capsys.readouterr()
    return code, out, err


def table_row(out: str, name: str) -> list[str]:
    (line,) = [row for row in out.splitlines() if row.startswith(name + " ")]
    return line.split()


def test_worked_example_passes(capsys):
    code, out, err = run(capsys, EXAMPLE, "--shape", "4,3,5")
    assert code == 0, out + err
    for name in checks.CHECKS:
        expected = "skip" if name == "gradcheck" else "pass"  # no custom autograd Function
        assert table_row(out, name)[1] == expected
    assert float(table_row(out, "logdet_forward")[2]) < 1e-12
    assert "all 8 checks passed" in out and err == ""


def test_worked_example_logdet_is_not_trivially_zero():
    torch.manual_seed(0)
    layer = randomize(user_layers.HouseholderConv1x1(4), 0.1, 0).double()
    _, logdet = layer(torch.randn(2, 4, 3, 5, dtype=torch.float64))
    assert logdet.abs().min() > 0.1


def measured(err: str, name: str) -> float:
    match = re.search(rf"{name} FAILED: measured ([0-9.e+-]+)", err)
    assert match, err
    return float(match.group(1))


def test_wrong_logdet_fails_with_its_measured_error(capsys):
    code, out, err = run(capsys, "tests/user_layers.py:WrongLogdetHouseholder", "--shape", "4,3,5")
    assert code == 1
    assert table_row(out, "logdet_forward")[1] == "FAIL"
    assert table_row(out, "logdet_inverse")[1] == "FAIL"
    assert table_row(out, "round_trip_x")[1] == "pass"
    assert "2 of 8 checks failed" in out
    # the error is the forgotten factor: (H W - 1) |sum(s)| for the same seed and perturbation
    torch.manual_seed(0)
    layer = randomize(user_layers.WrongLogdetHouseholder(4), 0.1, 0)
    expected = (3 * 5 - 1) * layer.log_scale.sum().abs().item()
    assert measured(err, "logdet_forward") == pytest.approx(expected, rel=1e-2)
    assert len(err.splitlines()) == 2  # one line per failing check


def test_wrong_inverse_fails_with_its_measured_error(capsys):
    code, out, err = run(capsys, "tests.user_layers:WrongInverseHouseholder", "--shape", "4,3,5")
    assert code == 1
    assert table_row(out, "round_trip_x")[1] == "FAIL"
    assert table_row(out, "logdet_forward")[1] == "pass"
    assert measured(err, "round_trip_x") > 1e-2
    assert measured(err, "round_trip_z") > 1e-2


def test_wrong_custom_backward_fails_gradcheck(capsys):
    code, out, err = run(capsys, "tests.user_layers:WrongBackwardScale", "--shape", "2,2,3")
    assert code == 1
    assert table_row(out, "gradcheck")[1] == "FAIL"
    assert "gradcheck FAILED" in err and "_Scale" in err and "log_scale" in err
    assert measured(err, "gradcheck") > 1e-3
    assert all(table_row(out, n)[1] == "pass" for n in checks.CHECKS if n != "gradcheck")


@pytest.mark.parametrize(
    "factory", ["tests.user_layers:spatial_factory", "tests.user_layers:positional_factory"]
)
def test_factory_gets_the_spatial_shape_when_it_asks(capsys, factory):
    code, out, err = run(capsys, factory, "--shape", "3,2,3")
    assert code == 0, out + err


BAD_INPUT = {
    "missing file": (["examples/nope.py:HouseholderConv1x1"], "no file examples/nope.py"),
    "missing module": (["no_such_pkg_xyz.layers:Conv"], "no module named 'no_such_pkg_xyz'"),
    "missing name": (["examples/householder.py:Nope"], "has no name 'Nope'"),
    "not callable": (["tests.user_layers:NOT_CALLABLE"], "is not a class or function"),
    "wrong signature": (["tests.user_layers:needs_three_arguments"], "has signature"),
    "factory raises": (["tests.user_layers:raises"], "raised ValueError: channels must be even"),
    "not a module": (["tests.user_layers:returns_a_number"], "not a torch.nn.Module"),
    "no inverse": (["tests.user_layers:NoInverse"], "not invertible: it has no inverse(z)"),
    "inverse raises": (
        ["tests.user_layers:InverseNotImplemented"],
        "not invertible: inverse(z) raised NotImplementedError",
    ),
    "forward not a pair": (["tests.user_layers:ForwardReturnsTensor"], "must return a pair"),
    "shape of two": ([EXAMPLE, "--shape", "3,4"], "--shape must be C,H,W"),
    "shape not numbers": ([EXAMPLE, "--shape", "3x4x4"], "--shape must be C,H,W"),
    "shape zero": ([EXAMPLE, "--shape", "0,4,4"], "--shape must be C,H,W"),
    "unknown name": (["nosuchlayer"], "no layer 'nosuchlayer'"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_2(capsys, case):
    args, phrase = BAD_INPUT[case]
    code, out, err = run(capsys, *args)
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert phrase in err
    assert "Traceback" not in out + err and out == ""


def test_file_that_does_not_import_names_the_error_and_line(capsys, tmp_path):
    path = tmp_path / "broken_layer.py"
    path.write_text("import torch\nimport not_a_module_xyz\n")
    code, _, err = run(capsys, f"{path}:Conv")
    assert code == 2 and len(err.splitlines()) == 1
    assert "failed to import: ModuleNotFoundError" in err and "line 2" in err


def fake_entry_points(*values: tuple[str, str]):
    def entry_points(**params):
        eps = [importlib.metadata.EntryPoint(n, v, ENTRY_POINT_GROUP) for n, v in values]
        return [ep for ep in eps if params.get("group") in (None, ep.group)]

    return entry_points


def test_entry_point_name_finds_an_installed_layer(capsys, monkeypatch):
    value = "tests.user_layers:HouseholderConv1x1"
    monkeypatch.setattr(
        importlib.metadata, "entry_points", fake_entry_points(("householder", value))
    )
    factory, label = resolve_factory("householder")
    assert factory is user_layers.HouseholderConv1x1 and value in label
    code, out, err = run(capsys, "householder", "--shape", "3,2,3")
    assert code == 0, out + err
    assert "all 8 checks passed" in out


def test_entry_point_errors_are_one_line(capsys, monkeypatch):
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        fake_entry_points(("broken", "no_such_pkg_xyz:Conv"), ("householder", "x:y")),
    )
    code, _, err = run(capsys, "broken")
    assert code == 2 and len(err.splitlines()) == 1
    assert "entry point 'broken' (no_such_pkg_xyz:Conv) failed to load" in err
    code, _, err = run(capsys, "other")
    assert code == 2 and "broken, householder" in err


def test_console_script_runs_the_same_main():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = project["scripts"]["convflow-bench"]
    module, _, name = target.partition(":")
    assert getattr(importlib.import_module(module), name) is main
