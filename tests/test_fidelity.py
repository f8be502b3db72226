"""results/fidelity.csv covers every row YAML: each row says where its init, warm-up,
preprocessing and recipe (and, for rows with a modified gradient, its gradient rule) come from;
each source is the paper, the authors' code (naming a file) or ours."""

from __future__ import annotations

import pytest

from bench.config import CONFIG_DIR
from bench.fidelity import (
    CODE_FILE,
    KINDS,
    REQUIRED_KINDS,
    SOURCES,
    entries_for,
    expand,
    load_fidelity,
    matches,
    row_configs_on_disk,
)

ENTRIES = load_fidelity()
ROWS = row_configs_on_disk(CONFIG_DIR)


def test_patterns_expand_and_match():
    assert expand("snf_{mnist,cifar10}_k{4,16}") == [
        "snf_mnist_k4",
        "snf_mnist_k16",
        "snf_cifar10_k4",
        "snf_cifar10_k16",
    ]
    assert matches("a_x; cdflow_t2_*/glow_*", "cdflow_t2_cifar10", "glow_cifar10")
    assert not matches("cdflow_t2_*/glow_*", "iconvnet_t2", "glow_cifar10")
    assert matches("*_mnist_linear9", "inverse_flow_t4", "snf_mnist_linear9")


@pytest.mark.parametrize("table, stem", ROWS, ids=[f"{t}/{s}" for t, s in ROWS])
def test_every_row_says_where_each_aspect_comes_from(table, stem):
    kinds = {e["kind"] for e in entries_for(table, stem, ENTRIES)}
    needed = set(REQUIRED_KINDS)
    if stem.startswith(("snf_", "exact_", "inverse_conv_mnist")):
        needed.add("gradient rule")
    assert needed <= kinds, f"{table}/{stem}: no fidelity entry for {sorted(needed - kinds)}"


def test_every_entry_has_a_known_source_and_names_its_evidence():
    assert ENTRIES
    for entry in ENTRIES:
        assert entry["source"] in SOURCES, entry
        assert entry["kind"] in KINDS, entry
        assert entry["ours"].strip() and entry["reference"].strip(), entry
        if entry["source"] == "authors' code":
            assert CODE_FILE.search(entry["reference"]), f"no file named: {entry['reference']}"


def test_every_entry_names_an_existing_row():
    for entry in ENTRIES:
        assert any(matches(entry["rows"], t, s) for t, s in ROWS), entry["rows"]
