"""Which tables and rows exist, from the config folders alone.

A table is a folder ``bench/configs/<table>/`` with a ``_table.yaml`` (its title, the groups
``make table-<group>`` runs it in, its order there, and, for a table without row configs, the
experiment that fills it) and one YAML per row. Adding a table or a row needs no Python edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from bench.config import (
    CONFIG_DIR,
    RECIPE_DIR,
    ConfigError,
    Source,
    check_keys,
    describe_error,
    nearest,
    read_yaml,
)
from bench.schema import CompareSection, TableSection

TABLE_FILE = "_table.yaml"


@dataclass(frozen=True)
class TableMeta:
    """A table's ``_table.yaml``: its title, the groups it belongs to and its order there;
    ``experiment`` names the `bench.experiments` runner of a table without row configs;
    ``compare`` its reference step with a layer slot (`bench.schema.CompareSection`)."""

    name: str
    title: str
    groups: tuple[str, ...] = ()
    order: int = 0
    experiment: str | None = None
    compare: CompareSection | None = None


def table_meta(name: str) -> TableMeta:
    """The metadata of table ``name`` (a bare title when it has no ``_table.yaml``)."""
    path = CONFIG_DIR / name / TABLE_FILE
    if not path.is_file():
        return TableMeta(name, name)
    data = read_yaml(path)
    check_keys(data, TableSection, str(path))
    try:
        section = TableSection.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_error(err, path, [Source(str(path), data)])) from None
    return TableMeta(
        name,
        section.title,
        tuple(section.groups),
        section.order,
        section.experiment,
        section.compare,
    )


def configured_tables() -> list[TableMeta]:
    """Every table with a ``_table.yaml``, by (order, name)."""
    metas = [table_meta(p.parent.name) for p in CONFIG_DIR.glob(f"*/{TABLE_FILE}")]
    return sorted(metas, key=lambda m: (m.order, m.name))


def table_groups() -> dict[str, list[str]]:
    """group -> its tables in order (``make table-<group>``)."""
    groups: dict[str, list[str]] = {}
    for meta in configured_tables():
        for group in meta.groups:
            groups.setdefault(group, []).append(meta.name)
    return groups


def resolve_tables(names: list[str]) -> list[str]:
    """Table names from table or group names; an unknown name is a `ConfigError`."""
    groups, tables = table_groups(), {m.name for m in configured_tables()}
    out: list[str] = []
    for name in names:
        if name in groups:
            out += groups[name]
        elif name in tables:
            out.append(name)
        else:
            known = sorted(tables | set(groups))
            raise ConfigError(
                f"unknown table or group '{name}'{nearest(name, known)}; groups: "
                f"{', '.join(sorted(groups))}; tables: {', '.join(sorted(tables))}"
            )
    return list(dict.fromkeys(out))


def row_configs(table_glob: str = "*") -> list[Path]:
    """Every row YAML under ``bench/configs/<table>/`` (not ``_table.yaml`` or recipes)."""
    return sorted(
        p
        for p in CONFIG_DIR.glob(f"{table_glob}/*.yaml")
        if not p.name.startswith("_") and p.parent != RECIPE_DIR
    )


def row_label(path: Path) -> str:
    """The ``row`` a row YAML declares (its table label), without validating the rest."""
    return str(read_yaml(path).get("row", path.stem))
