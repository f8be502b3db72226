"""LightningDataModules sharing one base (`datamodules.base.ImageDataModule`), one per data set.

`DATASETS` names each data set's datamodule by dotted path and the ``data:`` options it takes
beyond those of every datamodule (`COMMON_OPTIONS`), so a config's ``dataset`` and ``data`` are
checked (`bench.config`) without importing Lightning; the datamodule itself is imported when
one is built (`make_datamodule`). `tests/test_datamodules.py` holds the table to the classes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from datamodules.errors import DataFileError, DataSizeError

if TYPE_CHECKING:
    from datamodules.base import ImageDataModule


@dataclass(frozen=True)
class Dataset:
    """A data set: its datamodule class (``"module:Class"``) and the keyword options its
    constructor takes beyond `COMMON_OPTIONS`."""

    datamodule: str
    options: tuple[str, ...] = ()


# The keyword options of every datamodule (`datamodules.base.ImageDataModule`'s constructor).
COMMON_OPTIONS = (
    "data_dir",
    "batch_size",
    "val_size",
    "seed",
    "num_workers",
    "subset",
    "download",
    "with_index",
    "order_seed",
)

DATASETS: dict[str, Dataset] = {
    "mnist": Dataset("datamodules.datasets:MNISTDataModule"),
    "fashion_mnist": Dataset("datamodules.datasets:FashionMNISTDataModule"),
    "cifar10": Dataset("datamodules.datasets:CIFAR10DataModule"),
    "imagenet32": Dataset("datamodules.datasets:ImageNet32DataModule"),
    "imagenet64": Dataset("datamodules.datasets:ImageNet64DataModule"),
    "galaxy": Dataset("datamodules.datasets:GalaxyDataModule"),
    "crops": Dataset(
        "datamodules.datasets:CropsDataModule", ("crop_size", "crops_per_image", "random_crops")
    ),
    "synthetic": Dataset(
        "datamodules.base:SyntheticDataModule", ("shape", "num_train", "num_test")
    ),
}


def data_options(name: str) -> set[str]:
    """The keyword options the datamodule of data set ``name`` takes."""
    return {*COMMON_OPTIONS, *DATASETS[name].options}


def datamodule_class(name: str) -> type[ImageDataModule]:
    """The datamodule class of data set ``name`` (imports it, and Lightning)."""
    module, _, attr = DATASETS[name].datamodule.partition(":")
    return getattr(importlib.import_module(module), attr)


def make_datamodule(name: str, **kwargs) -> ImageDataModule:
    """Build a datamodule by name (``mnist``, ``fashion_mnist``, ``cifar10``, ``imagenet32``,
    ``imagenet64``, ``galaxy``, ``crops``, ``synthetic``)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    return datamodule_class(name)(**kwargs)


__all__ = [
    "COMMON_OPTIONS",
    "DATASETS",
    "DataFileError",
    "DataSizeError",
    "Dataset",
    "data_options",
    "datamodule_class",
    "make_datamodule",
]
