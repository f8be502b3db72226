"""LightningModules, one per kind of row (``task:`` in a row config), sharing `Task`."""

from __future__ import annotations

from collections.abc import Callable

from bench.tasks.base import Task
from bench.tasks.classifier import ClassifierTask
from bench.tasks.dfm import DFMTask
from bench.tasks.flow import FlowTask, NonFiniteLossError
from bench.tasks.generators import GANTask, VAETask, WAETask
from models.classifiers import CLASSIFIERS
from models.generators import GENERATORS
from models.generators.dfm import FourierGenerator
from models.registry import MODELS

TASKS: dict[str, type[Task]] = {
    "flow": FlowTask,
    "classify": ClassifierTask,
    "dfm": DFMTask,
    "vae": VAETask,
    "wae": WAETask,
    "gan": GANTask,
}


MODEL_INDEX: dict[str, dict[str, Callable]] = {
    "flow": MODELS,
    "classify": CLASSIFIERS,
    "dfm": {"fourier_generator": FourierGenerator},
    **GENERATORS,
}


def model_index(task: str) -> dict[str, Callable]:
    """The model names a task's ``model:`` may name, with their constructors."""
    return MODEL_INDEX[task]


__all__ = [
    "TASKS",
    "ClassifierTask",
    "DFMTask",
    "FlowTask",
    "GANTask",
    "NonFiniteLossError",
    "Task",
    "VAETask",
    "WAETask",
]
