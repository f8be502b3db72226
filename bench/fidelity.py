"""Reproduction fidelity: ``results/fidelity.csv`` says, per row and aspect (gradient rule,
init, warm-up, preprocessing, recipe, ...), what the row does and who decided it: the paper,
the authors' released code, or us (with the reason). `python -m bench report` renders it as
``results/tables/fidelity.md``.

Columns: ``rows`` (row patterns separated by ``;``: shell globs with ``{a,b}`` alternatives,
matched against a row YAML's stem, or against ``table/stem`` when the pattern has a ``/``),
``kind`` (`KINDS`), ``aspect``, ``ours``, ``source`` (`SOURCES`), ``reference`` (paper
section, or repository and file with lines, or our file and reason).
"""

from __future__ import annotations

import csv
import re
from fnmatch import fnmatchcase
from pathlib import Path

FIDELITY_CSV = Path(__file__).resolve().parents[1] / "results" / "fidelity.csv"
SOURCES = ("paper", "authors' code", "ours")
KINDS = ("gradient rule", "init", "warm-up", "preprocessing", "recipe", "architecture", "data")
REQUIRED_KINDS = ("init", "warm-up", "preprocessing", "recipe")  # every row has these
# an authors'-code reference names a file: owner/repo[@commit] then a path with an extension
CODE_FILE = re.compile(
    r"[\w.-]+/[\w.-]+(@[0-9a-f]{6,40})?\s+[\w./{},-]+\.(py|yaml|yml|json|sh|lua)"
)


def expand(pattern: str) -> list[str]:
    """``a_{x,y}_k{4,16}`` -> the four patterns it stands for (no nesting)."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [p for option in match.group(1).split(",") for p in expand(head + option + tail)]


def matches(rows: str, table: str, stem: str) -> bool:
    """Whether a ``rows`` cell names the row YAML ``table/stem``."""
    for part in rows.split(";"):
        for pattern in expand(part.strip()):
            target = f"{table}/{stem}" if "/" in pattern else stem
            if fnmatchcase(target, pattern):
                return True
    return False


def load_fidelity(path: Path = FIDELITY_CSV) -> list[dict[str, str]]:
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(handle))


def entries_for(table: str, stem: str, entries: list[dict[str, str]]) -> list[dict[str, str]]:
    return [e for e in entries if matches(e["rows"], table, stem)]


def row_configs_on_disk(config_dir: Path) -> list[tuple[str, str]]:
    """(table, stem) of every row YAML under ``config_dir`` (not ``_table.yaml``, not recipes)."""
    return sorted(
        (p.parent.name, p.stem)
        for p in Path(config_dir).glob("*/*.yaml")
        if not p.name.startswith("_") and p.parent.name != "recipes"
    )


COVERAGE_KINDS = ("gradient rule", *REQUIRED_KINDS)


def coverage(entries: list[dict[str, str]], rows: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Per row YAML, the sources of its entries of each kind in `COVERAGE_KINDS` (several where
    different aspects of a kind have different sources); ``-`` where it has none."""
    table = []
    for name, stem in rows:
        mine = entries_for(name, stem, entries)
        line = {"table": name, "row YAML": stem}
        for kind in COVERAGE_KINDS:
            sources = dict.fromkeys(e["source"] for e in mine if e["kind"] == kind)
            line[kind] = ", ".join(sources) or "-"
        table.append(line)
    return table
