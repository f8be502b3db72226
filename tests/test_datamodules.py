"""Each datamodule on files the tests write into a temp dir; clear errors for bad files."""

from __future__ import annotations

import gzip
import inspect
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import DATASETS, DataFileError, data_options, datamodule_class, make_datamodule
from datamodules.base import ImageDataModule
from datamodules.datasets import GalaxyDataModule, read_idx


def test_the_dataset_table_names_each_datamodule_and_its_options():
    """`DATASETS` (which the config check reads without Lightning) says what the classes do:
    each name's datamodule, with exactly the keyword options its constructors take."""
    for name in DATASETS:
        cls = datamodule_class(name)
        constructors = [k for k in cls.__mro__ if issubclass(k, ImageDataModule)]
        constructors = [vars(k)["__init__"] for k in constructors if "__init__" in vars(k)]
        taken = {p for init in constructors for p in inspect.signature(init).parameters}
        assert cls.name == name and taken - {"self", "kwargs"} == data_options(name), name


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def write_mnist(folder, n_train=60, n_test=20, compress=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(
            folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), compress
        )
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (n,)), compress)


def check_splits(dm, shape, n_train, n_val, n_test):
    dm.setup()
    assert len(dm.dataset("train")) == n_train
    assert len(dm.dataset("val")) == n_val
    assert len(dm.dataset("test")) == n_test
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == shape and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 255 and torch.equal(x, x.round())
    assert y.dtype == torch.int64


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_in_torchvision_layout(tmp_path, compress):
    write_mnist(tmp_path / "MNIST" / "raw", compress=compress)
    dm = make_datamodule("mnist", data_dir=tmp_path, batch_size=8, val_size=10, download=False)
    check_splits(dm, (1, 28, 28), 50, 10, 20)


def test_fashion_mnist_flat_layout_like_debian(tmp_path):
    write_mnist(tmp_path)
    dm = make_datamodule(
        "fashion_mnist", data_dir=tmp_path, batch_size=8, val_size=10, download=False
    )
    check_splits(dm, (1, 28, 28), 50, 10, 20)


def test_validation_split_is_seeded_and_disjoint(tmp_path):
    write_mnist(tmp_path)
    splits = []
    for _ in range(2):
        dm = make_datamodule("mnist", data_dir=tmp_path, val_size=10, download=False)
        dm.setup()
        splits.append(dm.dataset("val").images)
    assert torch.equal(*splits)


def test_missing_files_name_the_file_and_the_fix(tmp_path):
    dm = make_datamodule("mnist", data_dir=tmp_path, download=False)
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte.*dataset-fashion-mnist"):
        dm.setup()


def test_corrupt_idx_file_is_reported(tmp_path):
    write_mnist(tmp_path, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte is truncated"):
        read_idx(path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"junk")
    with pytest.raises(DataFileError, match="bad magic number"):
        read_idx(tmp_path / "t10k-labels-idx1-ubyte")


def test_cifar10_pickles(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [*[(f"data_batch_{i}", 12) for i in range(1, 6)], ("test_batch", 10)]:
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [1] * n}
        (root / name).write_bytes(pickle.dumps(entry))
    dm = make_datamodule("cifar10", data_dir=tmp_path, batch_size=4, val_size=10, download=False)
    check_splits(dm, (3, 32, 32), 50, 10, 10)
    (root / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataFileError, match="test_batch is not a CIFAR-10 batch"):
        make_datamodule("cifar10", data_dir=tmp_path, download=False).setup()


def test_imagenet32_npz(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("train_data_batch_1.npz", 30), ("val_data.npz", 8)):
        np.savez(
            tmp_path / name,
            data=rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            labels=np.arange(1, n + 1),
        )
    dm = make_datamodule("imagenet32", data_dir=tmp_path, batch_size=4, val_size=5)
    check_splits(dm, (3, 32, 32), 25, 5, 8)


def test_imagenet64_image_folder(tmp_path):
    for split, n in (("train", 6), ("val", 2)):
        folder = tmp_path / split / "class0"
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((80, 70, 3), i * 20, dtype=np.uint8)).save(folder / f"{i}.png")
    dm = make_datamodule("imagenet64", data_dir=tmp_path, batch_size=2, val_size=2)
    check_splits(dm, (3, 64, 64), 4, 2, 2)


def test_imagenet_missing_says_what_to_provide(tmp_path):
    with pytest.raises(DataFileError, match=r"\*train\*\.npz"):
        make_datamodule("imagenet32", data_dir=tmp_path).setup()


def test_galaxy_pickle_of_the_emerging_code(tmp_path):
    """galaxy.pkl as prepare_galaxy_data.py writes it: (train, val, test) uint8 [N, 64, 64, 3];
    images become 3x32x32 2x2 means, floored as the Emerging code; the record's provenance
    names the file and its MD5."""
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (20, 64, 64, 3), dtype=np.uint8)
    test = rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    with open(tmp_path / "galaxy.pkl", "wb") as handle:
        pickle.dump((train, train[:3], test), handle)
    dm = make_datamodule("galaxy", data_dir=tmp_path, batch_size=4, val_size=4)
    check_splits(dm, (3, 32, 32), 16, 4, 6)
    expected = torch.from_numpy(test[0].astype(np.float32)).permute(2, 0, 1)
    expected = expected.reshape(3, 32, 2, 32, 2).mean((2, 4)).floor()
    assert torch.equal(dm.dataset("test")[0][0].float(), expected)
    assert dm.provenance["md5"] and dm.provenance["files"].endswith("galaxy.pkl")


def test_galaxy_downsampling_floors_the_means_as_the_emerging_code():
    """2x2 means of 0.75, 1.5 and 254.25 become 0, 1 and 254 (rounding gave 1, 2 and 254):
    ehoogeboom/emerging data_loaders/get_mnist_cifar.py x_to_uint8 floors."""
    blocks = np.array([[0, 0, 0, 3], [1, 2, 1, 2], [254, 254, 254, 255]], dtype=np.uint8)
    images = np.zeros((3, 64, 64, 3), dtype=np.uint8)
    for i, block in enumerate(blocks):
        images[i, :2, :2, :] = block.reshape(2, 2, 1)
    out = GalaxyDataModule._to_32(images, Path("galaxy.pkl"))
    assert out[:, 0, 0, 0].tolist() == [0, 1, 254]


def test_galaxy_jpeg_folders_and_missing_files(tmp_path):
    with pytest.raises(DataFileError, match="galaxy.pkl.*pass --data_dir"):
        make_datamodule("galaxy", data_dir=tmp_path).setup()
    root = tmp_path / "galaxy_mergers" / "noninteracting"
    for split, n in (("training", 10), ("test", 3)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            image = np.full((100, 90, 3), 10 * i, dtype=np.uint8)
            Image.fromarray(image).save(root / split / f"{i}.jpeg")
    dm = make_datamodule("galaxy", data_dir=tmp_path, batch_size=2, val_size=2)
    check_splits(dm, (3, 32, 32), 8, 2, 3)


def test_crops_of_a_photo_folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.jpg"
        )
    dm = make_datamodule(
        "crops", data_dir=tmp_path, crop_size=16, crops_per_image=10, batch_size=4, val_size=4
    )
    check_splits(dm, (3, 16, 16), 16, 4, 20)
    fixed = make_datamodule("crops", data_dir=tmp_path, crop_size=16, random_crops=False)
    (train, _), _ = fixed.load()
    assert train.shape == (2, 3, 16, 16)


def test_synthetic_any_shape():
    dm = make_datamodule("synthetic", shape=(3, 8, 4), num_train=40, num_test=8, batch_size=4)
    check_splits(dm, (3, 8, 4), 35, 5, 8)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        make_datamodule("svhn")


FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian package dataset-fashion-mnist absent")
def test_files_are_identified_by_checksum_not_by_the_row(tmp_path, monkeypatch):
    from datamodules.datasets import FashionMNISTDataModule, MNISTDataModule

    with pytest.raises(DataFileError, match="are fashion_mnist, not mnist"):
        MNISTDataModule(data_dir=FASHION_DIR, download=False, subset=100).setup()
    monkeypatch.chdir(tmp_path)  # the default data_dir ("data") is empty here
    fashion = FashionMNISTDataModule(download=False, subset=100)
    provenance = fashion.provenance
    assert provenance["identified_as"] == "fashion_mnist"
    assert provenance["files"] == str(FASHION_DIR) and len(provenance["md5"]) == 4
    assert provenance["examples"]["train"] + provenance["examples"]["val"] == 100


def test_unknown_idx_files_are_recorded_with_their_checksums(tmp_path):
    from datamodules.datasets import MNISTDataModule

    write_mnist(tmp_path, n_train=40, n_test=10)
    module = MNISTDataModule(data_dir=tmp_path, download=False, val_size=8)
    provenance = module.provenance
    assert provenance["dataset"] == "mnist" and provenance["identified_as"] is None
    assert sorted(provenance["md5"]) == sorted(
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]
        + ["t10k-labels-idx1-ubyte"]
    )


def test_a_failed_download_leaves_no_data_folder(tmp_path, monkeypatch):
    import torchvision

    from datamodules.datasets import MNISTDataModule

    def offline(root, **kwargs):
        Path(root, "MNIST", "raw").mkdir(parents=True)
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataFileError, match="download failed"):
        MNISTDataModule(data_dir=tmp_path / "data").setup()
    assert not (tmp_path / "data").exists()


def test_training_sampler_shards_itself_across_processes(monkeypatch):
    """Under DDP each process takes every W-th index of the epoch's permutation (equal shards,
    the remainder dropped); alone it yields the whole permutation; ``start`` skips within the
    process's own shard (an exact resume on every rank)."""
    from datamodules import base
    from datamodules.base import EpochSeededSampler

    sampler = EpochSeededSampler(10, seed=3)
    sampler.set_epoch(2)
    whole = list(sampler)
    assert sorted(whole) == list(range(10)) and len(sampler) == 10
    shards = []
    for rank in range(3):
        monkeypatch.setattr(base, "rank_and_world", lambda rank=rank: (rank, 3))
        assert len(sampler) == 3
        shards.append(list(sampler))
        sampler.start = 1
        assert list(sampler) == shards[-1][1:]
    assert [i for shard in shards for i in shard] != whole  # interleaved, not blocks
    assert sorted(i for shard in shards for i in shard) == sorted(whole[:9])
    assert all(shard == whole[rank:9:3] for rank, shard in enumerate(shards))
