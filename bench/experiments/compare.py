"""``python -m bench compare LAYER --tables T ... [--profile demo]``: a new invertible layer in
the published tables, with no edit of the package.

For each table with a reference step (``compare:`` in its ``_table.yaml``: the reference row,
the model argument that is its layer slot, and the table's own linear layers):

1. the exactness checks of ``check-layer`` run once on the layer (float64, at the slot's first
   channel count and a 4x4 image); a layer that fails them is not trained and nothing is recorded;
2. a row YAML is written, ``<results_dir>/rows/<table>/<name>.yaml``: the reference row with the
   layer in its slot and the row named after the layer (re-run it with ``python -m bench fit``);
3. its parameter count is printed beside the reference row's and the paper's rows';
4. it is fitted, tested and timed as every row is (``bench.experiments.row.fit_command``: same
   data module, recipe, timing and W&B logging); the record goes to
   ``<results_dir>/runs/<table>.jsonl``;
5. the layer alone is timed against the table's own linear layers at the slot's shapes
   (density = forward, sampling = inverse, backward of the forward; each as a ratio to a 3x3
   conv2d C -> C of the same shape timed just before it), recorded in ``runs/layers.jsonl``
   and drawn in ``tables/compare_<table>_<name>_layers.png``;
6. the table is regenerated in ``<results_dir>/tables`` from the published numbers and the
   records, and the user row (marked so) is ranked among the table's rows. By default the
   table's own rows are first fitted, tested and timed under the user row's conditions (profile,
   data, ``--set``, ``--steps``, ``--seeds``) into ``<results_dir>`` (rows and seeds measured
   there already are reused), so every ranked row ran under one condition. ``--no-baselines``
   shows the suite's committed records beside the user row instead (other conditions: listed,
   not ranked together).

``--launcher local|slurm`` fits those rows (the table's and the user row) as jobs, as
``run-tables --launcher`` does (`bench.experiments.launcher`).
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from bench.catalog import configured_tables, row_configs, row_label, table_meta
from bench.config import CONFIG_DIR, ConfigError, load_config, parse_override, read_yaml
from bench.devices import default_device
from bench.evaluators.timing import LAYER_PASSES, layer_timings
from bench.experiments.check_layer import format_table
from bench.experiments.launcher import check_launcher_options
from bench.experiments.layer_bench import append_layer_records
from bench.experiments.options import SweepOptions
from bench.experiments.run_tables import fit_rows, row_config
from bench.published import load_published
from bench.records import check_path_name, load_records, write_atomic
from bench.report.plots import compare_layers_plot
from bench.report.tables import report
from bench.schema import RowConfig
from models.checks import LayerContractError, check_layer
from models.layers.glow import InvConv1x1
from models.registry import MODELS, count_params, randomize
from models.slots import SLOT_LAYERS, LayerSpecError, build_layer, resolve_factory

log = logging.getLogger(__name__)

SUITE_RESULTS = CONFIG_DIR.parent.parent / "results"


def layer_name(spec: str, label: str | None) -> str:
    """The row label: ``--name``, else the factory's name (``x.py:Conv`` -> ``Conv``)."""
    if label:
        return label
    return spec.rpartition(":")[2].rpartition(".")[2] or spec


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "layer"


def absolute_spec(spec: str) -> str:
    """A file spec with an absolute path, so the row YAML works from any folder."""
    source, sep, attr = spec.rpartition(":")
    if sep and (source.endswith(".py") or "/" in source) and Path(source).is_file():
        return f"{Path(source).resolve()}:{attr}"
    return spec


def reference(table: str):
    """The table's `CompareSection`, or a `ConfigError` naming the tables that have one."""
    meta = table_meta(table)
    if meta.compare is None:
        having = [m.name for m in configured_tables() if m.compare is not None]
        raise ConfigError(
            f"table {table} has no reference step with a layer slot (compare: in its "
            f"_table.yaml); tables with one: {', '.join(having)}"
        )
    return meta.compare


def check_name(table: str, name: str) -> None:
    """A compared layer's row must not take the name of one of the table's rows, nor its row
    config's file name (the run directory, `bench.experiments.run_dir.run_dir`, is named after
    it: the layer's checkpoints would replace that row's), and must be safe as a file name."""
    try:
        check_path_name(slug(name), "--name")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if name in {row_label(path) for path in row_configs(table)}:
        raise ConfigError(
            f"--name {name!r} is a row of {table} already; give the compared layer another name"
        )
    if slug(name) in {path.stem for path in row_configs(table)}:
        raise ConfigError(
            f"--name {name!r} is the config file name of a row of {table} "
            f"(bench/configs/{table}/{slug(name)}.yaml), whose run directory it would take; "
            "give the compared layer another name"
        )


def check_slot_overrides(table: str, overrides: list[str]) -> None:
    """Refuse a ``--set`` of the slot's model argument: the layer trained would not be the one
    the record names (``compared_layer``)."""
    slot = reference(table).slot
    for text in overrides:
        kwargs = parse_override(text).get("model_kwargs")
        if isinstance(kwargs, dict) and slot in kwargs:
            raise ConfigError(
                f"--set {text}: model_kwargs.{slot} is the slot that takes the compared layer "
                f"in {table}; compare another layer by naming it (python -m bench compare LAYER)"
            )


def write_row(table: str, spec: str, name: str, results_dir: Path) -> Path:
    """The reference row with the layer in its slot, as a row YAML of its own."""
    ref = reference(table)
    ref_path = CONFIG_DIR / table / ref.row
    row = read_yaml(ref_path)
    row["table"], row["row"] = table, name
    row["model_kwargs"] = {**(row.get("model_kwargs") or {}), ref.slot: spec}
    row["compared_layer"] = spec
    row["note"] = f"user row: {spec} in the {ref.slot} slot of {row.get('model')}"
    path = results_dir / "rows" / table / f"{slug(name)}.yaml"
    header = (
        f"# Written by python -m bench compare: {ref_path.relative_to(CONFIG_DIR.parent.parent)}"
        f" with the layer {spec} in model_kwargs.{ref.slot}.\n"
    )
    write_atomic(path, header + yaml.safe_dump(row, sort_keys=False))
    return path


def build_model(config: RowConfig, device: str = "meta", **slot) -> torch.nn.Module:
    """The row's model (``slot`` replaces its slot's value), by default on the meta device (no
    memory, no initialisation cost)."""
    with torch.device(device):
        return MODELS[config.model](**{**config.model_kwargs, **slot})


def parameters_of(config: RowConfig) -> int:
    """`count_params` of the row's model: built on the meta device, or on the CPU where a layer
    needs real values (masks, decompositions at initialisation)."""
    try:
        return count_params(build_model(config))
    except (NotImplementedError, RuntimeError):
        return count_params(build_model(config, "cpu"))


def slot_shapes(config: RowConfig, slot: str) -> list[tuple[int, int, int]]:
    """The shapes (C, H, W) at which the row's model fills its slot, once each, largest
    images first."""
    shapes: list[tuple[int, int, int]] = []

    def recorder(channels: int, spatial_shape: tuple[int, int]):
        shapes.append((channels, *spatial_shape))
        return InvConv1x1(channels)

    try:
        build_model(config, **{slot: recorder})
    except (NotImplementedError, RuntimeError):
        shapes.clear()
        build_model(config, "cpu", **{slot: recorder})
    return sorted(dict.fromkeys(shapes), key=lambda s: (-s[1] * s[2], s[0]))


def parameter_lines(table: str, config: RowConfig, ref_config: RowConfig, slot: str) -> list[str]:
    """Parameter counts: the compared row's, the reference row's (same profile), the paper's."""
    ours, theirs = parameters_of(config), parameters_of(ref_config)
    lines = [
        f"  parameters: {config.row} {ours / 1e6:.3f}M; {ref_config.row} (reference "
        f"row, {config.profile} profile) {theirs / 1e6:.3f}M"
    ]
    pub = load_published(SUITE_RESULTS)
    pub = pub[(pub["table"] == table) & (pub["metric"] == "params_m")]
    if not pub.empty:
        cells = ", ".join(f"{r.row} {r.value:g}M" for r in pub.itertuples())
        lines.append(f"  published (paper profile): {cells}")
    shapes = ", ".join("x".join(map(str, s)) for s in slot_shapes(config, slot))
    lines.append(f"  the slot's shapes (C x H x W): {shapes}")
    return lines


def _check(spec: str, channels: int) -> bool:
    """check-layer's float64 checks at (channels, 4, 4); prints the table; True if exact."""

    factory, label = resolve_factory(spec)
    torch.manual_seed(0)
    layer = randomize(build_layer(factory, (channels, 4, 4), label), 0.1, 0)
    try:
        results = check_layer(layer, (channels, 4, 4), batch=3)
    except LayerContractError as error:
        raise ConfigError(f"{label}: {error}") from error
    print(f"check-layer {label} at shape ({channels}, 4, 4), float64:")
    print(format_table(results))
    failed = [r for r in results if not r.passed]
    for r in failed:
        print(f"check-layer {label}: {r.message()}")
    return not failed


def compare_table(
    table: str, spec: str, name: str, args, sweep: SweepOptions, device: str
) -> list[dict[str, Any]]:
    """Steps 2-5 of the module docstring for one table; returns the layer-timing rows."""

    ref = reference(table)
    results_dir = Path(args.results_dir)
    path = write_row(table, spec, name, results_dir)
    config = row_config(path, sweep, args.steps)  # --set, --dataset, --steps as run-tables
    ref_config = row_config(CONFIG_DIR / table / ref.row, sweep, args.steps)
    print(f"\n== {table}: {name} in the {ref.slot} slot of {ref_config.row} ({path})")
    for line in parameter_lines(table, config, ref_config, ref.slot):
        print(line)
    if args.baselines and not args.no_fit:
        print(f"  the table's own rows under the same conditions ({args.profile} profile):")
        fit_rows(row_configs(table), sweep, load_records(results_dir).rows, args.steps)
    if not args.no_fit:  # the user row is always trained anew: the layer's code may have changed
        print(f"  {name}:")
        user = replace(sweep, force=True)
        _, failed, _ = fit_rows([path], user, [], args.steps)
        if failed:
            print(f"  {name} failed to train; see its 'skipped' cell")
    factory, label = resolve_factory(spec)
    layers = {name: lambda s: build_layer(factory, s, label)}
    layers.update({n: (lambda s, n=n: SLOT_LAYERS[n](s[0], s[1:])) for n in ref.layers})
    batch = args.layer_batch or config.data.batch_size
    rows = layer_timings(layers, slot_shapes(config, ref.slot), batch, device, args.runs)
    for row in rows:
        row["table"] = table
    if rows:
        frame = pd.DataFrame(rows)
        ratios = frame.pivot_table(
            index=["shape", "layer"], columns="pass", values="ratio_to_conv2d", sort=False
        )
        print(f"  layer timing on {rows[0]['device']}, batch {batch}: median time / conv2d 3x3")
        print("  " + ratios[list(LAYER_PASSES)].round(2).to_string().replace("\n", "\n  "))
        plot = results_dir / "tables" / f"compare_{table}_{slug(name)}_layers.png"
        compare_layers_plot(frame, name, f"{table_meta(table).title}: layer timing", plot)
        append_layer_records(
            rows,
            f"compare/{table}",
            ("layer", "pass", "shape"),
            ("ms", "iqr_ms", "ratio_to_conv2d"),
            ("table", "shape", "layer", "pass", "batch"),
            results_dir,
        )
        print(f"  layer timing plot: {plot}")
    return rows


def first_slot_channels(table: str) -> int:
    """The channel count where the table's reference step first fills its slot."""
    ref = reference(table)
    return slot_shapes(load_config(CONFIG_DIR / table / ref.row), ref.slot)[0][0]


def run_compare(args: argparse.Namespace) -> int:
    """The ``compare`` command: 0 when every table was compared, 1 when the layer is not exact
    (nothing trained or recorded)."""
    sweep = SweepOptions.from_args(args)  # measured seeds of the table's rows are reused
    check_launcher_options(sweep)
    spec = absolute_spec(args.layer)
    name = layer_name(args.layer, args.name)
    for table in args.tables:  # before anything runs: every table has a slot and a free name
        reference(table)
        check_name(table, name)
        check_slot_overrides(table, args.set)
    device = args.device or default_device()
    try:
        if not _check(args.layer, first_slot_channels(args.tables[0])):  # as the user spelt it
            print(f"{name} fails check-layer: nothing trained or recorded")
            return 1
        for table in args.tables:
            compare_table(table, spec, name, args, sweep, device)
    except LayerSpecError as error:
        raise ConfigError(str(error)) from error
    ran_baselines = args.baselines and not args.no_fit
    suite = [] if ran_baselines else [SUITE_RESULTS]  # the rows' own records, else the suite's
    result = report(args.results_dir, tables=args.tables, extra_results=suite)
    for table in args.tables:
        print()
        print(result["tables"][table].markdown)
    print(f"tables written to {Path(args.results_dir) / 'tables'}")
    return 0
