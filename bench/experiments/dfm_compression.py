"""Deep Fourier Machines experiments: image compression against JPEG (`python -m bench
dfm-compress`).

One Fourier Net per image and (width, depth) cell learns pixel position -> RGB on a centre crop
(MSE on random batches of 2^14 pixels, constant Adam); `SETTINGS` holds the thesis's own
settings (``thesis``) and the ones we train with (``ours``), `COMPRESSION_PROFILES` the crops,
cells and seeds (``paper``: 400x400 crops, the thesis Figure 5.1 grid, five seeds). Its size is
params * 32 bits against the crop's H W 3 8 bits; the JPEG (Pillow) closest in file size is
searched over every quality with chroma subsampling on and off, and where no JPEG reaches the
network's size the record says so instead of holding a JPEG score. Scores: PSNR and SSIM
(torchmetrics), mean and std over the seeds. Results: one record per (photo, cell) in
results/runs/dfm_compression.jsonl (rendered as results/tables/dfm_compression.*) and a figure
of original / Fourier Net / JPEG side by side (dfm_compression_examples.png).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.evaluators.image_codec import (
    BUNDLED_PHOTOS,
    JpegMatch,
    centre_crop,
    jpeg_at_size,
    load_photo,
    scores,
    to_unit,
)
from bench.evaluators.timing import device_name
from bench.records import append_records, make_record, records_path
from bench.report.compression import comparison_figure
from datamodules import DataFileError
from models.generators.dfm import FourierImage, pixel_grid
from models.registry import count_params

SETTINGS = {
    "thesis": {"coords": "pixel", "init_std": math.sqrt(2e-10), "lr": 4e-4},
    "ours": {"coords": "unit", "init_std": 3e-2, "lr": 3e-3},
}

# Thesis Figure 5.1 (the authors' README image ImagenetCompression.png): the widths and, per
# width, the depths trained five times each on a 400x400 image.
THESIS_GRID = {10: range(3, 6), 9: range(3, 10), 8: range(3, 11), 7: range(3, 21), 6: range(7, 26)}
THESIS_CELLS = tuple((w, d) for w, depths in THESIS_GRID.items() for d in depths)

COMPRESSION_PROFILES = {
    # the thesis regime: 400x400 crops, the Figure 5.1 grid (it holds width 8 depth 6, Figure
    # 5.3's network at 18.4% of the image), five trainings per cell; steps: ours (not stated)
    "paper": {"crop": 400, "cells": THESIS_CELLS, "seeds": 5, "steps": 20000},
    "short": {"crop": 400, "cells": ((6, 7), (7, 3), (8, 3), (8, 6)), "seeds": 1, "steps": 3000},
    "demo": {
        "crop": 64,
        "cells": ((4, 3), (4, 4), (6, 3), (6, 4)),
        "seeds": 1,
        "steps": 800,
        "lr": 1e-2,
    },
}
DEFAULTS = {"settings": "ours", "batch_pixels": 2**14, "frequency_scale": 1.0 / 32}


def resolve_settings(profile: str, **overrides) -> dict:
    """A profile's settings: `DEFAULTS`, the ``ours`` training settings, the profile, then the
    overrides (None ignored). Naming ``settings`` explicitly puts those training settings over
    the profile's own (the demo's lr 1e-2 does not survive ``settings="thesis"``)."""
    explicit = {k: v for k, v in overrides.items() if v is not None}
    name = explicit.get("settings", DEFAULTS["settings"])
    if name not in SETTINGS:
        raise ValueError(f"settings {name!r}: choose from {sorted(SETTINGS)}")
    own = COMPRESSION_PROFILES[profile]
    if "settings" in explicit:
        return {**DEFAULTS, **own, **SETTINGS[name], **explicit}
    return {**DEFAULTS, **SETTINGS[name], **own, **explicit}


@dataclass
class CompressionResult:
    """One (photo, width, depth) cell over its seeds: mean and std of PSNR, SSIM and the final
    MSE (targets in [-1, 1]); the JPEG of the closest size; seed 0's reconstruction."""

    photo: str
    width: int
    depth: int
    params: int
    compression_pct: float
    seeds: list[int]
    loss: float
    loss_std: float
    psnr: float
    psnr_std: float
    ssim: float
    ssim_std: float
    jpeg: JpegMatch
    jpeg_psnr: float | None
    jpeg_ssim: float | None
    reconstruction: np.ndarray

    @property
    def jpeg_bytes(self) -> int:
        return self.jpeg.size

    @property
    def net_bytes(self) -> int:
        return self.params * 4


def fit_fourier_image(
    image: np.ndarray,
    width: int,
    depth: int,
    steps: int,
    lr: float = 3e-3,
    batch_pixels: int = 2**14,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    coords: str = "unit",
    init_std: float = 3e-2,
    frequency_scale: float = 1.0 / 32,
) -> tuple[FourierImage, float]:
    """Train one Fourier Net on one uint8 [H, W, 3] image (targets scaled to [-1, 1], MSE on
    random batches of pixels, constant Adam); returns it and the MSE over all pixels.
    ``coords``: "pixel" (integer positions) or "unit" (divided by max(H, W) - 1)."""
    if coords not in ("pixel", "unit"):
        raise ValueError(f"coords {coords!r}: choose 'pixel' or 'unit'")
    torch.manual_seed(seed)
    h, w = image.shape[:2]
    grid = pixel_grid(h, w, normalized=coords == "unit").to(device)
    target = (torch.tensor(image).reshape(-1, 3).float() / 127.5 - 1).to(device)
    model = FourierImage(width, depth, 3, frequency_scale, init_std).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in tqdm(
        range(steps), desc=f"Fourier Net w{width} d{depth}", disable=not progress, leave=False
    ):
        idx = torch.randint(0, h * w, (min(batch_pixels, h * w),), device=device)
        loss = (model(grid[idx]) - target[idx]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = (model(grid) - target).pow(2).mean().item()
    return model, final


def reconstruct(model: FourierImage, h: int, w: int, coords: str, device: str) -> np.ndarray:
    """uint8 [H, W, 3] image the Fourier Net draws."""
    with torch.no_grad():
        values = model(pixel_grid(h, w, normalized=coords == "unit").to(device)).cpu()
    return ((values.reshape(h, w, 3) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def compress(
    photo: str,
    image: np.ndarray,
    width: int,
    depth: int,
    settings: dict,
    device: str = "cpu",
    progress: bool = True,
) -> CompressionResult:
    """Train the (width, depth) Fourier Net on ``image`` once per seed; score each against the
    original and the JPEG of the closest size (when JPEG can reach it)."""
    h, w = image.shape[:2]
    runs = []
    for seed in range(settings["seeds"]):
        model, final = fit_fourier_image(
            image,
            width,
            depth,
            settings["steps"],
            settings["lr"],
            settings["batch_pixels"],
            seed,
            device,
            progress,
            settings["coords"],
            settings["init_std"],
            settings["frequency_scale"],
        )
        recon = reconstruct(model, h, w, settings["coords"], device)
        runs.append((final, scores(to_unit(recon), to_unit(image)), recon))
    params = count_params(model)
    jpeg = jpeg_at_size(image, params * 4)
    theirs = scores(to_unit(jpeg.image), to_unit(image)) if jpeg.reached else {}
    losses = np.array([r[0] for r in runs])
    psnrs = np.array([r[1]["psnr"] for r in runs])
    ssims = np.array([r[1]["ssim"] for r in runs])
    return CompressionResult(
        photo,
        width,
        depth,
        params,
        100 * params * 32 / (h * w * 3 * 8),
        list(range(settings["seeds"])),
        float(losses.mean()),
        float(losses.std()),
        float(psnrs.mean()),
        float(psnrs.std()),
        float(ssims.mean()),
        float(ssims.std()),
        jpeg,
        theirs.get("psnr"),
        theirs.get("ssim"),
        runs[0][2],
    )


def result_record(r: CompressionResult, settings: dict, profile: str, device: str) -> dict:
    """The record of one cell: means with their std over the seeds (none for one seed); where
    JPEG cannot reach the network's size, the JPEG cells say so (``cells``) instead of holding
    a number."""
    metrics = {
        "psnr": r.psnr,
        "ssim": r.ssim,
        "compression_pct": r.compression_pct,
        "loss": r.loss,
        "params_m": r.params / 1e6,
    }
    if len(r.seeds) > 1:  # a spread only where there is one
        metrics.update(psnr_std=r.psnr_std, ssim_std=r.ssim_std, loss_std=r.loss_std)
    cells = None
    if r.jpeg.reached:
        metrics.update(jpeg_psnr=r.jpeg_psnr, jpeg_ssim=r.jpeg_ssim)
    else:
        cells = dict.fromkeys(("jpeg_psnr", "jpeg_ssim"), r.jpeg.describe(r.net_bytes))
    name = settings["settings"]
    used = {k: settings[k] for k in ("coords", "init_std", "lr", "batch_pixels")}
    return make_record(
        "dfm_compression",
        f"{r.photo} w{r.width} d{r.depth}" + (" (thesis settings)" if name == "thesis" else ""),
        "photos",
        metrics,
        device=device_name(device),
        profile=profile,
        steps=settings["steps"],
        config={**settings, "cells": None, "photo": r.photo, "width": r.width, "depth": r.depth},
        note=(
            f"{settings['crop']}x{settings['crop']} centre crop; {len(r.seeds)} seed(s), mean ± "
            f"std; {name} settings {used}; {r.jpeg.describe(r.net_bytes)} vs {r.net_bytes} B"
        ),
        cells=cells,
        settings=used | {"name": name, "seeds": len(r.seeds), "crop": settings["crop"]},
    )


def ran_profile_in_full(record: dict, profile: str) -> bool:
    """Whether a record ran ``profile`` with its own steps and seeds (a reduced run, such as
    the committed CPU run of the paper profile, does not count as having run it)."""
    own = COMPRESSION_PROFILES[profile]
    seeds = record.get("settings", {}).get("seeds", 1)
    return (
        record.get("profile") == profile
        and record.get("steps") == own["steps"]
        and seeds == own["seeds"]
    )


def load_crops(photos, crop: int) -> dict[str, np.ndarray]:
    """photo -> its centre crop, every photo read before anything trains; a photo that is
    missing, a folder, not an image, truncated or smaller than the crop is a one-line
    `DataFileError` naming it (a run does not end with a table missing the photo)."""
    crops = {}
    for photo in photos:
        try:
            crops[photo] = centre_crop(load_photo(photo), crop)
        except (OSError, ValueError, SyntaxError) as err:  # PIL: OSError for a bad file
            raise DataFileError(f"photo {photo}: {err}") from None
    return crops


def run_compression(
    profile: str = "demo",
    photos=BUNDLED_PHOTOS,
    results_dir="results",
    device: str = "cpu",
    **overrides,
) -> list[CompressionResult]:
    """The compression cells of a profile on each photo (cells, seeds, steps, settings and
    crop overridable); appends one record per (photo, cell), writes the comparison figure."""
    settings = resolve_settings(profile, **overrides)
    results, originals = [], load_crops(photos, settings["crop"])
    for photo, image in tqdm(originals.items(), desc="photos"):
        for width, depth in settings["cells"]:
            results.append(compress(photo, image, width, depth, settings, device))
            append_records(  # one cell at a time: a long run keeps what it finished
                records_path(Path(results_dir), "dfm_compression"),
                [result_record(results[-1], settings, profile, device)],
            )
    if results:
        comparison_figure(
            results, originals, Path(results_dir) / "tables" / "dfm_compression_examples.png"
        )
    return results
