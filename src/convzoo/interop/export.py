"""Exporting a model to ONNX or a ``torch.export`` program, checked against PyTorch.

Both formats are exported in eval mode with a dynamic batch dimension (height and width fixed at
the export size; a fixed batch of 2 where the graph depends on the batch size), and run again:
ONNX through onnxruntime, the ``torch.export`` program through ``torch.export.load``. Outputs
must agree with the PyTorch model to ``atol = rtol = 1e-4``; otherwise, or when the exporter
cannot handle the model, an ``ExportError`` says which model, which format and why.
"""

from __future__ import annotations

import contextlib
import io
import re
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
    dynamic_batch: bool  # False: exported for batch size 2 only (``note`` says why)
    note: str = ""


def _onnx(model: nn.Module, x: Tensor, path: Path, dynamic: dict | None) -> None:
    # The exporter reports progress on stdout; a library call should not.
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=True,
            dynamic_shapes=(dynamic,) if dynamic else None,
            input_names=["input"],
            output_names=["logits"],
            verbose=False,
        )


def _run_onnx(path: Path, x: Tensor) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _reason(err: BaseException) -> str:
    """The root cause of an exporter failure, on one line: the exporters wrap the real error
    (an unsupported op, a data-dependent branch) in several layers of generic advice."""
    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(root)).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(root).__name__}: {first[:400]}"


def _export(model: nn.Module, fmt: str, path: Path, x: Tensor, check: Tensor, dynamic) -> Tensor:
    if fmt == "onnx":
        _onnx(model, x, path, dynamic)
        return torch.from_numpy(_run_onnx(path, check))
    program = torch.export.export(model, (x,), dynamic_shapes=(dynamic,) if dynamic else None)
    torch.export.save(program, str(path))
    with torch.no_grad():
        return torch.export.load(str(path)).module()(check)


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
    """Export ``model`` (moved to CPU, eval mode) to ``output`` and check the exported outputs.

    The batch dimension is dynamic where the exporter allows it; a model whose graph depends on
    the batch size (a conv whose ``groups`` is batch x channels, as in per-sample dynamic
    filters) is exported again for a fixed batch of 2, and the result says so.
    """
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
    dynamic, note = {0: torch.export.Dim("batch", min=1, max=4096)}, ""
    try:
        got = _export(model, format, path, x, check, dynamic)
    except Exception as err:
        note = f"batch size fixed at 2: a dynamic batch failed with {_reason(err)}"
        check = torch.randn(2, in_channels, input_size, input_size, generator=gen)
        dynamic = None
        try:
            got = _export(model, format, path, x, check, None)
        except Exception as err2:
            raise ExportError(f"{label} cannot be exported to {format}: {_reason(err2)}") from err2
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
    return ExportResult(path, format, diff, check.shape[0], dynamic is not None, note)


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
