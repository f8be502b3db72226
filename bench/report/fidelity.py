"""``results/tables/fidelity.md``: the reproduction-fidelity table (`bench.fidelity`) rendered
beside the comparison tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.config import CONFIG_DIR
from bench.fidelity import coverage, load_fidelity, row_configs_on_disk
from bench.records import write_atomic


def write_fidelity(results_dir: Path, out_dir: Path) -> Path | None:
    """``fidelity.md`` from ``results/fidelity.csv``: per row and aspect (gradient rule, init,
    warm-up, ...) what we do and whether the paper, the authors' code or we decided it; then
    per row YAML the sources of each kind (`bench.fidelity.coverage`)."""
    source = results_dir / "fidelity.csv"
    if not source.is_file():
        return None
    frame = pd.read_csv(source, keep_default_na=False)
    per_row = pd.DataFrame(coverage(load_fidelity(source), row_configs_on_disk(CONFIG_DIR)))
    title = "## Reproduction fidelity: where the papers are silent, what each row does and why"
    parts = [title, "", *_pipe_table(frame), "", "### Sources per row", ""]
    parts += _pipe_table(per_row)
    path = out_dir / "fidelity.md"
    write_atomic(path, "\n".join(parts) + "\n")
    return path


def _pipe_table(frame: pd.DataFrame) -> list[str]:
    """Markdown lines of ``frame``, a '|' inside a cell escaped."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    cells = frame.astype(str).map(lambda text: text.replace("|", "\\|"))
    return [header, rule, *("| " + " | ".join(row) + " |" for row in cells.itertuples(index=False))]
