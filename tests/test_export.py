"""Export to ONNX (checked with onnxruntime) and torch.export, or a clear error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convzoo
from convzoo.cli import main
from convzoo.interop.export import ExportError, export_model, export_registered

# A few families in CI (those registered on this branch); every model in the slow test.
CI_MODELS = [
    n
    for n in (
        "nin_cifar",
        "resnet20_cifar",
        "mobilenet_v2",
        "shufflenet_v2_x0_5",
        "densenet40_k12_cifar",
    )
    if n in convzoo.list_models()
]


@pytest.mark.parametrize("name", CI_MODELS)
def test_onnx_matches_pytorch(name, tmp_path):
    result = export_registered(name, "onnx", tmp_path / f"{name}.onnx", tiny=True)
    assert result.path.stat().st_size > 1000
    assert result.max_abs_diff <= 1e-4 and result.check_batch_size == 3


def test_torch_export_matches_pytorch(tmp_path):
    result = export_registered("nin_cifar", "torch-export", tmp_path / "nin.pt2", tiny=True)
    assert result.max_abs_diff <= 1e-4
    program = torch.export.load(str(result.path)).module()
    assert program(torch.randn(5, 3, 16, 16)).shape == (5, 10)


class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # branch on values: no static graph exists
            return x.flatten(1)
        return -x.flatten(1)


def test_unexportable_model_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match=r"datadep cannot be exported to torch-export"):
        export_model(
            DataDependent(), "torch-export", tmp_path / "d.pt2", input_size=4, name="datadep"
        )


def test_cli_export(tmp_path, capsys):
    out = tmp_path / "nin.onnx"
    assert main(["export", "nin_cifar", "--tiny", "--format", "onnx", "--output", str(out)]) == 0
    assert out.exists() and "max |exported - PyTorch|" in capsys.readouterr().out
    assert main(["export", "nin_cifr", "--output", str(out)]) == 2
    assert "nin_cifar" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", convzoo.list_models())
def test_onnx_every_registered_model(name, tmp_path):
    export_registered(name, "onnx", tmp_path / f"{name}.onnx", tiny=True)
