"""convzoo bench: every field with its unit, OOM cells, the report files, the CLI."""

from __future__ import annotations

import csv
import json

import matplotlib.image
import pytest
import torch
from torch import nn

from convzoo.bench.counts import count_macs, count_stage_macs
from convzoo.bench.report import load_accuracies, table_text, write_report
from convzoo.bench.runner import (
    UNITS,
    BenchConfig,
    ModelSpec,
    bench_model,
    bench_models,
    registered_spec,
)
from convzoo.cli import main

# Quick settings: one thread (the CI box has two cores shared with the test runner).
QUICK = {"warmup": 1, "repeats": 3, "min_repeat_s": 0.001, "threads": 1}


class TinyNet(nn.Module):
    """Conv-BN-ReLU stem, one stage, linear head; raises OOM above ``oom_above`` images."""

    def __init__(self, oom_above: int | None = None) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.stages = nn.Sequential(
            nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        )
        self.head = nn.Linear(16, 5)
        self.oom_above = oom_above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.oom_above is not None and x.shape[0] > self.oom_above:
            raise torch.OutOfMemoryError(f"simulated: batch {x.shape[0]} does not fit")
        return self.head(self.stages(self.stem(x)).mean((2, 3)))


def tiny_spec(name: str = "tinynet", oom_above: int | None = None) -> ModelSpec:
    return ModelSpec(name, lambda: TinyNet(oom_above), input_size=12, num_classes=5, accuracy=50.0)


@pytest.fixture(scope="module")
def report():
    cfg = BenchConfig(batch_sizes=(1, 4), train=True, fold_bn=True, channels_last=True, **QUICK)
    return bench_models([registered_spec("nin_cifar", tiny=True), tiny_spec()], cfg)


def test_every_field_is_measured_and_has_a_unit(report):
    prov = report["provenance"]
    for key in ("device_name", "dtype", "memory_format", "compile", "torch", "cudnn", "date"):
        assert key in prov
    assert prov["memory_format"] == "channels_last" and prov["batch_sizes"] == [1, 4]
    assert [m["model"] for m in report["models"]] == ["nin_cifar", "tinynet"]
    for m in report["models"]:
        for key in ("params", "params_trainable", "macs", "macs_per_stage", "input_size"):
            assert key in UNITS, key
        assert m["params"] == m["params_trainable"] > 0
        assert sum(m["macs_per_stage"].values()) == m["macs"] > 0
        assert [b["batch_size"] for b in m["batches"]] == [1, 4]
        for b in m["batches"]:
            numeric = {k: v for k, v in b.items() if k not in ("batch_size", "infer_path")}
            assert len(numeric) >= 10, numeric
            for key, value in numeric.items():
                assert key in UNITS, f"{key} has no unit"
                assert isinstance(value, float) and value >= 0, (key, value)
            assert (
                b["infer_ms_per_image_p25"]
                <= b["infer_ms_per_image"]
                <= b["infer_ms_per_image_p75"]
            )
            assert b["infer_ms_per_image_min"] <= b["infer_ms_per_image_max"]
            assert b["infer_images_per_s"] == pytest.approx(1e3 / b["infer_ms_per_image"])
            assert b["infer_peak_mem_mib"] > 0 and b["train_peak_mem_mib"] > 0
        assert m["throughput_batch_size"] == 4
        assert m["throughput_images_per_s"] == m["batches"][-1]["infer_images_per_s"]
        assert not m["errors"]
    # A batch of 4 holds 4x the activations of a batch of 1.
    nin = report["models"][0]["batches"]
    assert nin[1]["infer_peak_mem_mib"] > 2 * nin[0]["infer_peak_mem_mib"]


def test_macs_agree_with_the_counter(report):
    tiny = report["models"][1]
    assert tiny["macs"] == count_macs(TinyNet(), 12)
    # stem: 12*12 pixels * 8 outputs * 27 weights; stage: 6*6 * 16 * 72 (+ the BN's and bias)
    stages = count_stage_macs(TinyNet(), 12)
    assert stages["stem"] >= 12 * 12 * 8 * 27 and stages["stages.0"] == 6 * 6 * 16 * 72
    assert stages["head"] == 16 * 5


def test_oom_is_recorded_and_the_run_goes_on():
    cfg = BenchConfig(batch_sizes=(1, 2, 8), train=True, **QUICK)
    report = bench_models([tiny_spec("fits_2", oom_above=2), tiny_spec("fits_all")], cfg)
    first, second = report["models"]
    cells = [b["infer_ms_per_image"] for b in first["batches"]]
    assert isinstance(cells[0], float) and isinstance(cells[1], float) and cells[2] == "OOM"
    assert first["batches"][2]["train_ms_per_image"] == "OOM"
    assert first["throughput_batch_size"] == 2 and not first["errors"]
    assert any("OOM" in n for n in first["notes"])
    assert all(isinstance(b["infer_ms_per_image"], float) for b in second["batches"])


def test_simulated_memory_cap_records_oom():
    small = bench_model(tiny_spec(), BenchConfig(batch_sizes=(1, 64), memory_cap_mib=0.5, **QUICK))
    one, big = small["batches"]
    assert isinstance(one["infer_ms_per_image"], float) and one["infer_peak_mem_mib"] < 0.5
    assert big["infer_ms_per_image"] == "OOM" and big["infer_peak_mem_mib"] == "OOM"


def test_compile_failure_falls_back_to_eager(monkeypatch):
    def broken(*args, **kwargs):
        def fn(x):
            raise RuntimeError("no C++ compiler")

        return fn

    monkeypatch.setattr(torch, "compile", broken)
    result = bench_model(tiny_spec(), BenchConfig(batch_sizes=(1, 2), compile=True, **QUICK))
    assert [b["infer_path"] for b in result["batches"]] == ["eager", "eager"]
    assert any("eager fallback" in n and "no C++ compiler" in n for n in result["notes"])


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="dtype"):
        BenchConfig(dtype="float64")
    with pytest.raises(ValueError, match="cuda_graphs"):
        BenchConfig(cuda_graphs=True)


def test_report_files_are_written_and_readable(report, tmp_path):
    paths = write_report(report, tmp_path)
    names = {p.name for p in paths}
    assert {"bench.json", "bench.csv", "bench.md"} <= names
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["provenance"]["torch"] == torch.__version__
    assert data["units"]["macs"].startswith("multiply-adds")
    rows = list(csv.DictReader((tmp_path / "bench.csv").open()))
    assert [(r["model"], r["batch_size"]) for r in rows] == [
        ("nin_cifar", "1"),
        ("nin_cifar", "4"),
        ("tinynet", "1"),
        ("tinynet", "4"),
    ]
    assert float(rows[0]["infer_ms_per_image"]) == pytest.approx(
        report["models"][0]["batches"][0]["infer_ms_per_image"]
    )
    md = (tmp_path / "bench.md").read_text()
    assert "| nin_cifar | 1 |" in md and "multiply-adds" in md
    for png in ("latency_vs_batch.png", "accuracy_vs_throughput.png", "params_vs_accuracy.png"):
        image = matplotlib.image.imread(tmp_path / png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    text = table_text(report)
    assert "nin_cifar" in text and "ms/img" in text and "channels_last" in text


def test_oom_cells_reach_every_file(tmp_path):
    cfg = BenchConfig(batch_sizes=(1, 4), **QUICK)
    report = bench_models([tiny_spec("oomy", oom_above=1)], cfg)
    write_report(report, tmp_path)
    rows = list(csv.DictReader((tmp_path / "bench.csv").open()))
    assert rows[1]["infer_ms_per_image"] == "OOM"
    assert "| oomy | 4 | OOM |" in (tmp_path / "bench.md").read_text()
    assert (
        json.loads((tmp_path / "bench.json").read_text())["models"][0]["batches"][1][
            "infer_ms_per_image"
        ]
        == "OOM"
    )


def test_accuracy_files(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"nin_cifar": 0.9, "x": {"top1": 75.5}}))
    (tmp_path / "run.json").write_text(json.dumps({"model": "y", "best_top1": 70.0}))
    assert load_accuracies(tmp_path / "a.json") == {"nin_cifar": 90.0, "x": 75.5}
    assert load_accuracies(tmp_path / "run.json") == {"y": 70.0}
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="no accuracy"):
        load_accuracies(tmp_path / "bad.json")


def test_cli_bench_writes_files_and_shows_progress(tmp_path, capsys):
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"nin_cifar": 88.0}))
    argv = ["bench", "nin_cifar", "--tiny", "--batch-sizes", "1,2", "--repeats", "2"]
    argv += ["--warmup", "1", "--min-repeat-s", "0.001", "--threads", "1"]
    argv += ["--metrics", str(metrics), "--output", str(tmp_path / "out")]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "[1/1] nin_cifar: inference, batch 2" in captured.err
    assert "nin_cifar" in captured.out and "bench.csv" in captured.out
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert data["models"][0]["accuracy_top1_pct"] == 88.0


def test_cli_rejects_bad_batch_sizes(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "nin_cifar", "--batch-sizes", "1,0"])
    assert "positive" in capsys.readouterr().err
