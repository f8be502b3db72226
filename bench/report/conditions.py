"""What a measured cell was measured on, said in the cell and in the table's notes.

A cell of a training metric (BPD, NLL, accuracy, FID, MSE) measured on another data set than the
paper's, or on a shorter profile, names that in the cell itself, e.g. ``4.81 (F-MNIST, demo:
300 steps)``; the footnote keeps the full provenance. Each table's notes list each row's
preprocessing (dequantization, scaling, logit with its alpha or the shift to [-0.5, 0.5)),
read from the row config and its model builder's declared ``logit_alpha``
(`models.core.declared_preprocessing`): no model is built.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from bench.config import ConfigError, load_config
from bench.records import METRICS, Record
from bench.tasks import model_index
from models.core import Logit, Scale, Shift, UniformDequantization, declared_preprocessing

DATASET_LABELS = {
    "mnist": "MNIST",
    "fashion_mnist": "F-MNIST",
    "cifar10": "CIFAR-10",
    "imagenet32": "ImageNet32",
    "imagenet64": "ImageNet64",
}


def dataset_label(name: str | None) -> str:
    return DATASET_LABELS.get(name or "", name or "?")


def condition_label(record: Record, metric: str, paper_dataset: str | None) -> str:
    """`` (F-MNIST, demo: 300 steps)`` where the record's conditions differ from the paper's
    for a metric that depends on training, led by ``est.`` when the model's logdet is a
    stochastic estimate (``logdet_estimated`` in the record's metrics); ``""`` otherwise."""
    if not METRICS[metric].trained:
        return ""
    parts = []
    if record.get("metrics", {}).get("logdet_estimated"):
        parts.append("est.")  # a stochastic logdet estimate (residual flows)
    if paper_dataset and record.get("dataset") != paper_dataset:
        parts.append(dataset_label(record.get("dataset")))
    profile = record.get("profile", "paper")
    if profile != "paper":
        steps = record.get("steps")
        parts.append(f"{profile}: {steps} steps" if steps else profile)
    return f" ({', '.join(parts)})" if parts else ""


def describe_layer(layer) -> str | None:
    if isinstance(layer, UniformDequantization):
        return "uniform dequantization"
    if isinstance(layer, Scale):
        return "x / 256"
    if isinstance(layer, Logit):
        return f"logit (alpha {layer.alpha:g})"
    if isinstance(layer, Shift):
        return "shift to [-0.5, 0.5)"
    return None


@cache
def preprocessing_of(config_path: str) -> str:
    """The preprocessing of a flow row's model, e.g. ``uniform dequantization, x / 256, logit
    (alpha 0.05)``; ``""`` for rows that are not flows."""
    try:
        config = load_config(Path(config_path), "paper")
    except ConfigError as err:
        return f"config error: {err}"
    if config.task != "flow":
        return ""
    try:
        layers = declared_preprocessing(model_index("flow")[config.model], **config.model_kwargs)
    except TypeError as err:  # a builder without logit_alpha: the note says so, the rest renders
        return f"not declared ({err})"
    parts = [describe_layer(layer) for layer in layers]
    return ", ".join(p for p in parts if p)


def preprocessing_notes(configs: dict[str, str]) -> list[str]:
    """One line per configured flow row: ``row: preprocessing``."""
    notes = [(row, preprocessing_of(path)) for row, path in configs.items()]
    return [f"- {row}: {text}" for row, text in notes if text]
