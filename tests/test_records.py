"""Records and generated files: concurrent appends lose nothing, every write is atomic and
keeps the usual permissions."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat

import matplotlib.pyplot as plt
import pytest

from bench import records
from bench.records import append_records, make_record, write_atomic
from bench.report.plots import save_figure


def _append_many(path: str, writer: int, count: int) -> None:
    for i in range(count):
        record = make_record("t", f"w{writer}", "synthetic", {"i": i}, device="cpu")
        append_records(path, [record])


def test_concurrent_appends_keep_every_record(tmp_path):
    path = tmp_path / "runs" / "t.jsonl"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_append_many, args=(str(path), w, 100)) for w in range(4)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=240)
        assert process.exitcode == 0
    lines = path.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]
    assert len(parsed) == 400
    for writer in range(4):
        assert sorted(r["metrics"]["i"] for r in parsed if r["row"] == f"w{writer}") == list(
            range(100)
        )


def test_written_files_respect_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.md", "text")
        append_records(tmp_path / "runs" / "t.jsonl", [make_record("t", "r", "d", {}, device="-")])
    finally:
        os.umask(previous)
    for path in (tmp_path / "a.md", tmp_path / "runs" / "t.jsonl"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_a_killed_plot_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "t_params_bpd.png"
    fig, _ = plt.subplots()
    save_figure(fig, path)
    before = path.read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(records.os, "replace", killed)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    with pytest.raises(KeyboardInterrupt):
        save_figure(fig, path)
    assert path.read_bytes() == before and before.startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
