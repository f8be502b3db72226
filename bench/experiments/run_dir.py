"""A row's run directory, ``<work_dir>/<table>/<row config name>/<profile>`` (``<profile>-seed<k>``
for a seed k other than 0): its checkpoints
(one set: ``best.ckpt`` and ``last.ckpt``), logs, samples and the config its checkpoints were
trained with (``config.yaml``), which a ``--resume`` must match."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import yaml

from bench.config import ConfigError
from bench.records import check_path_name
from bench.schema import RowConfig

log = logging.getLogger(__name__)


def run_dir(config: RowConfig, work_dir: str | Path) -> Path:
    """Where a row's checkpoints, logs and samples go: <work_dir>/<table>/<name>/<profile>, with
    ``-seed<k>`` appended for a seed k other than 0 (seeds of one row never share checkpoints)."""
    try:
        name = check_path_name(Path(config.config_path).stem, "row config name")
    except ValueError as err:
        raise ConfigError(f"{config.config_path}: {err}") from None
    seed = config.seed or 0
    leaf = config.profile + (f"-seed{seed}" if seed else "")
    return Path(work_dir) / config.table / name / leaf


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


def check_resumable(config: RowConfig, saved_path: Path) -> None:
    """Refuse a ``--resume`` whose config differs from the run's in anything but how long it
    trains: the checkpoint's state would train on while the record claimed the new config."""
    if not saved_path.is_file():
        log.warning("--resume: %s missing, cannot check the config is unchanged", saved_path)
        return
    saved = flat_items(yaml.safe_load(saved_path.read_text()))
    new = flat_items(config.model_dump())
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


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used: unreadable, or another row's."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint's contents, loaded weights-only (tensors and plain containers:
    loading runs no code from the file); a missing, empty, truncated or foreign file is a
    one-line `CheckpointError` (a missing one a `FileNotFoundError`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises many types for a bad file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({reason[:160]}): it is empty, truncated or not "
            "a checkpoint written by this suite"
        ) from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise CheckpointError(f"checkpoint {path} holds no model (no state_dict)")
    return state


def checkpoint_step(path: str | Path) -> int | None:
    """The global step a Lightning checkpoint was saved at."""
    return read_checkpoint(path).get("global_step")


def _plain(value: Any) -> Any:
    """Tuples as lists, so a value read from a checkpoint compares with one from YAML."""
    return json.loads(json.dumps(value, default=str))


# Model arguments `bench.experiments.row.build` adds to the config's (one latent per image).
BUILT_KWARGS = ("num_images",)


def checkpoint_mismatch(config: RowConfig, state: dict[str, Any]) -> str | None:
    """What differs between the model a checkpoint holds (its saved hyperparameters) and the
    one ``config`` builds: the model name, else the model_kwargs that differ; None if equal."""
    saved = state.get("hyper_parameters") or {}
    if saved.get("model") != config.model:
        return f"model {saved.get('model')!r}, the config {config.model!r}"
    theirs = _plain(saved.get("model_kwargs") or {})
    ours = _plain(config.model_kwargs)
    keys = sorted((set(theirs) | set(ours)) - set(BUILT_KWARGS))
    changed = [
        f"model_kwargs.{k} {theirs.get(k, 'unset')!r}, the config {ours.get(k, 'unset')!r}"
        for k in keys
        if theirs.get(k) != ours.get(k)
    ]
    return "; ".join(changed) or None


def check_checkpoint_matches(config: RowConfig, path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents if it holds ``config``'s model; else a one-line
    `CheckpointError` naming what differs (another row's checkpoint would otherwise be
    evaluated and recorded under this row's name)."""
    state = read_checkpoint(path)
    mismatch = checkpoint_mismatch(config, state)
    if mismatch:
        raise CheckpointError(
            f"checkpoint {path} is not a checkpoint of {config.row!r} "
            f"({config.config_path}): it holds {mismatch}"
        )
    return state
