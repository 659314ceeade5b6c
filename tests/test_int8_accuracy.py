"""benchmarks/int8_accuracy.py: OpenVINO is tried on ONNX Runtime's int8 file in a child process,
so a file the plugin rejects (or crashes on) becomes a line in the results, not a dead run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import load_benchmark
from convzoo.bench.quantize import calibration_images, quantize_onnx
from convzoo.interop.export import export_onnx

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")


def test_openvino_compile_failure_is_none_for_a_good_file_and_a_line_for_a_bad_one(tmp_path):
    mod = load_benchmark("int8_accuracy")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten()).eval()
    calib = calibration_images(size=8, count=16)
    export_onnx(model, tmp_path / "m.onnx", calib[:2])
    quantize_onnx(tmp_path / "m.onnx", tmp_path / "q.onnx", calib)
    assert mod.openvino_compile_failure(tmp_path / "q.onnx", (1, 3, 8, 8)) is None
    bad = tmp_path / "bad.onnx"
    bad.write_bytes((tmp_path / "q.onnx").read_bytes()[:200])  # a truncated file
    said = mod.openvino_compile_failure(bad, (1, 3, 8, 8))
    assert said is not None and said.startswith("OpenVINO could not compile bad.onnx: ")
    assert "\n" not in said
