"""Deep Fourier Machines experiments: image compression against JPEG (`python -m bench
dfm-compress`).

One Fourier Net per image learns pixel coordinates in [0, 1]^2 -> RGB on a crop (thesis:
400x400, Adam 4e-4, batches of 2^14 pixels, MSE; the demo profile uses Adam 1e-2 on 64x64).
Its size is params * 32 bits against the crop's H W 3 8 bits; a JPEG (Pillow) is searched for
the quality whose file size is closest to the network's, and both are scored by PSNR and SSIM
(torchmetrics). Results: one record per (photo, width, depth) in
results/runs/dfm_compression.jsonl (the report renders them as results/tables/dfm_compression.*)
and a figure of original / Fourier Net / JPEG side by side (dfm_compression_examples.png).
"""

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
from tqdm.auto import tqdm

from bench.evaluators.timing import device_name
from bench.records import append_records, make_record, records_path
from bench.report.plots import plt, save_figure
from models.generators.dfm import FourierImage, pixel_grid
from models.registry import count_params

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
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


def jpeg_at_size(image: np.ndarray, target_bytes: int) -> tuple[np.ndarray, int, int]:
    """(decoded JPEG, its size in bytes, quality) with the file size closest to target."""
    best = None
    for quality in range(1, 96):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        size = buffer.tell()
        if best is None or abs(size - target_bytes) < abs(best[1] - target_bytes):
            best = (buffer.getvalue(), size, quality)
    data, size, quality = best
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), size, quality


def scores(reconstruction: torch.Tensor, original: torch.Tensor) -> dict[str, float]:
    return {
        "psnr": float(peak_signal_noise_ratio(reconstruction, original, data_range=1.0)),
        "ssim": float(
            structural_similarity_index_measure(reconstruction, original, data_range=1.0)
        ),
    }


@dataclass
class CompressionResult:
    photo: str
    width: int
    depth: int
    params: int
    compression_pct: float
    loss: float
    psnr: float
    ssim: float
    jpeg_bytes: int
    jpeg_quality: int
    jpeg_psnr: float
    jpeg_ssim: float
    reconstruction: np.ndarray
    jpeg: np.ndarray


def fit_fourier_image(
    image: np.ndarray,
    width: int,
    depth: int,
    steps: int,
    lr: float = 4e-4,
    batch_pixels: int = 2**14,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[FourierImage, float]:
    """Train one Fourier Net on one uint8 [H, W, 3] image; returns it and the final MSE."""
    torch.manual_seed(seed)
    h, w = image.shape[:2]
    coords = pixel_grid(h, w, normalized=True).to(device)
    target = (torch.from_numpy(image).reshape(-1, 3).float() / 127.5 - 1).to(device)
    model = FourierImage(width, depth, 3).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss = torch.tensor(float("nan"))
    for _ in tqdm(
        range(steps), desc=f"Fourier Net w{width} d{depth}", disable=not progress, leave=False
    ):
        idx = torch.randint(0, h * w, (min(batch_pixels, h * w),), device=device)
        loss = (model(coords[idx]) - target[idx]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = (model(coords) - target).pow(2).mean().item()
    return model, final


def compress(
    photo: str,
    image: np.ndarray,
    width: int,
    depth: int,
    steps: int,
    lr: float,
    device: str = "cpu",
    progress: bool = True,
) -> CompressionResult:
    model, final = fit_fourier_image(
        image, width, depth, steps, lr, device=device, progress=progress
    )
    h, w = image.shape[:2]
    with torch.no_grad():
        values = model(pixel_grid(h, w, normalized=True).to(device)).cpu()
    recon = ((values.reshape(h, w, 3) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    params = count_params(model)
    jpeg, jpeg_bytes, quality = jpeg_at_size(image, params * 4)
    ours, theirs = scores(to_unit(recon), to_unit(image)), scores(to_unit(jpeg), to_unit(image))
    return CompressionResult(
        photo,
        width,
        depth,
        params,
        100 * params * 32 / (h * w * 3 * 8),
        final,
        ours["psnr"],
        ours["ssim"],
        jpeg_bytes,
        quality,
        theirs["psnr"],
        theirs["ssim"],
        recon,
        jpeg,
    )


def comparison_figure(
    results: list[CompressionResult], originals: dict[str, np.ndarray], path: Path
) -> None:
    """Original / Fourier Net / JPEG of the same size, one row per photo (best PSNR config)."""
    best = {}
    for r in results:
        if r.photo not in best or r.psnr > best[r.photo].psnr:
            best[r.photo] = r
    fig, axes = plt.subplots(len(best), 3, figsize=(9, 3 * len(best)), squeeze=False)
    for row, (photo, r) in enumerate(sorted(best.items())):
        for ax, img, title in zip(
            axes[row],
            (originals[photo], r.reconstruction, r.jpeg),
            (
                f"{photo} (original)",
                f"Fourier Net w{r.width} d{r.depth}: {r.psnr:.1f} dB, {r.compression_pct:.2f}%",
                f"JPEG q{r.jpeg_quality} {r.jpeg_bytes} B: {r.jpeg_psnr:.1f} dB",
            ),
            strict=True,
        ):
            ax.imshow(img)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    save_figure(fig, path)


def results_table(results: list[CompressionResult]) -> str:
    """Markdown table: photo, width, depth, params, size %, final loss, PSNR/SSIM vs JPEG."""
    header = (
        "| photo | width | depth | params | size % | loss | PSNR ours | PSNR JPEG | "
        "SSIM ours | SSIM JPEG | beats JPEG |"
    )
    lines = [header, "|" + "---|" * 11]
    for r in results:
        lines.append(
            f"| {r.photo} | {r.width} | {r.depth} | {r.params} | {r.compression_pct:.3f} | "
            f"{r.loss:.4f} | {r.psnr:.2f} | {r.jpeg_psnr:.2f} | {r.ssim:.3f} | "
            f"{r.jpeg_ssim:.3f} | {'yes' if r.psnr > r.jpeg_psnr else 'no'} |"
        )
    return "\n".join(lines) + "\n"


COMPRESSION_PROFILES = {
    # the thesis: 400x400 crops, Adam 4e-4, 2^14-pixel batches; a width x depth sweep
    "paper": {"crop": 400, "widths": (6, 8, 10), "depths": (4, 6, 8), "steps": 20000, "lr": 4e-4},
    "short": {"crop": 400, "widths": (6, 8), "depths": (4, 6), "steps": 3000, "lr": 4e-4},
    "demo": {"crop": 64, "widths": (4, 6), "depths": (3, 4), "steps": 800, "lr": 1e-2},
}


def run_compression(
    profile: str = "demo",
    photos=BUNDLED_PHOTOS,
    results_dir="results",
    device: str = "cpu",
    **overrides,
) -> list[CompressionResult]:
    """The compression sweep of a profile on the photos; appends records, writes the figure."""
    settings = {**COMPRESSION_PROFILES[profile], **overrides}
    results, originals = [], {}
    for photo in tqdm(photos, desc="photos"):
        try:
            image = centre_crop(load_photo(photo), settings["crop"])
        except ValueError as err:
            print(f"skipping {photo}: {err}")
            continue
        originals[photo] = image
        for width in settings["widths"]:
            for depth in settings["depths"]:
                results.append(
                    compress(photo, image, width, depth, settings["steps"], settings["lr"], device)
                )
    records = []
    for r in results:
        metrics = {
            "psnr": r.psnr,
            "ssim": r.ssim,
            "jpeg_psnr": r.jpeg_psnr,
            "jpeg_ssim": r.jpeg_ssim,
            "compression_pct": r.compression_pct,
            "loss": r.loss,
            "params_m": r.params / 1e6,
        }
        record = make_record(
            "dfm_compression",
            f"{r.photo} w{r.width} d{r.depth}",
            "photos",
            metrics,
            device=device_name(device),
            profile=profile,
            steps=settings["steps"],
            config={**settings, "photo": r.photo},
            note=(
                f"{settings['crop']}x{settings['crop']} centre crop; JPEG quality "
                f"{r.jpeg_quality} at {r.jpeg_bytes} B vs {r.params * 4} B"
            ),
        )
        records.append(record)
    if records:
        append_records(records_path(Path(results_dir), "dfm_compression"), records)
        comparison_figure(
            results, originals, Path(results_dir) / "tables" / "dfm_compression_examples.png"
        )
    return results
