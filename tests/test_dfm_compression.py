"""DFM compression pipeline on a 64x64 crop: it measures PSNR against a JPEG of the same size
and says which won (the test checks the measurement, not the outcome)."""

from __future__ import annotations

import io
import json

import numpy as np
import torch
from PIL import Image

from bench.experiments import dfm_compression as dfm


def test_compression_of_a_64x64_crop_is_measured_against_jpeg(tmp_path):
    torch.set_default_dtype(torch.float32)
    photo = tmp_path / "stripes.png"
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:80, 0:80]
    image = (
        (
            127
            + 100 * np.sin(x / 5.0)[..., None] * np.array([1.0, 0.5, -0.5])
            + rng.normal(0, 5, (80, 80, 3))
        )
        .clip(0, 255)
        .astype(np.uint8)
    )
    Image.fromarray(image).save(photo)
    results = dfm.run_compression(
        "demo", [str(photo)], tmp_path / "results", "cpu", widths=(3,), depths=(2,), steps=150
    )
    (r,) = results
    crop = dfm.centre_crop(image, 64)
    assert r.params == 2 * (3 * 4 + 3 * 8 + 3 * 8)  # cos and sin coefficients of (2, 3, 3, 3)
    assert abs(r.compression_pct - 100 * r.params * 32 / (64 * 64 * 24)) < 1e-9
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, format="JPEG", quality=r.jpeg_quality)
    assert buffer.tell() == r.jpeg_bytes
    mse = ((r.reconstruction.astype(float) - crop) ** 2).mean() / 255**2
    assert abs(r.psnr - 10 * np.log10(1 / mse)) < 1e-3
    (record,) = [json.loads(x) for x in (tmp_path / "results/runs/dfm_compression.jsonl").open()]
    assert record["metrics"]["psnr"] == r.psnr and record["metrics"]["jpeg_psnr"] == r.jpeg_psnr
    assert "beats JPEG" in dfm.results_table(results)
    assert (tmp_path / "results/tables/dfm_compression_examples.png").is_file()


def test_jpeg_search_picks_the_closest_size():
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    _, size, quality = dfm.jpeg_at_size(image, 1500)
    sizes = []
    for q in (quality - 1, quality + 1):
        if 1 <= q <= 95:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=q)
            sizes.append(buffer.tell())
    assert all(abs(size - 1500) <= abs(s - 1500) for s in sizes)
