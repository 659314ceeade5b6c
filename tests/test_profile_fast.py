"""benchmarks/profile_fast.py: ops are sorted into the right kinds, and the ORT profile of a real
session is read and split so that the kinds add up to the call's wall time."""

from __future__ import annotations

import torch
from torch import nn

from conftest import load_benchmark


def _load():
    return load_benchmark("profile_fast")


def test_ops_are_sorted_into_kinds():
    mod = _load()
    torch_names = {
        "mkldnn::_convolution_pointwise": "conv",
        "mkldnn::_convolution_pointwise_": "conv",
        "graph_0_cpp_fused_addmm_as_strided_view_1": "fused elementwise",  # not matmul
        "cpp_fused_cat_clone_7": "fused elementwise",
        "mkl::_mkl_linear": "matmul",
        "aten::addmm": "matmul",
        "aten::copy_": "data movement",
        "TorchDynamo Cache Lookup": "framework",
        "## Call CompiledFxGraph fxabc ##": "framework",
        "aten::max_pool2d_with_indices": "pool",
        "aten::resize_": "other",
    }
    assert {n: mod.torch_kind(n) for n in torch_names} == torch_names
    ort_names = {"FusedConv": "conv", "Gemm": "matmul", "Concat": "data movement",
                 "Transpose": "data movement", "GlobalAveragePool": "pool",
                 "QuickGelu": "fused elementwise"}  # fmt: skip
    assert {n: mod.ort_kind(n) for n in ort_names} == ort_names


def test_ort_profile_of_a_real_session_adds_up(tmp_path):
    from convzoo.interop.export import export_onnx

    mod = _load()
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 7 * 7, 10)
    ).eval()
    x = torch.randn(2, 3, 16, 16)
    export_onnx(model, tmp_path / "m.onnx", x)
    result = mod.profile_ort(tmp_path / "m.onnx", x, threads=1, iters=4)
    kinds = result["kinds_ms"]
    assert set(kinds) == set(mod.KINDS)
    assert kinds["conv"] > 0 and kinds["matmul"] > 0 and min(kinds.values()) >= 0
    inside = sum(v for k, v in kinds.items() if k != "outside ops")
    assert abs(inside - result["ops_ms"]) < 1e-9
    assert kinds["outside ops"] == max(result["wall_ms"] - inside, 0.0)
    assert not list(tmp_path.glob("ort_profile*"))  # the trace files are removed
    text = mod.table([{"model": "m", "batch_size": 2, "inductor": result, "onnxruntime": result}])
    assert "| conv |" in text and "1.00x" in text
