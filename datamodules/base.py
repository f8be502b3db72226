"""One base for every image data set: uint8 tensors in memory, a seeded validation split.

Images come out as float tensors [B, C, H, W] of integer values 0..255 (dequantization is in the
model) with integer labels. Subclasses only load ``(train_images, train_labels)`` and
``(test_images, test_labels)`` as uint8 [N, C, H, W] and int64 [N].
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.errors import DataSizeError

DEFAULT_DATA_DIR = "data"


class ImageTensorDataset(Dataset):
    """uint8 images [N,C,H,W] + labels [N] -> (float image 0..255, label), and the example's
    index as a third element with ``with_index`` (models with one learned latent per image)."""

    def __init__(self, images: Tensor, labels: Tensor, with_index: bool = False):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {images.dtype} {images.shape}"
            )
        self.images, self.labels, self.with_index = images, labels, with_index

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        item = (self.images[index].float(), self.labels[index])
        return (*item, torch.tensor(index)) if self.with_index else item


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes) under torch.distributed, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class EpochSeededSampler(Sampler[int]):
    """A random permutation per epoch from ``seed + epoch`` (Lightning calls ``set_epoch``), so a
    run resumed from a checkpoint sees the same order an uninterrupted run would. ``start``:
    the next iteration begins at that position of this process's indices (then resets to 0).

    Under distributed training each of the W processes takes every W-th index of the epoch's
    permutation (its last ``size % W`` indices dropped, so the shards are equal): the sampler
    shards itself, and the trainer must not replace it (``use_distributed_sampler=False``).
    """

    def __init__(self, size: int, seed: int = 0):
        self.size, self.seed, self.epoch, self.start = size, seed, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rank, world = rank_and_world()
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=gen)[: self.size // world * world]
        order = order[rank::world]
        start, self.start = self.start, 0
        return iter(order[start:].tolist())

    def __len__(self) -> int:
        return self.size // rank_and_world()[1]


class ResumableDataLoader(DataLoader):
    """The training loader: its position inside the epoch is part of a Lightning checkpoint
    (``state_dict``: the batches yielded so far this epoch), and a loader restored from one
    resumes after them, so a run resumed mid-epoch trains on exactly the batches an
    uninterrupted run would (Lightning restores the epoch number through ``set_epoch``)."""

    sampler: EpochSeededSampler

    def __init__(self, dataset: Dataset, sampler: EpochSeededSampler, **kwargs):
        super().__init__(dataset, sampler=sampler, drop_last=True, **kwargs)
        self.batches_yielded = 0

    def __iter__(self):
        self.batches_yielded = self.sampler.start // self.batch_size
        for batch in super().__iter__():
            self.batches_yielded += 1
            yield batch
        self.batches_yielded = 0  # a finished epoch: the next one starts at its beginning

    def state_dict(self) -> dict[str, int]:
        # A checkpoint taken after the epoch's last batch (its validation, before Lightning
        # closes the epoch) resumes in the next epoch, at its beginning, not past its end.
        return {"batches": self.batches_yielded % len(self) if len(self) else 0}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.start = state["batches"] * self.batch_size


ORDER_STRIDE = 1_000_003  # apart enough that two seeds' epochs never draw the same permutation


class ImageDataModule(pl.LightningDataModule):
    """Base LightningDataModule: train/val/test loaders over in-memory uint8 images.

    ``val_size``: examples taken from the training set for validation, by a permutation seeded
    with ``seed``. ``subset``: keep only the first n training (and n // 5 test) examples, for the
    demo profile. ``order_seed``: the run's seed, which changes the order of the training
    batches (not the split): the sampler draws epoch e of order seed k from ``seed + e +
    ORDER_STRIDE * k``, so seed 0 keeps the order it always had.
    """

    name = "images"
    shape: tuple[int, int, int] = (1, 28, 28)

    def __init__(
        self,
        data_dir: str | Path = DEFAULT_DATA_DIR,
        batch_size: int = 64,
        val_size: int = 5000,
        seed: int = 0,
        num_workers: int = 0,
        subset: int | None = None,
        download: bool = True,
        with_index: bool = False,
        order_seed: int = 0,
    ):
        super().__init__()
        self.with_index, self.order_seed = with_index, order_seed
        self.data_dir = Path(data_dir)
        self.batch_size, self.val_size, self.seed = batch_size, val_size, seed
        self.num_workers, self.subset, self.download = num_workers, subset, download
        self._splits: dict[str, ImageTensorDataset] | None = None
        self.source: dict = {}  # what `load` read: files, checksums (set by subclasses)

    def load(self) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:  # pragma: no cover
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self._splits is not None:
            return
        (train_x, train_y), (test_x, test_y) = self.load()
        if self.subset is not None:
            train_x, train_y = train_x[: self.subset], train_y[: self.subset]
            n_test = max(self.subset // 5, 1)
            test_x, test_y = test_x[:n_test], test_y[:n_test]
        self.check_images(train_x, test_x)
        n_val = min(self.val_size, len(train_x) // 5) if self.subset else self.val_size
        if not 0 < n_val < len(train_x):
            raise DataSizeError(
                f"{self.name}: val_size {n_val} does not fit {len(train_x)} training images"
            )
        order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(self.seed))
        val_idx, train_idx = order[:n_val], order[n_val:]
        self._splits = {
            "train": ImageTensorDataset(train_x[train_idx], train_y[train_idx], self.with_index),
            "val": ImageTensorDataset(train_x[val_idx], train_y[val_idx], self.with_index),
            "test": ImageTensorDataset(test_x, test_y, self.with_index),
        }

    def check_images(self, train_x: Tensor, test_x: Tensor) -> None:
        """Both splits hold uint8 images of this data set's shape [C, H, W] (the models are
        built for it), at least one each; else a `DataSizeError` naming what was loaded."""
        where = getattr(self, "data_dir", "")
        for split, images in (("train", train_x), ("test", test_x)):
            if images.dim() != 4 or tuple(images.shape[1:]) != tuple(self.shape):
                raise DataSizeError(
                    f"{self.name} {split} images in {where} are {tuple(images.shape[1:])}, "
                    f"expected {tuple(self.shape)} [C, H, W]"
                )
            if len(images) == 0:
                raise DataSizeError(f"{self.name}: the {split} split in {where} holds no images")

    @property
    def provenance(self) -> dict:
        """The data actually loaded, for the record: the data set, the examples of each split
        and what `load` read (files and checksums where the subclass records them)."""
        self.setup()
        sizes = {split: len(data) for split, data in self._splits.items()}
        return {"dataset": self.name, "examples": sizes, **self.source}

    def dataset(self, split: str) -> ImageTensorDataset:
        self.setup()
        return self._splits[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(split)
        options = dict(
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
        if shuffle:
            order = self.seed + ORDER_STRIDE * self.order_seed
            sampler = EpochSeededSampler(len(dataset), order)
            return ResumableDataLoader(dataset, sampler, **options)
        return DataLoader(dataset, **options)

    def train_dataloader(self) -> DataLoader:
        """The training loader; a `DataSizeError` when the split cannot fill one batch (the
        loader drops the last partial batch, so training would run no step)."""
        size = len(self.dataset("train"))
        if size < self.batch_size:
            raise DataSizeError(
                f"{self.name}: {size} training images (after {len(self.dataset('val'))} for "
                f"validation) do not fill one batch of {self.batch_size}; lower "
                "data.batch_size or data.val_size, or load more images"
            )
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)


class SyntheticDataModule(ImageDataModule):
    """Random images of any shape, for tests: a smooth per-class pattern plus noise, so a flow
    can learn them (BPD drops quickly)."""

    name = "synthetic"

    def __init__(
        self,
        shape: tuple[int, int, int] = (1, 8, 8),
        num_train: int = 512,
        num_test: int = 128,
        **kwargs,
    ):
        kwargs.setdefault("val_size", max(num_train // 8, 1))
        super().__init__(**kwargs)
        self.shape = tuple(shape)
        self.num_train, self.num_test = num_train, num_test

    def _make(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        gen = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, 4, (n,), generator=gen)
        c, h, w = self.shape
        grid = torch.linspace(0, 1, h)[:, None] + torch.linspace(0, 1, w)[None, :]
        base = 60 + 120 * (grid[None, None] * (labels[:, None, None, None] + 1) % 1.0)
        noise = 12 * torch.randn(n, c, h, w, generator=gen)
        return (base.expand(n, c, h, w) + noise).clamp(0, 255).to(torch.uint8), labels

    def load(self):
        return self._make(self.num_train, self.seed), self._make(self.num_test, self.seed + 1)
