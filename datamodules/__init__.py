"""LightningDataModules sharing one base (`datamodules.base.ImageDataModule`)."""

from datamodules.base import DataFileError, ImageDataModule, SyntheticDataModule
from datamodules.datasets import DATAMODULES, read_idx


def make_datamodule(name: str, **kwargs) -> ImageDataModule:
    """Build a datamodule by name (``mnist``, ``fashion_mnist``, ``cifar10``, ``imagenet32``,
    ``imagenet64``, ``galaxy``, ``crops``, ``synthetic``)."""
    if name not in DATAMODULES:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATAMODULES)}")
    return DATAMODULES[name](**kwargs)


__all__ = [
    "DATAMODULES",
    "DataFileError",
    "ImageDataModule",
    "SyntheticDataModule",
    "make_datamodule",
    "read_idx",
]
