"""The data sets: MNIST, Fashion-MNIST, CIFAR-10, downsampled ImageNet 32/64, Galaxy, photo crops.

Local files are used when present (nothing is downloaded); otherwise torchvision's real download
runs when ``download=True``. A missing or corrupt file raises `DataFileError` naming the file and
how to provide it.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from datamodules.base import DEFAULT_DATA_DIR, ImageDataModule
from datamodules.errors import DataFileError

log = logging.getLogger(__name__)

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# MD5 of the uncompressed idx files (the same whichever gzip packed them): what identifies the
# data actually loaded, whatever folder or row named it.
IDX_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}


# What the pickled data files (CIFAR-10 batches, galaxy.pkl) are made of: numpy arrays (and the
# helpers numpy's pickles rebuild them with, under numpy 1 and 2 module names), plus the
# built-in lists, dicts, tuples, strings and numbers, which need no lookup.
PICKLE_GLOBALS = {
    *((f"numpy.{core}.multiarray", "_reconstruct") for core in ("core", "_core")),
    *((f"numpy.{core}.multiarray", "scalar") for core in ("core", "_core")),
    *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol 2
}


class ArraysOnlyUnpickler(pickle.Unpickler):
    """An unpickler that builds only numpy arrays and built-in containers (`PICKLE_GLOBALS`):
    any other object a file asks for (a function such as os.system, a class) is refused, so a
    crafted data file cannot run code when it is loaded."""

    def find_class(self, module: str, name: str):
        if (module, name) not in PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"it asks for {module}.{name}, which a data file of numpy arrays never holds "
                "(refused: loading it could run code)"
            )
        return super().find_class(module, name)


def load_arrays_pickle(path: Path, encoding: str = "ASCII"):
    """The pickled contents of a data file, through `ArraysOnlyUnpickler`."""
    with open(path, "rb") as handle:
        return ArraysOnlyUnpickler(handle, encoding=encoding).load()


def identify_idx(md5s: dict[str, str]) -> str | None:
    """The data set whose four idx files have exactly these uncompressed MD5s, else None."""
    return next((name for name, known in IDX_MD5.items() if known == md5s), None)


def read_idx(path: Path) -> Tensor:
    """Read an idx file (optionally gzipped) into a uint8 tensor; check magic number and size."""
    return read_idx_with_md5(path)[0]


def read_idx_with_md5(path: Path) -> tuple[Tensor, str]:
    """`read_idx` and the MD5 of the uncompressed bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as err:
        raise DataFileError(f"cannot read {path}: {err}; the file is corrupt, delete it") from err
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataFileError(f"{path} is not an unsigned-byte idx file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DataFileError(
            f"{path} is truncated or corrupt: header says {dims} ({expected} bytes), "
            f"found {len(data) - offset} bytes"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)
    return torch.from_numpy(array.copy()), hashlib.md5(data).hexdigest()


class IdxDataModule(ImageDataModule):
    """MNIST-format idx files. ``data_dir`` may hold them in torchvision's layout
    (``DIR/<Name>/raw/train-images-idx3-ubyte[.gz]``) or flat (``DIR/train-images-idx3-ubyte.gz``,
    as the Debian Fashion-MNIST package installs them), gzipped or not."""

    torchvision_name = "MNIST"
    shape = (1, 28, 28)
    # Folders searched after data_dir when the default data_dir holds no files.
    installed_dirs: tuple[Path, ...] = ()

    def folders(self) -> list[Path]:
        folders = [self.data_dir / self.torchvision_name / "raw", self.data_dir]
        if self.data_dir == Path(DEFAULT_DATA_DIR):
            folders += list(self.installed_dirs)
        return folders

    def find(self, stem: str) -> Path | None:
        for folder in self.folders():
            for name in (stem, stem + ".gz"):
                if (folder / name).is_file():
                    return folder / name
        return None

    def _download(self) -> None:
        import torchvision

        dataset_cls = getattr(torchvision.datasets, self.torchvision_name)
        created = not self.data_dir.exists()
        try:
            for train in (True, False):
                dataset_cls(str(self.data_dir), train=train, download=True)
        except Exception as err:  # network errors come in many types
            if created:  # a failed download leaves no folder behind
                shutil.rmtree(self.data_dir, ignore_errors=True)
            raise DataFileError(self._how_to(f"download failed ({err})")) from err

    def _how_to(self, problem: str) -> str:
        return (
            f"{self.torchvision_name} idx files not found in {self.data_dir}: {problem}. Put "
            f"train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
            f"and t10k-labels-idx1-ubyte.gz in {self.data_dir} (or in "
            f"{self.data_dir / self.torchvision_name / 'raw'}) and pass --data_dir; offline, the "
            f"Debian package dataset-fashion-mnist installs Fashion-MNIST under "
            f"{DEBIAN_FASHION_MNIST} (run with DATASET=fashion_mnist, or --set "
            f"dataset=fashion_mnist --data_dir {DEBIAN_FASHION_MNIST})."
        )

    def check_identity(self, md5s: dict[str, str]) -> None:
        """Record which files were read and what they are; files of another known data set
        than this module's (Fashion-MNIST under an MNIST row) are a `DataFileError`."""
        found = identify_idx(md5s)
        folder = self.find(IDX_FILES["train"][0]).parent
        self.source = {"files": str(folder), "md5": md5s, "identified_as": found}
        if found is not None and found != self.name:
            raise DataFileError(
                f"the idx files in {folder} are {found}, not {self.name} (their MD5s "
                f"match {found}'s); run the row with --set dataset={found} (DATASET={found})"
            )

    def load(self):
        stems = [s for pair in IDX_FILES.values() for s in pair]
        if any(self.find(s) is None for s in stems):
            if not self.download:
                missing = [s for s in stems if self.find(s) is None]
                raise DataFileError(self._how_to(f"missing {', '.join(missing)}"))
            log.info("downloading %s to %s", self.torchvision_name, self.data_dir)
            self._download()
        splits, md5s = [], {}
        for split in ("train", "test"):
            images_file, labels_file = (self.find(s) for s in IDX_FILES[split])
            (images, images_md5), (labels, labels_md5) = map(
                read_idx_with_md5, (images_file, labels_file)
            )
            md5s.update({IDX_FILES[split][0]: images_md5, IDX_FILES[split][1]: labels_md5})
            labels = labels.long()
            if images.dim() != 3 or len(images) != len(labels):
                raise DataFileError(
                    f"{images_file} and {labels_file} disagree: {tuple(images.shape)} images, "
                    f"{len(labels)} labels"
                )
            splits.append((images[:, None], labels))
        self.check_identity(md5s)
        return tuple(splits)


class MNISTDataModule(IdxDataModule):
    name = "mnist"
    torchvision_name = "MNIST"


class FashionMNISTDataModule(IdxDataModule):
    """Fashion-MNIST; with the default data_dir, also the Debian package's files."""

    name = "fashion_mnist"
    torchvision_name = "FashionMNIST"
    installed_dirs = (DEBIAN_FASHION_MNIST,)


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 from the python pickles in ``DIR/cifar-10-batches-py`` (data_batch_1..5,
    test_batch), fetched by torchvision's download when missing and ``download=True``."""

    name = "cifar10"
    shape = (3, 32, 32)
    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)

    def _read(self, path: Path) -> tuple[Tensor, Tensor]:
        try:
            entry = load_arrays_pickle(path, encoding="latin1")
            data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            labels = torch.tensor(entry.get("labels", entry.get("fine_labels")))
        except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as err:
            raise DataFileError(f"{path} is not a CIFAR-10 batch file (corrupt?): {err}") from None
        return torch.from_numpy(data.copy()), labels

    def load(self):
        root = self.data_dir / self.folder
        needed = [root / f for f in (*self.train_files, *self.test_files)]
        if not all(p.is_file() for p in needed) and self.download:
            import torchvision

            try:
                torchvision.datasets.CIFAR10(str(self.data_dir), download=True)
            except Exception as err:
                log.warning("CIFAR-10 download failed: %s", err)
        missing = [str(p) for p in needed if not p.is_file()]
        if missing:
            raise DataFileError(
                f"CIFAR-10 files missing: {', '.join(missing)}. Download cifar-10-python.tar.gz "
                f"from the CIFAR-10 page, extract it into {self.data_dir} and pass --data_dir."
            )
        splits = []
        for files in (self.train_files, self.test_files):
            parts = [self._read(root / f) for f in files]
            splits.append((torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])))
        return tuple(splits)


class DownsampledImageNetDataModule(ImageDataModule):
    """Downsampled ImageNet (Chrabaszcz et al. 2017) at 32 or 64 pixels: the official .npz
    batches (``*train*.npz`` with ``data`` [N, 3 s s] and ``labels``; ``*val*.npz`` serves as the
    test set) or an ImageFolder ``DIR/train/<class>/*.png`` and ``DIR/val/<class>/*.png``."""

    size = 32

    @property
    def shape(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)

    def _npz(self, pattern: str) -> tuple[Tensor, Tensor] | None:
        files = sorted(self.data_dir.glob(f"**/*{pattern}*.npz"))
        if not files:
            return None
        images, labels = [], []
        for path in files:
            try:
                with np.load(path) as archive:
                    data, lab = archive["data"], archive["labels"]
            except (OSError, KeyError, ValueError) as err:
                raise DataFileError(f"{path} is not a downsampled-ImageNet .npz: {err}") from err
            if data.shape[1] != 3 * self.size**2:
                raise DataFileError(
                    f"{path} holds {data.shape[1]} values per image, expected {3 * self.size**2} "
                    f"for {self.size}x{self.size}"
                )
            images.append(torch.from_numpy(data).reshape(-1, 3, self.size, self.size))
            labels.append(torch.from_numpy(np.asarray(lab)).long() - 1)
        return torch.cat(images), torch.cat(labels)

    def _folder(self, split: str) -> tuple[Tensor, Tensor] | None:
        root = self.data_dir / split
        if not root.is_dir():
            return None
        import torchvision
        from torchvision.transforms import v2

        transform = v2.Compose([v2.PILToTensor(), v2.Resize((self.size, self.size))])
        ds = torchvision.datasets.ImageFolder(str(root), transform=transform)
        images = torch.stack([ds[i][0][:3] for i in range(len(ds))])
        return images, torch.tensor(ds.targets)

    def load(self):
        splits = []
        for pattern, folder in (("train", "train"), ("val", "val")):
            found = self._npz(pattern) or self._folder(folder)
            if found is None:
                raise DataFileError(
                    f"ImageNet{self.size} not found in {self.data_dir}: expected the downsampled "
                    f"ImageNet .npz files (*{pattern}*.npz) or an ImageFolder {self.data_dir}/"
                    f"{folder}/<class>/*.png. Download them from the ImageNet site (downsampled "
                    "variants) and pass --data_dir."
                )
            splits.append(found)
        return tuple(splits)


class ImageNet32DataModule(DownsampledImageNetDataModule):
    name = "imagenet32"
    size = 32


class ImageNet64DataModule(DownsampledImageNetDataModule):
    name = "imagenet64"
    size = 64


class GalaxyDataModule(ImageDataModule):
    """Galaxy images of the flow papers' Galaxy column (Emerging, Woodbury, ButterflyFlow,
    CDFlow): the "noninteracting" images of the galaxy_mergers set, 3x32x32.

    Reads, in this order, ``DIR/galaxy.pkl`` (the file the Emerging code's
    ``data_loaders/prepare_galaxy_data.py`` writes: a pickled tuple (train, validation, test) of
    uint8 arrays [N, 64, 64, 3], which ButterflyFlow's loader reads too) or the JPEG folders
    ``DIR/galaxy_mergers/noninteracting/{training,test}/*.jpeg`` (resized to 64x64 as that
    script does). Images are averaged over 2x2 blocks to 32x32 and floored to integers, as the
    Emerging code's ``--image_size 32`` (``data_loaders/get_mnist_cifar.py``: ``downsample``,
    then ``x_to_uint8``). The pickle's validation split is not used: validation images come from
    the training split (``val_size``), as for every data set here. There is no download: the
    papers name no public archive (a clear error says what to provide)."""

    name = "galaxy"
    shape = (3, 32, 32)
    pickle_name = "galaxy.pkl"
    folder = Path("galaxy_mergers") / "noninteracting"

    def _from_pickle(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        try:
            train, _, test = load_arrays_pickle(path)
        except (OSError, pickle.UnpicklingError, ValueError, TypeError, EOFError) as err:
            message = f"{path} is not a galaxy.pkl (train, val, test) tuple: {err}"
            raise DataFileError(message) from None
        return np.asarray(train), np.asarray(test)

    def _from_folder(self, root: Path) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image

        def read(split: str) -> np.ndarray:
            files = sorted((root / split).glob("*.jpeg"))
            if not files:
                raise DataFileError(f"no *.jpeg files in {root / split}")
            images = [Image.open(f).convert("RGB").resize((64, 64), Image.BILINEAR) for f in files]
            return np.stack([np.asarray(image) for image in images])

        return read("training"), read("test")

    @staticmethod
    def _to_32(images: np.ndarray, where: Path) -> Tensor:
        """uint8 [N, 64, 64, 3] -> uint8 [N, 3, 32, 32] by 2x2 means, floored (the Emerging
        code's ``np.floor``; the means are multiples of 1/4, exact in float32)."""
        if images.ndim != 4 or images.shape[1:] != (64, 64, 3):
            raise DataFileError(f"{where}: expected images [N, 64, 64, 3], got {images.shape}")
        x = torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2)
        return torch.nn.functional.avg_pool2d(x, 2).floor().clamp(0, 255).to(torch.uint8)

    def load(self):
        pickled, root = self.data_dir / self.pickle_name, self.data_dir / self.folder
        if pickled.is_file():
            (train, test), where = self._from_pickle(pickled), pickled
            md5 = hashlib.md5(pickled.read_bytes()).hexdigest()
            self.source = {"files": str(pickled), "md5": md5}
        elif root.is_dir():
            (train, test), where = self._from_folder(root), root
            self.source = {"files": str(root)}
        else:
            raise DataFileError(
                f"Galaxy images not found in {self.data_dir}: expected {pickled} (written by the "
                f"Emerging code's data_loaders/prepare_galaxy_data.py) or the JPEG folders "
                f"{root}/training and {root}/test of the galaxy_mergers set; pass --data_dir"
            )
        train_x, test_x = self._to_32(train, where), self._to_32(test, where)
        unlabelled = [torch.zeros(len(x), dtype=torch.long) for x in (train_x, test_x)]
        return (train_x, unlabelled[0]), (test_x, unlabelled[1])


class CropsDataModule(ImageDataModule):
    """Crops of any folder of photographs (jpg/png): ``crops_per_image`` random crops (seeded)
    of ``crop_size`` pixels, or one centre crop each with ``random_crops=False``. Test crops use
    another seed."""

    name = "crops"

    def __init__(
        self,
        crop_size: int = 32,
        crops_per_image: int = 64,
        random_crops: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("val_size", 1)
        super().__init__(**kwargs)
        self.crop_size, self.crops_per_image = crop_size, crops_per_image
        self.random_crops = random_crops

    @property
    def shape(self) -> tuple[int, int, int]:
        return (3, self.crop_size, self.crop_size)

    def photos(self) -> list[Tensor]:
        from PIL import Image

        paths = sorted(
            p for p in self.data_dir.glob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"}
        )
        if not paths:
            raise DataFileError(f"no .png/.jpg photographs in {self.data_dir}; pass --data_dir")
        photos = []
        for path in paths:
            try:
                image = np.asarray(Image.open(path).convert("RGB"))
            except OSError as err:
                raise DataFileError(f"cannot read photograph {path}: {err}") from err
            if min(image.shape[:2]) < self.crop_size:
                raise DataFileError(f"{path} is smaller than the crop size {self.crop_size}")
            photos.append(torch.from_numpy(image.copy()).permute(2, 0, 1))
        return photos

    def _crops(self, photos: list[Tensor], seed: int) -> Tensor:
        gen = torch.Generator().manual_seed(seed)
        s, out = self.crop_size, []
        for photo in photos:
            h, w = photo.shape[1:]
            if not self.random_crops:
                top, left = (h - s) // 2, (w - s) // 2
                out.append(photo[:, top : top + s, left : left + s])
                continue
            for _ in range(self.crops_per_image):
                top = int(torch.randint(0, h - s + 1, (1,), generator=gen))
                left = int(torch.randint(0, w - s + 1, (1,), generator=gen))
                out.append(photo[:, top : top + s, left : left + s])
        return torch.stack(out).contiguous()

    def load(self):
        photos = self.photos()
        train, test = self._crops(photos, self.seed), self._crops(photos, self.seed + 1)
        return (train, torch.zeros(len(train), dtype=torch.long)), (
            test,
            torch.zeros(len(test), dtype=torch.long),
        )
