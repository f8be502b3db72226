"""Test helpers. The exactness references (inputs in a layer's domain, autograd Jacobian
logdets) live in `models.checks`, the harness the tests and ``bench check-layer`` share."""

from __future__ import annotations

from models.checks import jacobian_logdet, sample_input

__all__ = ["fit_row", "jacobian_logdet", "sample_input"]


def fit_row(tmp_path, config: dict, *extra: str) -> dict:
    """`python -m bench fit` of ``config`` (written to tmp_path/row.yaml) with results and
    outputs under tmp_path; returns the one record it appended."""
    import json

    import yaml

    from bench.__main__ import main

    path = tmp_path / "row.yaml"
    path.write_text(yaml.safe_dump(config))
    args = [
        "fit",
        "--config",
        str(path),
        "--results_dir",
        str(tmp_path / "r"),
        "--work_dir",
        str(tmp_path / "o"),
        *extra,
    ]
    assert main(args) == 0
    (record,) = [json.loads(x) for x in (tmp_path / "r/runs" / f"{config['table']}.jsonl").open()]
    return record
