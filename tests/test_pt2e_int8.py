"""benchmarks/pt2e_int8.py: PyTorch's PT2E int8 flow (torchao's x86 inductor quantizer), compiled,
timed beside ONNX Runtime; its outputs stay close to eager fp32."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import BENCHMARKS, load_benchmark

pytest.importorskip("onnxruntime")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def test_pt2e_int8_runs_close_to_eager_and_is_timed_beside_ort(tmp_path):
    pytest.importorskip("torchao")
    out = tmp_path / "pt2e.json"
    argv = ["resnet20_cifar", "--tiny", "--threads", "1", "--rounds", "1", "--batch-sizes", "3",
            "--output", str(out)]  # fmt: skip
    # its own process: the script turns on inductor's freezing, a global setting
    run = subprocess.run([sys.executable, str(BENCHMARKS / "pt2e_int8.py"), *argv],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    (cell,) = json.loads(out.read_text())["cells"]
    want = {"pt2e-int8", "onnxruntime", "onnxruntime-int8"}
    if _installed("openvino") and _installed("nncf"):  # NNCF's int8 IR joins where it can run
        want.add("openvino-int8")
    assert set(cell["contenders"]) == want
    scale = max(1.0, cell["output_scale"])
    # int8 is held to export's int8 tolerance (0.25 x the output scale); fp32 ORT to float error
    for name in want - {"onnxruntime"}:
        assert cell["contenders"][name]["max_abs_diff_vs_eager"] <= 0.25 * scale, name
    assert cell["contenders"]["onnxruntime"]["max_abs_diff_vs_eager"] <= 1e-4 * scale
    assert all(c["ms_median"] > 0 for c in cell["contenders"].values())
    assert "| resnet20_cifar | 3 |" in run.stdout


def test_without_torchao_it_says_so_in_one_line(monkeypatch, capsys):
    mod = load_benchmark("pt2e_int8")
    monkeypatch.setitem(sys.modules, "torchao", None)  # import torchao raises ImportError
    assert mod.main(["resnet20_cifar", "--tiny", "--rounds", "1", "--batch-sizes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "pt2e_int8: torchao is not installed: pip install 'convzoo[pt2e]'"
