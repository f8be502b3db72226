"""Configuration as data, validated before anything runs.

A row's configuration is merged from, in order: ``configs/defaults.yaml``, the row's recipe
(``configs/recipes/<recipe>.yaml``, optional), the row YAML ``configs/<table>/<row>.yaml``, the
``profiles.<profile>`` sections of those three files, then command-line overrides
(``--set module.lr=3e-4``). Profiles: ``paper`` (the paper's training), ``short`` (paper
architecture and batch, a few epochs: a quick GPU check) and ``demo`` (shrinks training for a
CPU; the architecture stays, except where the row's demo ``note`` says otherwise).

Every key is known and typed: `bench.schema` holds one model per section, and one ``module``
section per task. A key that is not in the
schema, in any file or ``--set``, is a `ConfigError` naming the key, the file and the nearest
valid key; so is a value of the wrong type. ``model_kwargs`` are checked against the model
constructor's signature and ``data`` against the datamodule's.
"""

from __future__ import annotations

import copy
import difflib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bench.schema import PROFILES, RowConfig, rule_broken
from bench.tasks import SCHEMAS, model_index
from datamodules import DATASETS, data_options

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
RECIPE_DIR = CONFIG_DIR / "recipes"


class ConfigError(ValueError):
    """A configuration that cannot run: unknown key, wrong type, missing file or name."""


class ConfigFileNotFoundError(ConfigError, FileNotFoundError):
    """A config file that does not exist."""


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
        raise ConfigFileNotFoundError(
            f"config file {path} not found (configs live in {CONFIG_DIR})"
        )
    with open(path) as handle:
        try:
            data = yaml.safe_load(handle) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data


def parse_override(text: str) -> dict:
    """``a.b=value`` -> {'a': {'b': value}} with the value parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
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


def nearest(name: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, else ``''``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_keys(data: dict, schema: type[BaseModel], source: str, prefix: str = "") -> None:
    """Raise `ConfigError` for the first key of ``data`` that ``schema`` does not have."""
    for key, value in data.items():
        fields = schema.model_fields
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown key '{prefix}{key}'{nearest(key, fields)}; valid keys "
                f"here: {', '.join(fields)}"
            )
        section = _section_type(schema, key)
        if section is not None and isinstance(value, dict):
            check_keys(value, section, source, f"{prefix}{key}.")


def _section_type(schema: type[BaseModel], key: str) -> type[BaseModel] | None:
    annotation = schema.model_fields[key].annotation
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    return None


@dataclass(frozen=True)
class Source:
    """One layer of a row's configuration: where it comes from and what it sets."""

    name: str
    data: dict


def config_sources(path: Path, profile: str, overrides: list[str] = ()) -> list[Source]:
    """The layers merged into a row's configuration, first to last."""
    defaults_path = CONFIG_DIR / "defaults.yaml"
    defaults, row = read_yaml(defaults_path), read_yaml(path)
    recipe_name = row.get("recipe", defaults.get("recipe"))
    files = [(str(defaults_path), defaults)]
    if recipe_name:
        recipe_path = RECIPE_DIR / f"{recipe_name}.yaml"
        if not recipe_path.is_file():
            recipes = [p.stem for p in RECIPE_DIR.glob("*.yaml")]
            raise ConfigError(
                f"{path}: unknown recipe '{recipe_name}'{nearest(recipe_name, recipes)}; "
                f"recipes: {', '.join(sorted(recipes))}"
            )
        files.append((str(recipe_path), read_yaml(recipe_path)))
    files.append((str(path), row))
    sources = [Source(name, _without_profiles(data, name)) for name, data in files]
    sources += [
        Source(f"{name} (profiles.{profile})", data.get("profiles", {}).get(profile) or {})
        for name, data in files
    ]
    sources += [Source(f"--set {text}", parse_override(text)) for text in overrides]
    return sources


def _without_profiles(data: dict, name: str) -> dict:
    profiles = data.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ConfigError(f"{name}: 'profiles' must map profile names to settings")
    for profile in profiles:
        if profile not in PROFILES:
            raise ConfigError(
                f"{name}: unknown profile 'profiles.{profile}'{nearest(profile, PROFILES)}; "
                f"profiles: {', '.join(PROFILES)}"
            )
    return {k: v for k, v in data.items() if k != "profiles"}


def load_config(path: str | Path, profile: str = "paper", overrides: list[str] = ()) -> RowConfig:
    """The validated, fully defaulted configuration of one table row (the task's `RowConfig`,
    typed: ``config.module.lr``), with ``config_path`` and ``profile`` set. Raises
    `ConfigError` naming the bad key and file. ``config.model_dump()`` is the plain dict that
    goes to YAML, W&B and the record's hash."""
    if profile not in PROFILES:
        raise ConfigError(f"profile must be one of {PROFILES}, got {profile!r}")
    path = Path(path)
    sources = config_sources(path, profile, overrides)
    merged: dict = {}
    for source in sources:
        merged = deep_merge(merged, source.data)
    task = merged.get("task", "flow")
    if task not in SCHEMAS:
        raise ConfigError(f"{path}: unknown task '{task}'{nearest(task, SCHEMAS)}")
    schema = SCHEMAS[task]
    for source in sources:
        check_keys(source.data, schema, source.name)
    table = path.parent.name
    if path.parent.parent == CONFIG_DIR and merged.get("table", table) != table:
        raise ConfigError(f"{path}: 'table: {merged['table']}' differs from its folder '{table}'")
    merged.setdefault("table", table)
    merged.update(config_path=str(path), profile=profile)
    try:
        config = schema.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(describe_error(err, path, sources)) from None
    check_model_kwargs(config, path)
    check_data_options(config, path)
    return config


def describe_error(err: ValidationError, path: Path, sources: list[Source]) -> str:
    """One line per problem: the key, what is wrong, and the file that set it."""
    lines = []
    for problem in err.errors():
        loc = [str(p) for p in problem["loc"] if not str(p).startswith(("function", "union"))]
        key = ".".join(loc)
        setter = next((s.name for s in reversed(sources) if _sets(s.data, loc)), str(path))
        if problem["type"] == "missing":
            lines.append(f"{path}: missing key '{key}'")
        elif problem["type"] == "value_error" and isinstance(problem.get("input"), dict):
            lines.append(f"{setter}: {rule_broken(problem)}")  # a rule between keys
        else:
            value = problem.get("input")
            lines.append(f"{setter}: '{key}' = {value!r}: {problem['msg'].lower()}")
    return "; ".join(dict.fromkeys(lines))


def _sets(data: dict, loc: list[str]) -> bool:
    node: Any = data
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def check_model_kwargs(config: RowConfig, path: Path) -> None:
    """Every ``model_kwargs`` key must be a parameter of the model's constructor."""
    models = model_index(config.task)
    if config.model not in models:
        raise ConfigError(
            f"{path}: unknown model '{config.model}'{nearest(config.model, models)} for "
            f"task '{config.task}'"
        )
    _check_signature(models[config.model], config.model_kwargs, f"{path}: model_kwargs", "model")


def check_data_options(config: RowConfig, path: Path) -> None:
    """Every ``data`` key that is set must be an option of the dataset's datamodule."""
    dataset = config.dataset
    if dataset not in DATASETS:
        raise ConfigError(
            f"{path}: unknown dataset '{dataset}'{nearest(dataset, DATASETS)}; "
            f"datasets: {', '.join(sorted(DATASETS))}"
        )
    options = config.data.model_dump(exclude_none=True)
    _check_options(data_options(dataset), options, f"{path}: data", f"{dataset} datamodule")


def _check_signature(constructor, kwargs: dict, where: str, what: str) -> None:
    _check_options(_accepted_parameters(constructor), kwargs, where, what)


def _check_options(accepted: set[str] | None, kwargs: dict, where: str, what: str) -> None:
    """Every key of ``kwargs`` must be in ``accepted`` (None: any key is)."""
    if accepted is None:
        return
    for key in kwargs:
        if key not in accepted:
            raise ConfigError(
                f"{where}.{key} is not an option of the {what}{nearest(key, accepted)}; "
                f"options: {', '.join(sorted(accepted))}"
            )


def _accepted_parameters(constructor) -> set[str] | None:
    """Keyword parameters of a function, partial or class (following ``**kwargs`` up a class's
    MRO); None when it takes arbitrary keywords."""
    if inspect.isclass(constructor):
        names: set[str] = set()
        for klass in constructor.__mro__:
            if "__init__" not in vars(klass):
                continue
            params = inspect.signature(klass.__init__).parameters
            names |= {n for n, p in params.items() if p.kind not in _VARIADIC and n != "self"}
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
                return names
        return names
    params = inspect.signature(constructor).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {n for n, p in params.items() if p.kind not in _VARIADIC}


_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
