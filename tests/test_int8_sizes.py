"""benchmarks/int8_sizes.py: a trained net's folded biases make its int8 file larger than the
freshly initialized net's, which `export --int8` would report."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from conftest import load_benchmark
from convzoo.interop.export import export_onnx
from convzoo.registry import create_model, get_entry

pytest.importorskip("onnxruntime")


def _conv_biases(path) -> int:
    graph = onnx.load(str(path)).graph
    return sum(len(n.input) == 3 and n.input[2] != "" for n in graph.node if n.op_type == "Conv")


def test_bn_statistics_give_every_folded_conv_a_bias(tmp_path):
    mod = load_benchmark("int8_sizes")
    entry = get_entry("resnet20_cifar")
    model = create_model("resnet20_cifar", **entry.tiny.overrides).eval()
    x = torch.randn(1, 3, 32, 32)
    export_onnx(model, tmp_path / "init.onnx", x)
    changed = mod.give_bn_statistics(model)
    assert changed == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 0
    export_onnx(model, tmp_path / "bn.onnx", x)
    # as initialized every folded bias is zero and the export drops it
    assert _conv_biases(tmp_path / "init.onnx") == 0
    assert _conv_biases(tmp_path / "bn.onnx") == changed


def test_the_int8_file_grows_with_the_biases_and_json_is_written(tmp_path, capsys):
    mod = load_benchmark("int8_sizes")
    out = tmp_path / "sizes.json"
    assert mod.main(["resnet20_cifar", "--tiny", "--output", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["bn_statistics"]["int8_mb"] > row["initialized"]["int8_mb"]
    assert row["bn_statistics"]["smaller"] < row["initialized"]["smaller"]
    assert "| resnet20_cifar |" in capsys.readouterr().out


def test_an_unknown_model_is_one_line(capsys):
    mod = load_benchmark("int8_sizes")
    assert mod.main(["no_such_net"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "int8_sizes: unknown model(s): no_such_net"
