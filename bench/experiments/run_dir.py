"""A row's run directory, ``<work_dir>/<table>/<row config name>/<profile>`` (``<profile>-seed<k>``
for a seed k other than 0): its checkpoints
(one set: ``best.ckpt`` and ``last.ckpt``), logs, samples and the config its checkpoints were
trained with (``config.yaml``), which a ``--resume`` must match."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import yaml

from bench.config import ConfigError

log = logging.getLogger(__name__)


def run_dir(config: dict, work_dir: str | Path) -> Path:
    """Where a row's checkpoints, logs and samples go: <work_dir>/<table>/<name>/<profile>, with
    ``-seed<k>`` appended for a seed k other than 0 (seeds of one row never share checkpoints)."""
    name = Path(config["config_path"]).stem
    seed = config.get("seed") or 0
    leaf = config["profile"] + (f"-seed{seed}" if seed else "")
    return Path(work_dir) / config["table"] / name / leaf


RUN_CONFIG = "config.yaml"  # the config a run directory's checkpoints were trained with
# What a resumed run may change: how long it trains.
RESUMABLE_CHANGES = ("trainer.max_steps", "trainer.max_epochs", "trainer.max_time")


def flat_items(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flat_items(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_resumable(config: dict, saved_path: Path) -> None:
    """Refuse a ``--resume`` whose config differs from the run's in anything but how long it
    trains: the checkpoint's state would train on while the record claimed the new config."""
    if not saved_path.is_file():
        log.warning("--resume: %s missing, cannot check the config is unchanged", saved_path)
        return
    saved = flat_items(yaml.safe_load(saved_path.read_text()))
    new = flat_items(config)
    changed = [
        f"{key} ({saved.get(key)!r} -> {new.get(key)!r})"
        for key in sorted(set(saved) | set(new))
        if saved.get(key) != new.get(key) and key not in RESUMABLE_CHANGES
    ]
    if changed:
        raise ConfigError(
            f"--resume: the config differs from the run in {saved_path.parent} in "
            f"{', '.join(changed)}; only {', '.join(RESUMABLE_CHANGES)} may change on resume. "
            "Drop the change, or start a new run (another --work_dir)"
        )


def checkpoint_step(path: str | Path) -> int | None:
    """The global step a Lightning checkpoint was saved at."""
    state = torch.load(str(path), map_location="cpu", weights_only=False, mmap=True)
    return state.get("global_step")
