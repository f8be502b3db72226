"""Configuration as data: ``bench/configs/defaults.yaml`` <- a row's YAML <- its profile
section <- command-line overrides (``--set module.lr=3e-4``).

A row YAML holds only what differs from the defaults. Profiles: ``paper`` (the paper's training),
``short`` (paper architecture and batch, a few epochs: a quick GPU check) and ``demo`` (shrinks
training for a CPU; the architecture stays, except where ``profiles.demo.note`` says otherwise).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PROFILES = ("paper", "short", "demo")
# Which record a table cell shows when several profiles measured it: the highest rank.
PROFILE_RANK = {"paper": 3, "short": 2, "demo": 1}


def deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (update or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found (configs live in {CONFIG_DIR})")
    with open(path) as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data


def parse_override(text: str) -> dict:
    """``a.b=value`` -> {'a': {'b': value}} with the value parsed as YAML."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key.sub=value")
    key, value = text.split("=", 1)
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = parse_value(value)
    return out


def parse_value(text: str) -> Any:
    """A YAML value, with numbers like ``3e-4`` (a string in YAML 1.1) read as floats."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def load_config(path: str | Path, profile: str = "paper", overrides: list[str] = ()) -> dict:
    """The merged configuration of one table row, with ``config_path`` and ``profile`` set."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    defaults = read_yaml(CONFIG_DIR / "defaults.yaml")
    row = read_yaml(Path(path))
    config = deep_merge(_without_profiles(defaults), _without_profiles(row))
    config = deep_merge(config, defaults.get("profiles", {}).get(profile, {}))
    config = deep_merge(config, row.get("profiles", {}).get(profile, {}))
    for text in overrides:
        config = deep_merge(config, parse_override(text))
    for key in ("table", "row", "model", "dataset"):
        if key not in config:
            raise ValueError(f"config {path} has no '{key}'")
    config["config_path"] = str(path)
    config["profile"] = profile
    return config


def _without_profiles(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "profiles"}


def row_configs(table_glob: str = "*") -> list[Path]:
    """Every row YAML under ``bench/configs/<table>/``."""
    return sorted(p for p in CONFIG_DIR.glob(f"{table_glob}/*.yaml"))
