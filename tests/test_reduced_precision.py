"""benchmarks/reduced_precision.py: every contender runs, each OpenVINO cell says the precision it
compiled to, and the speed-ups are the per-round ratios of the times it recorded."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("nncf")


def test_smoke_run_records_every_contender_and_what_openvino_ran(tmp_path, capsys):
    mod = load_benchmark("reduced_precision")
    argv = ["--smoke", "--threads", "1", "--output", str(tmp_path / "out")]
    assert mod.main([*argv, "--cache", str(tmp_path / "cache")]) == 0
    result = json.loads((tmp_path / "out" / "squeezenet1_1.json").read_text())
    cells = result["batches"][0]["cells"]
    assert list(cells) == list(mod.CONTENDERS)
    for label, cell in cells.items():
        assert cell["ms_per_batch"] > 0 and len(cell["ms_per_batch_rounds"]) == 2, label
        assert cell["max_abs_diff_vs_eager"] < 1.0, (label, cell["max_abs_diff_vs_eager"])
    ran = {k: c["settings"].get("inference_precision") for k, c in cells.items()}
    assert ran["OV f32"] == ran["OV int8"] == "f32"
    # bf16 where the CPU has it, else the plugin keeps f32; both int8 + bf16 and bf16 agree
    assert ran["OV bf16"] == ran["OV int8 + bf16"] in ("bf16", "f32")
    # the table's bf16 speed-up is the median per-round ratio of the recorded rounds
    fp32 = [min(a, b) for a, b in zip(cells["ORT fp32"]["ms_per_batch_rounds"],
                                      cells["OV f32"]["ms_per_batch_rounds"])]  # fmt: skip
    per_round = sorted(f / b for f, b in zip(fp32, cells["OV bf16"]["ms_per_batch_rounds"]))
    row = capsys.readouterr().out.strip().splitlines()[-1].split(" | ")
    assert row[9].startswith(f"{(per_round[0] + per_round[1]) / 2:.2f} (")
    assert (tmp_path / "out" / "reduced_precision.md").read_text().strip().endswith(" |")
