"""Images for the Deep Fourier Machines compression experiment and what it compares against:
photos (scikit-image's bundled ones or files) and centre crops, the JPEG (Pillow) of the file
size closest to a target, searched over every quality with chroma subsampling on and off
(`jpeg_at_size`; `JpegMatch.reached` says whether any JPEG is as small as the target), and PSNR
and SSIM (torchmetrics) of a reconstruction. Images: uint8 [H, W, 3] arrays; tensors [3, H, W]
in [0, 1]."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

BUNDLED_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def load_photo(name: str) -> np.ndarray:
    """A scikit-image bundled photo by name, or an image file path, as uint8 [H, W, 3]."""
    if Path(name).is_file():
        return np.asarray(Image.open(name).convert("RGB"))
    if name not in BUNDLED_PHOTOS:
        raise ValueError(f"{name!r} is neither a file nor one of {BUNDLED_PHOTOS}")
    import skimage.data

    return getattr(skimage.data, name)()


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    if min(h, w) < size:
        raise ValueError(f"photo {h}x{w} is smaller than the crop size {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


def to_unit(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [1, 3, H, W] in [0, 1]."""
    return torch.tensor(image).permute(2, 0, 1)[None].float() / 255


@dataclass
class JpegMatch:
    """The JPEG whose file size is closest to a target, and whether JPEG can reach the target
    at all: ``reached`` when the target lies between the smallest and the largest JPEG over the
    whole search (qualities 1-100, chroma subsampling 4:2:0 and off)."""

    image: np.ndarray
    size: int
    quality: int
    subsampling: str
    reached: bool
    smallest: tuple[int, int, str]  # (bytes, quality, subsampling) of the smallest JPEG
    largest: tuple[int, int, str]

    def describe(self, target_bytes: int) -> str:
        """One line for a table cell or a note."""
        if self.reached:
            return f"JPEG quality {self.quality} ({self.subsampling}) at {self.size} B"
        if target_bytes > self.largest[0]:
            size, quality, name = self.largest
            return (
                f"JPEG cannot reach {target_bytes / 1000:.1f} kB: largest "
                f"{size / 1000:.1f} kB at q{quality} ({name})"
            )
        size, quality, name = self.smallest
        return (
            f"JPEG cannot go down to {target_bytes / 1000:.1f} kB: smallest "
            f"{size / 1000:.1f} kB at q{quality} ({name})"
        )


JPEG_SUBSAMPLING = {"4:2:0": 2, "4:4:4": 0}  # Pillow's codes; 4:4:4 = chroma subsampling off


def jpeg_at_size(image: np.ndarray, target_bytes: int) -> JpegMatch:
    """Search every quality 1-100 with chroma subsampling on (4:2:0) and off (4:4:4) for the
    JPEG (Pillow) whose file size is closest to ``target_bytes``."""
    tried = []
    for name, code in JPEG_SUBSAMPLING.items():
        for quality in range(1, 101):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=code)
            tried.append((buffer.tell(), quality, name, buffer.getvalue()))
    size, quality, name, data = min(tried, key=lambda t: abs(t[0] - target_bytes))
    smallest, largest = (f(tried, key=lambda t: t[0])[:3] for f in (min, max))
    return JpegMatch(
        np.asarray(Image.open(io.BytesIO(data)).convert("RGB")),
        size,
        quality,
        name,
        smallest[0] <= target_bytes <= largest[0],
        smallest,
        largest,
    )


def scores(reconstruction: torch.Tensor, original: torch.Tensor) -> dict[str, float]:
    return {
        "psnr": float(peak_signal_noise_ratio(reconstruction, original, data_range=1.0)),
        "ssim": float(
            structural_similarity_index_measure(reconstruction, original, data_range=1.0)
        ),
    }


# How a Fourier Net is trained. `thesis`: as the thesis states it (section 5.1: weights drawn
# from N(0, 2e-10), constant Adam 4e-4, batches of 2^14 pixels; the pixel's position in, K =
# {0,1}^m / 32 as in the authors' code). `ours`: positions scaled into [0, 1] and weights from
# N(0, 0.03^2) (the init scale of the authors' network_builder.py) with Adam 3e-3, because the
# thesis settings learn only the mean colour (README, "Deep Fourier Machines: settings").
