"""DFM compression pipeline on a 64x64 crop: it measures PSNR against a JPEG of the same size
and says which won (the test checks the measurement, not the outcome); where no JPEG reaches the
network's size the record and the table say so instead of comparing with a smaller JPEG."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from bench.evaluators import image_codec as codec
from bench.experiments import dfm_compression as dfm
from bench.published import load_published
from bench.records import load_records
from bench.report.compression import results_table
from bench.report.tables import build_table


def _stripes(size: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    wave = 100 * np.sin(x / 5.0)[..., None] * np.array([1.0, 0.5, -0.5])
    return (127 + wave + rng.normal(0, 5, (size, size, 3))).clip(0, 255).astype(np.uint8)


def _jpeg_bytes(image: np.ndarray, quality: int, subsampling: str) -> int:
    buffer = io.BytesIO()
    code = codec.JPEG_SUBSAMPLING[subsampling]
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=code)
    return buffer.tell()


def test_compression_of_a_64x64_crop_is_measured_against_jpeg(tmp_path):
    torch.set_default_dtype(torch.float32)
    photo = tmp_path / "stripes.png"
    image = _stripes()
    Image.fromarray(image).save(photo)
    results = dfm.run_compression(
        "demo", [str(photo)], tmp_path / "results", "cpu", cells=[(4, 3), (6, 4)], steps=30
    )
    small, big = results
    crop = codec.centre_crop(image, 64)
    assert small.params == 2 * (4 * 4 + 4 * 16 + 4 * 16 + 3 * 16)  # cos + sin of (2,4,4,4,3)
    assert abs(small.compression_pct - 100 * small.params * 32 / (64 * 64 * 24)) < 1e-9
    # the small network (1,536 B) is within JPEG's range: compared with the closest JPEG
    assert small.jpeg.reached
    assert _jpeg_bytes(crop, small.jpeg.quality, small.jpeg.subsampling) == small.jpeg_bytes
    mse = ((small.reconstruction.astype(float) - crop) ** 2).mean() / 255**2
    assert abs(small.psnr - 10 * np.log10(1 / mse)) < 1e-3
    # width 6 depth 4 is 10,944 B, more than any JPEG of a 64x64 crop: no JPEG number
    assert big.net_bytes == 10944 and not big.jpeg.reached and big.jpeg_psnr is None
    lines = (tmp_path / "results/runs/dfm_compression.jsonl").read_text().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["metrics"]["psnr"] == small.psnr and first["metrics"]["jpeg_psnr"] is not None
    assert "psnr_std" not in first["metrics"]  # one seed: no spread to report
    assert "jpeg_psnr" not in second["metrics"]
    assert second["cells"]["jpeg_psnr"].startswith("JPEG cannot reach 10.9 kB")
    assert second["settings"]["name"] == "ours" and second["settings"]["crop"] == 64
    table = results_table(results)
    assert "beats JPEG" in table and "JPEG cannot reach 10.9 kB" in table
    records = load_records(tmp_path / "results").rows
    rendered = build_table("dfm_compression", load_published(tmp_path), records, {}).markdown
    assert "| JPEG cannot reach 10.9 kB: largest" in rendered  # the JPEG cells say why
    assert (tmp_path / "results/tables/dfm_compression_examples.png").is_file()


def test_jpeg_search_covers_quality_100_without_chroma_subsampling():
    image = _stripes(48, seed=1)
    largest = _jpeg_bytes(image, 100, "4:4:4")
    assert largest > _jpeg_bytes(image, 100, "4:2:0") > _jpeg_bytes(image, 95, "4:2:0")
    # reachable: the closest size over every quality and both subsamplings
    target = (_jpeg_bytes(image, 60, "4:2:0") + _jpeg_bytes(image, 90, "4:4:4")) // 2
    match = codec.jpeg_at_size(image, target)
    assert match.reached
    for subsampling in codec.JPEG_SUBSAMPLING:
        for quality in range(1, 101):
            other = _jpeg_bytes(image, quality, subsampling)
            assert abs(match.size - target) <= abs(other - target)
    # just above what quality 100 with 4:4:4 gives: JPEG cannot reach it, and says so
    match = codec.jpeg_at_size(image, largest + 1000)
    assert not match.reached and match.largest == (largest, 100, "4:4:4")
    assert match.describe(largest + 1000) == (
        f"JPEG cannot reach {(largest + 1000) / 1000:.1f} kB: largest "
        f"{largest / 1000:.1f} kB at q100 (4:4:4)"
    )


def test_settings_resolve_thesis_literal_and_ours():
    thesis = dfm.resolve_settings("demo", settings="thesis")
    assert thesis["coords"] == "pixel" and thesis["lr"] == 4e-4
    assert math.isclose(thesis["init_std"] ** 2, 2e-10)
    assert dfm.resolve_settings("demo")["lr"] == 1e-2  # the demo's own lr over ours
    paper = dfm.resolve_settings("paper", steps=5)
    assert paper["steps"] == 5 and paper["seeds"] == 5 and paper["crop"] == 400
    assert (8, 6) in paper["cells"] and len(paper["cells"]) == 3 + 7 + 8 + 18 + 19
    with pytest.raises(ValueError, match="settings 'jpeg'"):
        dfm.resolve_settings("paper", settings="jpeg")


def test_thesis_grid_sizes_match_figure_5_1():
    """The thesis prints each cell's size in % of a 400x400 RGB image: spot-check ours."""
    printed_sizes = {(8, 6): 18.40, (6, 7): 4.2, (7, 3): 3.67, (10, 5): 73.45}
    for (width, depth), printed in printed_sizes.items():
        model = dfm.FourierImage(width, depth, 3)
        size = 100 * sum(p.numel() for p in model.parameters()) * 32 / (400 * 400 * 24)
        assert abs(size - printed) < 0.01


def test_seeds_give_a_mean_and_a_spread():
    settings = dfm.resolve_settings("demo", crop=16, seeds=3, steps=5)
    (r,) = [dfm.compress("stripes", codec.centre_crop(_stripes(24), 16), 2, 2, settings)]
    assert r.seeds == [0, 1, 2] and r.psnr_std > 0  # different seeds, different networks
    record = dfm.result_record(r, settings, "demo", "cpu")
    assert record["metrics"]["psnr_std"] == r.psnr_std
    assert record["settings"] == {
        "coords": "unit",
        "init_std": 3e-2,
        "lr": 1e-2,
        "batch_pixels": 2**14,
        "name": "ours",
        "seeds": 3,
        "crop": 16,
    }


def test_a_reduced_run_does_not_count_as_the_profile():
    full = {"profile": "paper", "steps": 20000, "settings": {"seeds": 5}}
    assert dfm.ran_profile_in_full(full, "paper")
    assert not dfm.ran_profile_in_full({**full, "steps": 800}, "paper")
    assert not dfm.ran_profile_in_full({**full, "settings": {"seeds": 1}}, "paper")
    assert dfm.ran_profile_in_full({"profile": "demo", "steps": 800}, "demo")  # older records
