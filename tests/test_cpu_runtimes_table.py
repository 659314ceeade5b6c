"""benchmarks/cpu_runtimes.py's ratios: taken within each interleaved round, so a slow spell of the
machine that hits one round cancels out of that round's ratio."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark


def _load():
    return load_benchmark("cpu_runtimes")


def _cells(rounds: dict[str, list[float]]) -> dict[str, dict[str, object]]:
    return {k: {"ms_per_batch": sorted(v)[len(v) // 2], "ms_per_batch_rounds": v}
            for k, v in rounds.items()}  # fmt: skip


def test_per_round_ratio_cancels_the_machine_speed_of_each_round():
    mod = _load()
    machine = [1.0, 2.0, 1.0, 3.0, 1.0]  # the machine's slowness, round by round
    cells = _cells({
        "convzoo fast": [9.0 * m for m in machine],
        "onnxruntime": [10.0 * m for m in machine],
        "openvino": [12.0 * m if i % 2 else 20.0 * m for i, m in enumerate(machine)],
    })  # fmt: skip
    med, lo, hi = mod.per_round_ratio(cells, ("convzoo fast",), mod.PEERS)
    assert (med, lo, hi) == pytest.approx((0.9, 0.9, 0.9))
    # Slow rounds that fall on one side only show up in the spread, not hidden by medians.
    cells["convzoo fast"]["ms_per_batch_rounds"] = [9.0, 18.0, 9.0, 27.0, 30.0]
    med, lo, hi = mod.per_round_ratio(cells, ("convzoo fast",), mod.PEERS)
    assert med == pytest.approx(0.9) and hi == pytest.approx(3.0)


def test_per_round_ratio_needs_both_sides():
    mod = _load()
    cells = _cells({"convzoo fast": [1.0, 1.0]})
    cells["onnxruntime"] = {"missing": "onnxruntime is not installed"}
    assert mod.per_round_ratio(cells, ("convzoo fast",), mod.PEERS) is None


def test_table_across_runs_reads_folders(tmp_path, capsys):
    mod = _load()
    for name, ort in (("a", 10.0), ("b", 20.0)):
        run = tmp_path / name
        run.mkdir()
        cells = _cells({"convzoo fast": [10.0, 10.0], "onnxruntime": [ort, ort],
                        "onnxruntime-int8": [5.0, 5.0]})  # fmt: skip
        day = 1 if name == "a" else 2
        body = {"model": "squeezenet1_1", "batches": [{"batch_size": 1, "cells": cells}],
                "provenance": {"date": f"2026-12-0{day}T10:00:00+00:00"}}  # fmt: skip
        (run / "squeezenet1_1-b1.json").write_text(json.dumps(body))
    assert (
        mod.main(["--table", "--output", str(tmp_path / "a"), "--across", str(tmp_path / "b")]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    head = next(ln for ln in lines if "fast / best peer, 2026-12-01 10:00" in ln)
    assert "fast / best peer, 2026-12-02 10:00" in head
    # fast / best peer: 10/10 in run a, 10/20 in run b; int8: the best fp32 (10) over 5 in both.
    assert "| squeezenet1_1 | 1 | 1.00 | 0.50 | 2.00 | 2.00 |" in lines
    with pytest.raises(SystemExit, match="no such run folder"):
        mod.main(["--table", "--output", str(tmp_path / "a"), "--across", str(tmp_path / "c")])
