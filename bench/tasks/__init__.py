"""The kinds of row (``task:`` in a row config), each declared once in `TASK_SPECS`: its config
schema, its LightningModule, its model registry and its headline metric.

Importing this package imports neither Lightning nor a model: a task's LightningModule
(``bench/tasks/<kind>.py``, sharing `bench.tasks.base.Task`) and its registry (``models/``) are
named by dotted path and imported when first asked for, so validating a config (`bench.config`),
the report and ``python -m bench --help`` stay light. Everything else is derived from the table:
`SCHEMAS`, `TASKS`, `model_index`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bench.schema import (
    ClassifierRowConfig,
    DFMRowConfig,
    FlowRowConfig,
    GeneratorRowConfig,
    RowConfig,
)
from models.names import register


def _load(path: str) -> Any:
    """The object at ``"package.module:NAME"``, importing the module."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class TaskSpec:
    """One kind of row: ``schema`` validates its config, ``module`` (``"module:Class"``) is the
    LightningModule that trains it, ``models`` (``"module:NAME"``) the registry (name ->
    constructor) its ``model:`` names, ``metric`` the record's headline metric."""

    schema: type[RowConfig]
    module: str
    models: str
    metric: str

    def task_class(self) -> type:
        """The LightningModule (imports Lightning)."""
        return _load(self.module)

    def model_index(self) -> dict[str, Callable]:
        """The model names ``model:`` may give, with their constructors (imports torch only)."""
        return _load(self.models)


TASK_SPECS: dict[str, TaskSpec] = register(
    {},
    "task",
    flow=TaskSpec(FlowRowConfig, "bench.tasks.flow:FlowTask", "models.registry:MODELS", "bpd"),
    classify=TaskSpec(
        ClassifierRowConfig,
        "bench.tasks.classifier:ClassifierTask",
        "models.classifiers:CLASSIFIERS",
        "accuracy",
    ),
    dfm=TaskSpec(DFMRowConfig, "bench.tasks.dfm:DFMTask", "models.generators:DFM_MODELS", "mse"),
    vae=TaskSpec(
        GeneratorRowConfig, "bench.tasks.generators:VAETask", "models.generators:VAE_MODELS", "fid"
    ),
    wae=TaskSpec(
        GeneratorRowConfig, "bench.tasks.generators:WAETask", "models.generators:WAE_MODELS", "fid"
    ),
    gan=TaskSpec(
        GeneratorRowConfig, "bench.tasks.generators:GANTask", "models.generators:GAN_MODELS", "fid"
    ),
)

# The config schema of each task (`bench.config` validates a row against it).
SCHEMAS: dict[str, type[RowConfig]] = {name: spec.schema for name, spec in TASK_SPECS.items()}


class _TaskClasses(Mapping[str, type]):
    """``TASKS[name]``: the task's LightningModule, imported on first use."""

    def __getitem__(self, name: str) -> type:
        return TASK_SPECS[name].task_class()

    def __iter__(self) -> Iterator[str]:
        return iter(TASK_SPECS)

    def __len__(self) -> int:
        return len(TASK_SPECS)


TASKS: Mapping[str, type] = _TaskClasses()


def model_index(task: str) -> dict[str, Callable]:
    """The model names a task's ``model:`` may name, with their constructors."""
    return TASK_SPECS[task].model_index()


__all__ = ["SCHEMAS", "TASKS", "TASK_SPECS", "TaskSpec", "model_index"]
