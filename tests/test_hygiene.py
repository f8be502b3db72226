"""Repository hygiene: the commands that only read configs and records stay light (no
Lightning, no W&B), and no file points to notes that are not in the repository."""

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


def test_no_file_points_to_notes_outside_the_repository():
    """The design and reference notes the suite was written from are not in the repository:
    a fact taken from them is stated where it is used, not pointed to."""
    names = ("DESIGN" + ".md", "REFERENCE" + ".md")  # spelt so that this file holds neither
    skipped = {".venv", ".git", "data", "outputs", "lightning_logs", "wandb", "checkpoints"}
    suffixes = {".py", ".yaml", ".md", ".csv", ".toml", ".tex", ".txt", ".cfg"}
    pointers = []
    for path in sorted(ROOT.rglob("*")):
        parts = path.relative_to(ROOT).parts
        if set(parts) & skipped or any(p.startswith(".") for p in parts[:-1]):
            continue
        if path.is_file() and (path.suffix in suffixes or path.name == "Makefile"):
            text = path.read_text(errors="replace")
            pointers += [f"{path.relative_to(ROOT)}: {n}" for n in names if n in text]
    assert not pointers, pointers
