"""Exporting a model to a deployable file, checked against PyTorch; and ``convzoo export``.

Formats (eval mode; batch dimension dynamic, height and width fixed at the export size; a fixed
batch of 2 where the graph depends on the batch size):

- ``onnx``: ``torch.onnx.export`` (dynamo exporter), run again in ONNX Runtime;
- ``openvino``: the ONNX export converted to OpenVINO IR (``.xml`` + ``.bin``), run in OpenVINO;
  weights stay float32 (``ov.save_model`` would store them as float16 by default);
- ``torch-export``: a ``torch.export`` program (``.pt2``), run through ``torch.export.load``;
- ``aoti``: an AOTInductor package (``.pt2``: compiled C++ with the weights, freezing on),
  run through ``torch._inductor.aoti_load_package``.

ONNX files carry no exporter debug records: the dynamo exporter annotates every node with the
Python stack trace, FX node, module class path and name scope it came from (about 1.4 kB a node,
with the absolute paths of the exporting machine's source files and site-packages). They are
removed before the file is written (``strip_debug_metadata``): a deployable file should not
disclose where it was built, and for a small model they were a tenth of the fp32 file and a
quarter of the int8 one (ResNet-20 for CIFAR: 0.117 of 1.190 MB, 0.10 of 0.377 MB).

``int8=True`` (onnx and openvino) quantizes the ONNX export with the format's own runtime's
quantizer (``bench.quantize``: ONNX Runtime's for onnx, NNCF for openvino) on calibration images
(the digits, or ``calibration_data``) and reports both file sizes. An int8 ONNX file gets 7-bit
weights unless ``int8_full_range``: a deployable file travels to CPUs other than the one that
wrote it, and on one without VNNI ONNX Runtime's u8 x s8 kernels add pairs of products in 16
bits, where full 8-bit weights can saturate (``bench.quantize``). The full range is for a file
that will only run on CPUs with VNNI; what 7 bits cost there is measured in BENCHMARKS.md
(section 9, "int8 accuracy"). ``bench``'s int8 cells run where they are made and keep the range
right for this CPU.

The check runs the exported file on a batch of another size than the export's and compares with
the PyTorch model. The tolerance is absolute and scaled to the outputs' magnitude:
``max |exported - PyTorch| <= atol * max(1, max |PyTorch|)`` (float32 kernels differ in
summation order, an error that grows with the values summed). int8 outputs are compared on
calibration images, whose ranges the quantizer saw, with ``int8_atol`` on the same scale.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from convzoo.bench.runtimes import (
    OpenVinoEngine,
    OrtEngine,
    RuntimeOptions,
    RuntimeUnavailable,
    require,
)
from convzoo.cliutil import (
    UsageError,
    add_command,
    add_config_flags,
    given_fields,
    option,
    validate_config,
)
from convzoo.registry import create_model, get_entry

__all__ = [
    "FORMATS",
    "ExportConfig",
    "ExportError",
    "ExportResult",
    "add_commands",
    "export_model",
    "export_onnx",
    "export_registered",
    "strip_debug_metadata",
]

FORMATS = ("onnx", "openvino", "torch-export", "aoti")
# OpenVINO's CPU plugin runs its own conv kernels (other blocking, other summation order): on a
# tiny NiN its outputs differ from PyTorch's by 1.0e-4, where ONNX Runtime's differ by ~1e-8.
FP32_ATOL = {"onnx": 1e-4, "torch-export": 1e-4, "aoti": 1e-4, "openvino": 1e-3}
INT8_FORMATS = ("onnx", "openvino")


class ExportError(ValueError):
    """A model that cannot be exported (or whose export does not reproduce its outputs)."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float  # largest |exported - PyTorch| over the check batch
    tolerance: float  # the absolute tolerance it was held to (atol x output scale)
    check_batch_size: int
    dynamic_batch: bool  # False: exported for batch size 2 only (``note`` says why)
    note: str = ""
    quantization: dict[str, Any] = field(default_factory=dict)  # int8: settings, sizes in MB


@dataclass(frozen=True)
class ExportConfig:
    """``convzoo export``: one registered model (random weights) to one file. The command's
    flags are generated from these fields (``cliutil``)."""

    model: str
    output: Path
    format: str = option("onnx", choices=FORMATS)
    int8: bool = False  # static int8 quantization (onnx, openvino)
    # onnx int8: full 8-bit weights, for CPUs with VNNI only (without it ONNX Runtime's kernels
    # can saturate); by default 7-bit weights, accurate on any x86 CPU the file is taken to
    int8_full_range: bool = False
    tiny: bool = False  # the registered Tiny config (smoke runs)
    input_size: int | None = option(None, low=1)  # pixels; default: the model's
    calibration_data: str | None = None  # int8: a CIFAR or image folder; default: the digits
    calibration_images: int = option(64, low=1)  # int8: images read for calibration
    atol: float | None = option(None, above=0)  # fp32 check x max(1, max|out|); FP32_ATOL[format]
    int8_atol: float = option(0.25, above=0)  # int8 check, times max(1, max |output|)

    def __post_init__(self) -> None:
        validate_config(self)
        if self.int8 and self.format not in INT8_FORMATS:
            raise UsageError(f"int8 export is for {' and '.join(INT8_FORMATS)}, not {self.format}")
        if self.int8_full_range and not (self.int8 and self.format == "onnx"):
            raise UsageError("--int8-full-range is for --format onnx --int8 (ONNX Runtime's "
                             "quantizer); OpenVINO's NNCF chooses its own weight range")  # fmt: skip


def strip_debug_metadata(graph: Any) -> int:
    """Remove the exporter's per-node debug records (``metadata_props``, ``doc_string``) from an
    ``onnx`` GraphProto, in place, subgraphs included; returns how many nodes carried any."""
    stripped = 0
    for node in graph.node:
        if len(node.metadata_props) or node.doc_string:
            stripped += 1
        del node.metadata_props[:]
        node.doc_string = ""
        for attr in node.attribute:
            for sub in [attr.g, *attr.graphs] if attr.HasField("g") else attr.graphs:
                stripped += strip_debug_metadata(sub)
    return stripped


def export_onnx(model: nn.Module, path: Path, x: Tensor, dynamic_batch: bool = True) -> None:
    """``model`` to an ONNX file at ``path``, traced with ``x`` (the batch dynamic if asked),
    without the exporter's debug records (``strip_debug_metadata``)."""
    import onnx

    dynamic = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    # The exporter reports progress on stdout; a library call should not.
    with contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(
            model,
            (x,),
            None,
            dynamo=True,
            dynamic_shapes=dynamic,
            input_names=["input"],
            output_names=["logits"],
            verbose=False,
        )
    assert program is not None
    proto = program.model_proto
    strip_debug_metadata(proto.graph)
    for function in proto.functions:
        strip_debug_metadata(function)
    # One self-contained file (the models are far below protobuf's 2 GB).
    onnx.save_model(proto, str(path))


def _reason(err: BaseException) -> str:
    """The root cause of an exporter failure, on one line: the exporters wrap the real error
    (an unsupported op, a data-dependent branch) in several layers of generic advice."""
    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(root)).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(root).__name__}: {first[:400]}"


def _to_openvino(onnx_path: Path, path: Path) -> None:
    ov = require("openvino", "openvino")
    # ov.save_model stores weights as float16 unless told otherwise; a float32 export keeps them
    # float32, bit for bit the ONNX file's (the CPU plugin would run f32 on rounded weights).
    ov.save_model(
        ov.convert_model(str(onnx_path)), str(path.with_suffix(".xml")), compress_to_fp16=False
    )


def _run(fmt: str, path: Path, x: Tensor) -> Tensor:
    """Outputs of the exported file at ``path`` on ``x``."""
    if fmt == "onnx":
        return OrtEngine("onnxruntime", path, RuntimeOptions()).run(x)
    if fmt == "openvino":
        return OpenVinoEngine("openvino", path.with_suffix(".xml"), RuntimeOptions()).run(x)
    with torch.no_grad():
        if fmt == "torch-export":
            return torch.export.load(str(path)).module()(x)
        return torch._inductor.aoti_load_package(str(path))(x)


def _write(model: nn.Module, cfg: ExportConfig, path: Path, x: Tensor, dynamic: bool,
           calibration: Tensor | None) -> dict[str, Any]:  # fmt: skip
    """Write ``path`` in ``cfg.format``; returns the int8 settings and sizes (empty for fp32)."""
    if cfg.format in ("onnx", "openvino"):
        plain_onnx = cfg.format == "onnx" and not cfg.int8
        fp32 = path if plain_onnx else path.with_suffix(".fp32.onnx")
        quant: dict[str, Any] = {}
        try:
            export_onnx(model, fp32, x, dynamic)
            if cfg.int8:
                from convzoo.bench.quantize import quantize_onnx, quantize_openvino

                assert calibration is not None
                if cfg.format == "onnx":
                    quant = quantize_onnx(
                        fp32, path, calibration, reduce_range=not cfg.int8_full_range
                    )
                else:  # OpenVINO's own quantizer, NNCF, writes the IR
                    quant = quantize_openvino(fp32, path, calibration)
            elif cfg.format == "openvino":
                _to_openvino(fp32, path)
        finally:
            if fp32 != path:  # the intermediate ONNX file
                fp32.unlink(missing_ok=True)
        return quant
    program = torch.export.export(
        model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},)
        if dynamic else None,
    )  # fmt: skip
    if cfg.format == "torch-export":
        torch.export.save(program, str(path))
    else:
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(path), inductor_configs={"freezing": True}
        )
    return {}


def export_model(
    model: nn.Module,
    cfg: ExportConfig,
    *,
    input_size: int,
    in_channels: int = 3,
    calibration: Tensor | None = None,
) -> ExportResult:
    """Export ``model`` (moved to CPU, eval mode) as ``cfg`` says and check the exported file.

    The batch dimension is dynamic where the exporter allows it; a model whose graph depends on
    the batch size (a conv whose ``groups`` is batch x channels, as in per-sample dynamic
    filters) is exported again for a fixed batch of 2, and the result says so. ``calibration``:
    the int8 calibration images (default: ``cfg.calibration_data`` at ``input_size``).
    """
    path = Path(cfg.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    normalized: dict[str, Any] = {}
    if cfg.int8 and calibration is None:
        from convzoo.bench.quantize import (
            calibration_images,
            model_normalization,
            normalization_record,
        )

        norm = model_normalization(model)
        calibration = calibration_images(
            cfg.calibration_data, size=input_size, count=cfg.calibration_images,
            normalization=norm,
        )  # fmt: skip
        normalized = {"calibration_normalization": normalization_record(norm)}
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, in_channels, input_size, input_size, generator=gen)
    # A different batch size than the export's proves the batch dimension is really dynamic;
    # int8 is checked on images the quantizer calibrated on.
    check = (
        calibration[:3] if calibration is not None else torch.randn(3, *x.shape[1:], generator=gen)
    )
    quant, got, check, note = _export_and_run(model, cfg, path, x, check, calibration)
    if quant:
        quant.update(normalized)
    with torch.no_grad():
        want = model(check)
    diff, tol = _compare(cfg, got, want)
    return ExportResult(path, cfg.format, diff, tol, check.shape[0], not note, note, quant)


def _export_and_run(model: nn.Module, cfg: ExportConfig, path: Path, x: Tensor, check: Tensor,
                    calibration: Tensor | None) -> tuple[dict[str, Any], Tensor, Tensor, str]:  # fmt: skip
    """Export with a dynamic batch and run ``check`` through the file; where that fails, export
    again for the fixed batch of ``x`` and run the first two of ``check``. Returns the int8
    settings, the file's outputs, the input they are of, and why the batch is fixed ("": it is
    not). An exporter or runtime failure becomes an ``ExportError``; a missing runtime does not."""
    try:
        quant = _write(model, cfg, path, x, True, calibration)
        return quant, _run(cfg.format, path, check), check, ""
    except RuntimeUnavailable:
        raise
    except Exception as err:
        note = f"batch size fixed at 2: a dynamic batch failed with {_reason(err)}"
    check = check[:2]
    try:
        quant = _write(model, cfg, path, x, False, calibration)
        return quant, _run(cfg.format, path, check), check, note
    except RuntimeUnavailable:
        raise
    except Exception as err:
        reason = _reason(err)
        raise ExportError(f"{cfg.model} cannot be exported to {cfg.format}: {reason}") from err


def _compare(cfg: ExportConfig, got: Tensor, want: Tensor) -> tuple[float, float]:
    """The exported file's max abs difference from PyTorch and the tolerance it met (see the
    module doc); ``ExportError`` where the shapes differ or the difference is over it."""
    label = cfg.model
    if got.shape != want.shape:
        raise ExportError(f"{label} exported to {cfg.format} returns shape {tuple(got.shape)}, "
                          f"PyTorch {tuple(want.shape)}")  # fmt: skip
    diff = (got.float() - want).abs().max().item()
    scale = max(1.0, want.abs().max().item())
    atol = cfg.atol if cfg.atol is not None else FP32_ATOL[cfg.format]
    tol = (cfg.int8_atol if cfg.int8 else atol) * scale
    if not diff <= tol:  # also catches NaN
        raise ExportError(
            f"{label} exported to {cfg.format}{' int8' if cfg.int8 else ''} disagrees with "
            f"PyTorch: max |diff| {diff:.3g} > tolerance {tol:.3g} (outputs up to {scale:.3g})"
        )
    return diff, tol


def export_registered(cfg: ExportConfig) -> ExportResult:
    """Export a registered model (random weights; full size, or its ``Tiny`` overrides)."""
    entry = get_entry(cfg.model)
    overrides = dict(entry.tiny.overrides) if cfg.tiny else {}
    size = cfg.input_size or (entry.tiny.input_size if cfg.tiny else entry.info.input_size)
    model = create_model(cfg.model, **overrides)
    return export_model(model, cfg, input_size=size, in_channels=entry.info.in_channels)


# ------------------------------------------------------------------------------------------ CLI
def cmd_export(args: argparse.Namespace) -> int:
    cfg = ExportConfig(**given_fields(args, ExportConfig))  # model and output included
    result = export_registered(cfg)
    kind = f"{result.format}{', int8' if cfg.int8 else ''}"
    print(
        f"wrote {result.path} ({kind}); checked at batch {result.check_batch_size}: "
        f"max |exported - PyTorch| = {result.max_abs_diff:.2e} (tolerance {result.tolerance:.2e})"
    )
    q = result.quantization
    if q:
        print(f"int8: {q['size_mb_int8']:.2f} MB, fp32 {q['size_mb_fp32']:.2f} MB "
              f"({q['size_mb_fp32'] / q['size_mb_int8']:.2f}x smaller); {q['weights']} weights, "
              f"{q['calibration_images']} calibration images")  # fmt: skip
        if "calibration_normalization" in q:
            print(f"int8 calibration normalized by {q['calibration_normalization']['source']}")
    if result.note:
        print(f"note: {result.note}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "export", cmd_export, help="export to ONNX, OpenVINO, torch.export or AOTInductor"
    )
    p.add_argument("model")
    p.add_argument("--output", type=Path, required=True, help="file to write")
    add_config_flags(p, ExportConfig, skip=("model", "output"), title="export (ExportConfig)")
