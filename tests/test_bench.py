"""convzoo bench: every field with its unit, OOM cells, the report files, the CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import torch
from torch import nn

import convzoo
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
from convzoo.cliutil import UsageError

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
    for key in ("device_name", "dtype", "memory_format", "runtimes", "torch", "cudnn", "date"):
        assert key in prov
    assert prov["memory_format"] == "channels_last" and prov["batch_sizes"] == [1, 4]
    assert prov["threads"] == 1
    assert [m["model"] for m in report["models"]] == ["nin_cifar", "tinynet"]
    for m in report["models"]:
        for key in ("params", "params_trainable", "macs", "macs_per_stage", "input_size"):
            assert key in UNITS, key
        assert m["params"] == m["params_trainable"] > 0
        assert sum(m["macs_per_stage"].values()) == m["macs"] > 0
        infer = [b for b in m["batches"] if b["runtime"] == "eager"]
        train = [b for b in m["batches"] if b["runtime"] == "train (eager)"]
        assert [b["batch_size"] for b in infer] == [b["batch_size"] for b in train] == [1, 4]
        for b in train:
            assert (
                b["train_ms_per_image_p25"]
                <= b["train_ms_per_image"]
                <= b["train_ms_per_image_p75"]
            )
            assert b["train_peak_mem_mib"] > 0
        for b in infer:
            assert b["settings"]["fold_bn"] and b["settings"]["memory_format"] == "channels_last"
            skip = ("batch_size", "runtime", "settings")
            numeric = {k: v for k, v in b.items() if k not in skip}
            assert len(numeric) >= 8, numeric
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
            assert b["infer_peak_mem_mib"] > 0
            # BN folding changes rounding only.
            assert b["max_abs_diff_vs_eager"] < 1e-4
        assert m["throughput_batch_size"] == 4 and m["throughput_runtime"] == "eager"
        assert m["throughput_images_per_s"] == infer[-1]["infer_images_per_s"]
        assert not m["errors"]
    assert (
        report["models"][0]["accuracy_top1_pct"] == convzoo.model_info("nin_cifar").paper_accuracy
    )
    assert report["models"][0]["accuracy_dataset"] == "cifar"
    # A batch of 4 holds 4x the activations of a batch of 1.
    nin = [b for b in report["models"][0]["batches"] if b["runtime"] == "eager"]
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
    cells = [b["infer_ms_per_image"] for b in first["batches"][:3]]
    assert isinstance(cells[0], float) and isinstance(cells[1], float) and cells[2] == "OOM"
    assert first["batches"][5]["train_ms_per_image"] == "OOM"
    assert first["throughput_batch_size"] == 2 and not first["errors"]
    assert any("OOM" in n for n in first["notes"])
    assert all(isinstance(b["infer_ms_per_image"], float) for b in second["batches"][:3])


def test_simulated_memory_cap_records_oom():
    small = bench_model(tiny_spec(), BenchConfig(batch_sizes=(1, 64), memory_cap_mib=0.5, **QUICK))
    one, big = small["batches"]
    assert isinstance(one["infer_ms_per_image"], float) and one["infer_peak_mem_mib"] < 0.5
    assert big["infer_ms_per_image"] == "OOM" and big["infer_peak_mem_mib"] == "OOM"


def test_compile_failure_is_an_error_cell_never_eager_timings(monkeypatch):
    def broken(*args, **kwargs):
        def fn(x):
            raise RuntimeError("no C++ compiler")

        return fn

    monkeypatch.setattr(torch, "compile", broken)
    cfg = BenchConfig(batch_sizes=(1, 2), runtimes=("eager", "compiled"), **QUICK)
    result = bench_model(tiny_spec(), cfg)
    cells = {(b["runtime"], b["batch_size"]): b for b in result["batches"]}
    assert cells["compiled", 1]["infer_ms_per_image"] == "error"
    assert isinstance(cells["eager", 1]["infer_ms_per_image"], float)
    assert any("compiled" in e and "no C++ compiler" in e for e in result["errors"])


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="dtype"):
        BenchConfig(dtype="float64")
    with pytest.raises(ValueError, match="cuda_graphs"):
        BenchConfig(cuda_graphs=True)
    with pytest.raises(UsageError, match="runtimes"):
        BenchConfig(runtimes=("tensorrt",))
    with pytest.raises(ValueError, match="threads"):
        BenchConfig(threads=0)
    assert BenchConfig(fast=True).runtimes == ("eager", "fast")


def test_report_files_are_written_and_readable(report, tmp_path):
    paths = write_report(report, tmp_path)
    names = {p.name for p in paths}
    assert {"bench.json", "bench.csv", "bench.md"} <= names
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["provenance"]["torch"] == torch.__version__
    assert data["units"]["macs"].startswith("multiply-adds")
    rows = list(csv.DictReader((tmp_path / "bench.csv").open()))
    assert [(r["model"], r["batch_size"], r["runtime"]) for r in rows] == [
        (model, batch, runtime)
        for model in ("nin_cifar", "tinynet")
        for runtime in ("eager", "train (eager)")
        for batch in ("1", "4")
    ]
    assert json.loads(rows[0]["settings"])["fold_bn"] is True
    assert float(rows[0]["infer_ms_per_image"]) == pytest.approx(
        report["models"][0]["batches"][0]["infer_ms_per_image"]
    )
    md = (tmp_path / "bench.md").read_text()
    assert "| nin_cifar | 1 | eager |" in md and "multiply-adds" in md
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
    assert "| oomy | 4 | eager | OOM |" in (tmp_path / "bench.md").read_text()
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
    argv = ["bench", "nin_cifar", "--tiny", "--batch-sizes", "1", "2", "--repeats", "2"]
    argv += ["--warmup", "1", "--min-repeat-s", "0.001", "--threads", "1"]
    argv += ["--metrics", str(metrics), "--output", str(tmp_path / "out")]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "[1/1] nin_cifar: inference, batch 2" in captured.err
    assert "nin_cifar" in captured.out and "bench.csv" in captured.out
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert data["models"][0]["accuracy_top1_pct"] == 88.0


def test_cli_bench_reports_the_sizes_compare_reports(tmp_path, capsys):
    """Model size (SqueezeNet Table 2) in bench's table, JSON and CSV: the same MB at fp32, fp16
    and int8 as ``convzoo compare`` for the same full-size model."""
    from convzoo.bench.compare import compare_rows

    argv = ["bench", "resnet20_cifar", "--batch-sizes", "1", "--repeats", "1", "--warmup", "0"]
    argv += ["--min-repeat-s", "0", "--threads", "1", "--output", str(tmp_path)]
    assert main(argv) == 0
    (want,) = compare_rows("resnet20_cifar")
    (got,) = json.loads((tmp_path / "bench.json").read_text())["models"]
    keys = ("size_mb_fp32", "size_mb_fp16", "size_mb_int8")
    assert {k: got[k] for k in keys} == {k: want[k] for k in keys}
    # a byte per weight plus per-channel scales and int32 biases: above a quarter of fp32
    assert want["size_mb_fp32"] / 4 < want["size_mb_int8"] < want["size_mb_fp16"]
    row = next(csv.DictReader((tmp_path / "bench.csv").open()))
    assert float(row["size_mb_int8"]) == pytest.approx(want["size_mb_int8"])
    lines = capsys.readouterr().out.splitlines()
    header = next(line.split() for line in lines if line.startswith("model  "))
    cells = next(line.split() for line in lines if line.startswith("resnet20_cifar "))
    assert header[3:9] == ["MB", "fp32", "MB", "fp16", "MB", "int8"]
    assert cells[2:5] == [f"{want[k]:.2f}" for k in keys]


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--batch-sizes", "0", ">= 1"),
        ("--threads", "0", ">= 1"),
        ("--runtimes", "trt", "onnxruntime"),
        ("--device", "tpu", "tpu"),
    ],
)
def test_cli_rejects_bad_values_in_one_line(flag, value, says, capsys):
    with pytest.raises(SystemExit):
        main(["bench", "nin_cifar", flag, value])
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert flag in line and says in line and "Traceback" not in err


@pytest.mark.slow
def test_library_comparison_script_smoke(tmp_path):
    script = Path(__file__).parents[1] / "benchmarks" / "compare_libraries.py"
    out = tmp_path / "cmp.json"
    argv = [sys.executable, str(script), "--smoke", "--no-compile", "--models", "nin_cifar"]
    subprocess.run([*argv, "resnet18", "--output", str(out)], check=True, timeout=600)
    data = json.loads(out.read_text())
    gpu_rows = {r["model"]: r for r in data["gpu"]["rows"]}
    assert gpu_rows["nin_cifar"]["convzoo_infer_ms"] > 0
    assert gpu_rows["nin_cifar"]["convzoo_fast_infer_ms"] > 0
    cpu_rows = {r["model"]: r for r in data["cpu"]["rows"]}
    assert cpu_rows["nin_cifar"]["convzoo_fast_ms"] > 0
    if "resnet18" in convzoo.list_models():
        assert gpu_rows["resnet18"]["infer_x"] > 0 and cpu_rows["resnet18"]["fast_over_tv"] > 0
    else:
        assert "not registered" in gpu_rows["resnet18"]["note"]
