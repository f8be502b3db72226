"""Repository hygiene: the commands that only read configs and records stay light (no
Lightning, no W&B)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pytorch_lightning", "lightning", "lightning_fabric", "torchmetrics", "wandb")

# Runs each command line in one fresh interpreter and prints, after each, the heavy modules
# imported so far (and whether a model registry was).
PROBE = """
import json, sys
from bench.__main__ import main
watched = json.loads(sys.argv[2])
found = {}
for argv in json.loads(sys.argv[1]):
    try:
        main(argv)
    except SystemExit:
        pass
    found[argv[0]] = [name for name in watched if name in sys.modules]
print(json.dumps(found))
"""


def test_help_config_and_report_import_no_lightning(tmp_path):
    """``--help`` imports no model registry either; ``config`` reads the registries' names and
    signatures (models/ needs torch only); ``report`` reads records and the row configs."""
    row = "bench/configs/inverse_flow_t4/exact_mnist_linear9.yaml"
    commands = [
        ["--help"],
        ["config", "--config", row, "--profile", "demo"],
        ["report", "--results_dir", str(tmp_path), "--no-plots"],
    ]
    watched = [*HEAVY, "models.registry"]
    args = [sys.executable, "-c", PROBE, json.dumps(commands), json.dumps(watched)]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found == {"--help": [], "config": ["models.registry"], "report": ["models.registry"]}
