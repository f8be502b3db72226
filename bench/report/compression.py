"""The DFM compression experiment's outputs beside the records' table: a figure of original /
Fourier Net / JPEG per photo and the text table `python -m bench dfm-compress` prints, from its
`bench.experiments.dfm_compression.CompressionResult` objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.report.plots import plt, save_figure


def comparison_figure(results: list, originals: dict[str, np.ndarray], path: Path) -> None:
    """Original / Fourier Net / JPEG of the closest size, one row per photo (best PSNR cell)."""
    best = {}
    for r in results:
        if r.photo not in best or r.psnr > best[r.photo].psnr:
            best[r.photo] = r
    fig, axes = plt.subplots(len(best), 3, figsize=(9, 3 * len(best)), squeeze=False)
    for row, (photo, r) in enumerate(sorted(best.items())):
        jpeg_title = (
            f"JPEG q{r.jpeg.quality} {r.jpeg_bytes} B: {r.jpeg_psnr:.1f} dB"
            if r.jpeg.reached
            else r.jpeg.describe(r.net_bytes)
        )
        for ax, img, title in zip(
            axes[row],
            (originals[photo], r.reconstruction, r.jpeg.image),
            (
                f"{photo} (original)",
                f"Fourier Net w{r.width} d{r.depth}: {r.psnr:.1f} dB, {r.compression_pct:.2f}%",
                jpeg_title,
            ),
            strict=True,
        ):
            ax.imshow(img)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    save_figure(fig, path)


def _beats(r) -> str:
    if not r.jpeg.reached:
        return r.jpeg.describe(r.net_bytes)
    return "yes" if r.psnr > r.jpeg_psnr else "no"


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def results_table(results: list) -> str:
    """Markdown table: photo, width, depth, params, size %, final loss, PSNR/SSIM (mean ± std
    over the seeds) vs JPEG, and whether the network beat JPEG (or why JPEG has no cell)."""
    header = (
        "| photo | width | depth | seeds | params | size % | loss | PSNR ours | PSNR JPEG | "
        "SSIM ours | SSIM JPEG | beats JPEG |"
    )
    lines = [header, "|" + "---|" * 12]
    for r in results:
        lines.append(
            f"| {r.photo} | {r.width} | {r.depth} | {len(r.seeds)} | {r.params} | "
            f"{r.compression_pct:.3f} | {r.loss:.4f} ± {r.loss_std:.4f} | "
            f"{r.psnr:.2f} ± {r.psnr_std:.2f} | {_num(r.jpeg_psnr, 2)} | "
            f"{r.ssim:.3f} ± {r.ssim_std:.3f} | {_num(r.jpeg_ssim, 3)} | {_beats(r)} |"
        )
    return "\n".join(lines) + "\n"
