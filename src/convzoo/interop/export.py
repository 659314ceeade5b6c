"""Exporting a model to ONNX or a ``torch.export`` program, checked against PyTorch.

Both formats are exported with a dynamic batch dimension (height and width fixed at the export
size) in eval mode, and then run again on a batch of a different size: ONNX through onnxruntime,
the ``torch.export`` program through ``torch.export.load``. Outputs must agree with the PyTorch
model to ``atol = rtol = 1e-4``; otherwise, or when the exporter cannot handle the model, an
``ExportError`` says which model, which format and why.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from convzoo.registry import create_model, get_entry

__all__ = ["FORMATS", "ExportError", "ExportResult", "export_model", "export_registered"]

FORMATS = ("onnx", "torch-export")


class ExportError(ValueError):
    """A model that cannot be exported (or whose export does not reproduce its outputs)."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float  # largest |exported - PyTorch| over the check batch
    check_batch_size: int


def _onnx(model: nn.Module, x: Tensor, path: Path, batch: torch.export.Dim) -> None:
    # The exporter reports progress on stdout; a library call should not.
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=True,
            dynamic_shapes=({0: batch},),
            input_names=["input"],
            output_names=["logits"],
            verbose=False,
        )


def _run_onnx(path: Path, x: Tensor) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def export_model(
    model: nn.Module,
    format: str,
    output: str | Path,
    *,
    input_size: int,
    in_channels: int = 3,
    name: str | None = None,
    atol: float = 1e-4,
) -> ExportResult:
    """Export ``model`` (moved to CPU, eval mode) to ``output`` and check the exported outputs."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    label = name or getattr(model, "model_name", type(model).__name__)
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, in_channels, input_size, input_size, generator=gen)
    # A different batch size than the export's proves the batch dimension is really dynamic.
    check = torch.randn(3, in_channels, input_size, input_size, generator=gen)
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        if format == "onnx":
            _onnx(model, x, path, batch)
            got = torch.from_numpy(_run_onnx(path, check))
        else:
            program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
            torch.export.save(program, str(path))
            with torch.no_grad():
                got = torch.export.load(str(path)).module()(check)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ExportError(
            f"{label} cannot be exported to {format}: {type(err).__name__}: {first[:500]}"
        ) from err
    with torch.no_grad():
        want = model(check)
    if got.shape != want.shape:
        raise ExportError(
            f"{label} exported to {format} returns shape {tuple(got.shape)}, PyTorch {tuple(want.shape)}"
        )
    diff = (got - want).abs().max().item()
    if not torch.allclose(got, want, atol=atol, rtol=atol):
        raise ExportError(
            f"{label} exported to {format} disagrees with PyTorch: max |diff| {diff:.3g} > {atol}"
        )
    return ExportResult(path, format, diff, check.shape[0])


def export_registered(
    name: str,
    format: str,
    output: str | Path,
    *,
    tiny: bool = False,
    input_size: int | None = None,
    atol: float = 1e-4,
) -> ExportResult:
    """Export a registered model (random weights; full size, or its ``Tiny`` overrides)."""
    entry = get_entry(name)
    overrides = dict(entry.tiny.overrides) if tiny else {}
    size = input_size or (entry.tiny.input_size if tiny else entry.info.input_size)
    model = create_model(name, **overrides)
    return export_model(
        model,
        format,
        output,
        input_size=size,
        in_channels=entry.info.in_channels,
        name=name,
        atol=atol,
    )
