"""Inference runtimes a benchmark cell can run a model on, side by side.

=====================  ==========================================================================
runtime                what runs
=====================  ==========================================================================
``eager``              PyTorch eager, ``inference_mode`` (and BN folding / channels_last if asked)
``compiled``           ``torch.compile`` (``bench.compiled``: inductor, freezing on the CPU)
``onnxruntime``        the model's ONNX export in ONNX Runtime, CPUExecutionProvider,
                       ``ORT_ENABLE_ALL``, ``threads`` intra-op threads (pip ``convzoo[onnx]``)
``openvino``           the same ONNX file in OpenVINO's CPU plugin, f32 precision hint (or the
                       ``dtype``'s), LATENCY hint, ``threads`` threads, reshaped to each batch
                       (``convzoo[openvino]``)
``onnxruntime-int8``   the ONNX file quantized to int8 by ONNX Runtime's quantizer
                       (``bench.quantize.quantize_onnx``: QDQ), in ONNX Runtime
``openvino-int8``      the ONNX file quantized to int8 by OpenVINO's, NNCF
                       (``bench.quantize.quantize_openvino``: IR with FakeQuantize), in OpenVINO
``fast``               convzoo's fastest path for the device (``bench.fast``)
``fast-int8``          the faster of ``onnxruntime-int8`` and ``openvino-int8`` for each input
                       shape, by a short interleaved trial (``bench.fast``; CPU only)
=====================  ==========================================================================

ONNX Runtime and OpenVINO run with their defaults otherwise (a peer measured as a user meets it).

``dtype`` (bench's ``--dtype``) applies to every runtime that has the precision, and each cell
records the one it ran in: the torch runtimes run under autocast; OpenVINO gets it as its
inference precision hint (``bf16`` / ``f16``: the ops it does not quantize run in that type, in the
int8 runtimes too), and the cell records the precision the compiled model reports (OpenVINO keeps
f32 on a CPU without native bf16 / f16); ONNX Runtime's CPU provider has no bfloat16 or float16
path, so under another dtype its runtimes are unavailable, with that reason, rather than timed in
float32 under a bfloat16 heading.

ORT's worker threads spin for a while after each run (``session.intra_op.allow_spinning``, on by
default): timed back to back with another runtime, that spinning steals the next contender's
cores. An ORT engine therefore has ``settle_s``: the runner pauses that long, untimed, after each
ORT block, so the threads park before anything else is timed.

A runtime whose package is missing raises ``RuntimeUnavailable`` with a one-line message naming
the pip extra; the runner records it in the cell instead of failing the run.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from convzoo.bench.compiled import CompiledModel, CompileSettings, compile_inference
from convzoo.bench.fold import fold_batchnorm
from convzoo.bench.measure import capture_cuda_graph

__all__ = [
    "RUNTIMES",
    "Artifacts",
    "Engine",
    "RuntimeOptions",
    "RuntimeUnavailable",
    "TorchEngine",
    "autocast_context",
    "prepare_engine",
    "require",
]

# runtime -> the pip extra that provides it ("" = PyTorch itself)
RUNTIMES: dict[str, str] = {
    "eager": "",
    "compiled": "",
    "onnxruntime": "onnx",
    "openvino": "openvino",
    "onnxruntime-int8": "onnx",
    "openvino-int8": "openvino",
    "fast": "",
    "fast-int8": "",  # the int8 runtimes that are installed (onnx and / or openvino)
}
ORT_SETTLE_S = 0.05  # untimed pause after an ORT block: its spinning threads park well before


class RuntimeUnavailable(ValueError):
    """A runtime whose optional package is not installed."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise ``RuntimeUnavailable`` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeUnavailable(
            f"{module} is not installed: pip install 'convzoo[{extra}]'"
        ) from None


@dataclass(frozen=True)
class RuntimeOptions:
    """How each runtime is set up; every cell records the settings it ran with."""

    threads: int = 2  # intra-op threads of ONNX Runtime and OpenVINO (torch: set by the runner)
    fold_bn: bool = False  # torch runtimes: BatchNorm folded into the convs
    channels_last: bool = False  # torch runtimes: NHWC weights and inputs
    compile: CompileSettings = field(default_factory=CompileSettings)
    ort_spinning: bool = True  # ORT's default; the runner settles after each ORT block
    calibration: Tensor | None = None  # float images for int8 calibration (bench.quantize)
    # how those images were normalized (bench.quantize.normalization_record); int8 cells record it
    calibration_normalization: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"  # bfloat16 / float16: torch autocast, OpenVINO's precision hint


# dtype -> OpenVINO's inference precision hint
OV_PRECISION = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


class Engine:
    """A model prepared on one runtime. ``bind(x)`` converts the input once and returns the
    zero-argument call that is timed; ``run(x)`` returns a torch tensor for output checks."""

    runtime: str
    settings: dict[str, Any]
    settle_s: float = 0.0

    def bind(self, x: Tensor) -> Callable[[], Any]:
        raise NotImplementedError

    def run(self, x: Tensor) -> Tensor:
        raise NotImplementedError


def autocast_context(
    dtype: str, device: torch.device
) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the autocast context for ``dtype`` ("float32": none) on ``device``."""
    if dtype == "float32":
        return contextlib.nullcontext
    cast = {"bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    # No cast cache: a CUDA graph captured with it would replay casts freed after capture (the
    # cache is cleared when each call leaves autocast anyway, so it saves nothing here).
    return lambda: torch.autocast(device.type, dtype=cast, cache_enabled=False)


class TorchEngine(Engine):
    """A PyTorch module or compiled callable; on CUDA, batches up to ``cuda_graph_max_batch``
    replay a captured CUDA graph (0: never)."""

    def __init__(self, runtime: str, fn: Callable[[Tensor], Tensor], settings: dict[str, Any],
                 channels_last: bool) -> None:  # fmt: skip
        self.runtime, self.fn, self.settings = runtime, fn, settings
        self.channels_last = channels_last
        self.autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
        self.cuda_graph_max_batch = 0

    def _call(self, x: Tensor) -> Tensor:
        with torch.inference_mode(), self.autocast():
            return self.fn(x)

    def _input(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def plain(self, x: Tensor) -> Callable[[], Tensor]:
        """The call without CUDA graph replay (a graph allocates its memory at capture)."""
        x = self._input(x)
        return lambda: self._call(x)

    def bind(self, x: Tensor) -> Callable[[], Any]:
        call = self.plain(x)
        if x.is_cuda and x.shape[0] <= self.cuda_graph_max_batch:
            call = capture_cuda_graph(self._call, self._input(x))
            self.settings["cuda_graph"] = True
        return call

    def run(self, x: Tensor) -> Tensor:
        return self.plain(x)().float()


class OrtEngine(Engine):
    def __init__(self, runtime: str, path: Path, opts: RuntimeOptions) -> None:
        ort = require("onnxruntime", "onnx")
        _ort_dtype(runtime, opts.dtype)
        so = ort.SessionOptions()
        so.intra_op_num_threads = opts.threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not opts.ort_spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.runtime = runtime
        self.settle_s = ORT_SETTLE_S if opts.ort_spinning else 0.0
        self.settings = {
            "engine": f"onnxruntime {ort.__version__}",
            "provider": "CPUExecutionProvider",
            "graph_optimization": "ORT_ENABLE_ALL",
            "intra_op_threads": opts.threads,
            "allow_spinning": opts.ort_spinning,
            "settle_s_after_block": self.settle_s,
            "dtype": "float32",
            "model_file": path.name,
        }

    def bind(self, x: Tensor) -> Callable[[], Any]:
        feed = {self.input_name: x.contiguous().numpy()}
        return lambda: self.session.run(None, feed)

    def run(self, x: Tensor) -> Tensor:
        return torch.from_numpy(np.asarray(self.bind(x)()[0]))


def _ort_dtype(runtime: str, dtype: str) -> None:
    if dtype != "float32":
        raise RuntimeUnavailable(
            f"{runtime} runs float32 only: ONNX Runtime's CPU provider has no {dtype} path "
            "(--dtype applies to eager, compiled and the openvino runtimes)"
        )


class OpenVinoEngine(Engine):
    """One compiled model per input shape (OpenVINO is fastest with static shapes)."""

    def __init__(self, runtime: str, path: Path, opts: RuntimeOptions) -> None:
        self.ov = require("openvino", "openvino")
        self.core = self.ov.Core()
        self.path, self.runtime = path, runtime
        self.config = {
            "INFERENCE_PRECISION_HINT": OV_PRECISION[opts.dtype],
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": opts.threads,
        }
        self.requests: dict[tuple[int, ...], Any] = {}
        self.settings = {
            "engine": f"openvino {self.ov.__version__.split('-')[0]}",
            "device": "CPU",
            **{k.lower(): v for k, v in self.config.items()},
            "static_shape": True,
            "model_file": path.name,
        }

    def _request(self, shape: tuple[int, ...]) -> Any:
        if shape not in self.requests:
            model = self.core.read_model(str(self.path))
            model.reshape({model.inputs[0].get_any_name(): list(shape)})
            compiled = self.core.compile_model(model, "CPU", self.config)
            # What the plugin made of the hint (f32 where the CPU lacks the asked type).
            ran = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
            self.settings["inference_precision"] = ran
            self.requests[shape] = compiled.create_infer_request()
        return self.requests[shape]

    def bind(self, x: Tensor) -> Callable[[], Any]:
        request, feed = self._request(tuple(x.shape)), {0: x.contiguous().numpy()}
        return lambda: request.infer(feed)

    def run(self, x: Tensor) -> Tensor:
        request = self._request(tuple(x.shape))
        request.infer({0: x.contiguous().numpy()})
        return torch.from_numpy(np.array(request.get_output_tensor(0).data))


class Artifacts:
    """Files one model's engines share, made on first use: its fp32 ONNX export and the int8
    quantization of it. Kept in ``folder`` (a temporary one by default); with ``reuse``, files
    already in ``folder`` are taken as they are (a benchmark resumed for the same weights)."""

    def __init__(self, model: nn.Module, example: Tensor, opts: RuntimeOptions,
                 folder: str | Path | None = None, reuse: bool = False) -> None:  # fmt: skip
        self.model, self.example, self.opts, self.reuse = model, example, opts, reuse
        self._tmp = None if folder is not None else tempfile.TemporaryDirectory(prefix="convzoo-")
        self.folder = Path(folder if folder is not None else self._tmp.name)  # type: ignore[union-attr]
        self._onnx: Path | None = None
        self._int8: dict[str, Path] = {}
        self.quantizations: dict[str, dict[str, Any]] = {}

    def onnx(self) -> Path:
        if self._onnx is None:
            from convzoo.interop.export import export_onnx

            self._onnx = self.folder / "model.onnx"
            if not (self.reuse and self._onnx.exists()):
                # Traced at batch 2: the exporter specializes a traced size of 1, which breaks
                # the dynamic batch of some graphs (ConvNeXt's).
                one = self.example[:1]
                export_onnx(self.model.eval(), self._onnx, torch.cat([one, one]))
        return self._onnx

    def int8(self, quantizer: str = "onnxruntime") -> Path:
        """The int8 file of ``quantizer`` ("onnxruntime": a QDQ ONNX file; "openvino": NNCF's IR),
        made on first use; its settings and sizes are ``self.quantizations[quantizer]``."""
        if quantizer not in self._int8:
            from convzoo.bench.quantize import quantize_onnx, quantize_openvino

            if self.opts.calibration is None:
                raise ValueError("int8 runtimes need calibration images (RuntimeOptions)")
            if quantizer == "onnxruntime":
                path, quantize = self.folder / "model-int8.onnx", quantize_onnx
            else:
                path, quantize = self.folder / "model-int8-openvino.xml", quantize_openvino
            info = path.with_suffix(".json")
            if self.reuse and path.exists() and info.exists():
                record = json.loads(info.read_text())
            else:
                record = quantize(self.onnx(), path, self.opts.calibration)
                if self.opts.calibration_normalization:
                    record["calibration_normalization"] = self.opts.calibration_normalization
                info.write_text(json.dumps(record))
            self.quantizations[quantizer] = record
            self._int8[quantizer] = path
        return self._int8[quantizer]

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def torch_engine(
    runtime: str,
    model: nn.Module,
    example: Tensor,
    opts: RuntimeOptions,
    device: torch.device,
) -> TorchEngine:
    """``eager`` or ``compiled``: ``model`` (CPU, float32) folded / moved / compiled per ``opts``."""
    model = model.eval()
    if opts.fold_bn:
        model = fold_batchnorm(model, example[:1].cpu())
    model = model.to(device)
    if opts.channels_last:
        model = model.to(memory_format=torch.channels_last)
    settings: dict[str, Any] = {
        "engine": f"torch {torch.__version__}",
        "fold_bn": opts.fold_bn,
        "memory_format": "channels_last" if opts.channels_last else "contiguous",
        "dtype": opts.dtype + (" (autocast)" if opts.dtype != "float32" else ""),
    }
    fn: Callable[[Tensor], Tensor] = model
    if runtime == "compiled":
        fn = compile_inference(model, device, opts.compile)
        settings.update(compile=opts.compile.backend, fullgraph=True,
                        **opts.compile.inductor_options(device))  # fmt: skip
    engine = TorchEngine(runtime, fn, settings, opts.channels_last)
    engine.autocast = autocast_context(opts.dtype, device)
    return engine


def compiled_model(engine: Engine) -> CompiledModel | None:
    """The ``CompiledModel`` behind a compiled torch engine (its compile times and graphs)."""
    fn = getattr(engine, "fn", None)
    return fn if isinstance(fn, CompiledModel) else None


def prepare_engine(
    runtime: str,
    model: nn.Module,
    example: Tensor,
    opts: RuntimeOptions,
    artifacts: Artifacts,
    device: torch.device | None = None,
) -> Engine:
    """``model`` ready to run on ``runtime``; ``RuntimeUnavailable`` if its package is absent."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    device = device or torch.device("cpu")
    if runtime in ("eager", "compiled"):
        return torch_engine(runtime, model, example, opts, device)
    if runtime == "fast":
        from convzoo.bench.fast import fast_engine

        return fast_engine(model, example, opts, artifacts, device)
    if runtime == "fast-int8":
        from convzoo.bench.fast import fast_int8_engine

        return fast_int8_engine(model, example, opts, artifacts, device)
    if device.type != "cpu":
        raise ValueError(f"runtime {runtime} runs on the CPU only, not {device}")
    engine_cls = OrtEngine if runtime.startswith("onnxruntime") else OpenVinoEngine
    require(*(("onnxruntime", "onnx") if engine_cls is OrtEngine else ("openvino", "openvino")))
    if engine_cls is OrtEngine:
        _ort_dtype(runtime, opts.dtype)  # before any export or quantization is made for it
    if runtime.endswith("-int8"):
        # Each runtime's own quantizer: ONNX Runtime's (which also needs onnx), or NNCF.
        quantizer = "onnxruntime" if engine_cls is OrtEngine else "openvino"
        require(*(("onnx", "onnx") if engine_cls is OrtEngine else ("nncf", "openvino")))
        engine = engine_cls(runtime, artifacts.int8(quantizer), opts)
        engine.settings.update(artifacts.quantizations[quantizer])
        return engine
    return engine_cls(runtime, artifacts.onnx(), opts)
