"""Latency against batch size on one or more runtimes, throughput, peak memory and training-step
cost of models.

Units (every field name carries its unit; ``UNITS`` spells them out): latency in milliseconds per
image (the time of one batch divided by its size), throughput in images per second, memory in MiB
(2**20 bytes), MACs in multiply-adds per image, compile time in seconds.

Timing: at each batch size every runtime (``bench.runtimes``) is prepared, warmed up with
``warmup`` untimed calls, then timed in ``repeats`` interleaved rounds (``measure.
time_interleaved``): each round times one repeat of every runtime, a repeat being enough
back-to-back calls to last ``min_repeat_s``. We report the median over repeats and their spread
(25th and 75th percentiles, min, max). Each cell records its runtime, the settings it ran with,
and the largest difference of its outputs from eager PyTorch on the same input.

Peak memory is the peak of allocated tensor memory during one call ABOVE what was allocated just
before it (so weights and the input batch are not counted, activations and workspaces are); see
``measure.peak_memory_bytes`` for how it is read on CUDA and on the CPU. Runtimes outside PyTorch
(ONNX Runtime, OpenVINO) allocate where PyTorch cannot see: their cells record no memory.

A cell that does not fit records "OOM" (``torch.OutOfMemoryError``, or a measured peak above the
simulated cap ``memory_cap_mib``) and the run goes on; a runtime whose package is missing records
"unavailable" and its one-line reason; other errors record "error" in the cell and their message
in the model's ``errors``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convzoo.bench.compare import model_sizes
from convzoo.bench.counts import count_macs, count_params, count_stage_macs
from convzoo.bench.measure import MIB, peak_memory_bytes, time_calls, time_interleaved, timing_stats
from convzoo.bench.runtimes import (
    Artifacts,
    Engine,
    RuntimeOptions,
    RuntimeUnavailable,
    TorchEngine,
    autocast_context,
    compiled_model,
    prepare_engine,
)
from convzoo.bench.spec import UNITS, BenchConfig, ModelSpec, provenance, registered_spec

__all__ = [
    "UNITS",
    "BenchConfig",
    "ModelSpec",
    "bench_model",
    "bench_models",
    "provenance",
    "registered_spec",
    "train_step",
]

OOM = "OOM"
ERROR = "error"
UNAVAILABLE = "unavailable"
INFER_KEYS = ("infer_ms_per_image", "infer_images_per_s", "infer_peak_mem_mib")


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _check_cap(peak: int, cfg: BenchConfig, what: str) -> None:
    if cfg.memory_cap_mib is not None and peak > cfg.memory_cap_mib * MIB:
        raise torch.OutOfMemoryError(
            f"{what}: peak {peak / MIB:.1f} MiB exceeds the simulated cap {cfg.memory_cap_mib} MiB"
        )


@dataclass
class _Model:
    """One model's benchmark state: its engines per runtime and what went wrong."""

    spec: ModelSpec
    cfg: BenchConfig
    device: torch.device
    artifacts: Artifacts
    engines: dict[str, Engine | str] = field(default_factory=dict)  # str: why not available
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _options(
    cfg: BenchConfig, calibration: Tensor | None, normalization: dict[str, Any]
) -> RuntimeOptions:
    return RuntimeOptions(
        threads=cfg.threads or torch.get_num_threads(),
        fold_bn=cfg.fold_bn,
        channels_last=cfg.channels_last,
        calibration=calibration,
        calibration_normalization=normalization,
        dtype=cfg.dtype,
    )


def _engine(state: _Model, runtime: str, model: nn.Module, opts: RuntimeOptions) -> Engine | str:
    """The prepared engine of ``runtime``, or the one-line reason it cannot run."""
    if runtime not in state.engines:
        example = torch.zeros(
            1, state.spec.in_channels, state.spec.input_size, state.spec.input_size
        )
        try:
            engine = prepare_engine(runtime, model, example, opts, state.artifacts, state.device)
            # (a torch engine's autocast comes from opts.dtype; fast decides on graphs itself)
            if isinstance(engine, TorchEngine) and state.cfg.cuda_graphs and runtime != "fast":
                engine.cuda_graph_max_batch = state.cfg.cuda_graph_max_batch
            state.engines[runtime] = engine
        except RuntimeUnavailable as err:
            state.engines[runtime] = str(err)
            state.notes.append(f"{runtime}: {err}")
    return state.engines[runtime]


def _failed(state: _Model, runtime: str, what: str, err: BaseException) -> dict[str, Any]:
    _free(state.device)
    if _is_oom(err):
        state.notes.append(f"{runtime} {what}: OOM ({str(err).splitlines()[0][:200]})")
        return dict.fromkeys(INFER_KEYS, OOM)
    state.errors.append(f"{runtime} {what}: {type(err).__name__}: {str(err)[:400]}")
    return dict.fromkeys(INFER_KEYS, ERROR)


def _ready_cell(
    state: _Model, engine: Engine, x: Tensor, reference: Tensor
) -> tuple[Callable[[], Any], dict[str, Any]]:
    """Bind ``engine`` to ``x`` (compiling, capturing, converting as it needs), check its outputs
    against eager, and measure its peak memory: everything before the timed rounds."""
    batch = x.shape[0]
    out = engine.run(x)  # the first call at this shape: compiles, where the engine compiles
    call = engine.bind(x)
    cell: dict[str, Any] = {"settings": dict(engine.settings)}
    compiled = compiled_model(engine)
    if compiled is not None:
        shape = tuple(x.shape)
        cell["compile_s"] = compiled.compile_s[shape]
        cell["settings"]["graphs_compiled"] = compiled.graphs[shape]
    cell["max_abs_diff_vs_eager"] = (out.float().cpu() - reference).abs().max().item()
    if isinstance(engine, TorchEngine):
        peak = peak_memory_bytes(engine.plain(x), state.device)
        _check_cap(peak, state.cfg, f"{engine.runtime} inference at batch {batch}")
        cell["infer_peak_mem_mib"] = peak / MIB
    else:
        cell["infer_peak_mem_mib"] = None
    return call, cell


def _infer_batch(
    state: _Model, model: nn.Module, opts: RuntimeOptions, batch: int
) -> list[dict[str, Any]]:
    """One row per runtime at ``batch``, timed in interleaved rounds."""
    spec, cfg, device = state.spec, state.cfg, state.device
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, spec.in_channels, spec.input_size, spec.input_size, generator=gen)
    rows: dict[str, dict[str, Any]] = {}
    calls: dict[str, Callable[[], Any]] = {}
    settle: dict[str, float] = {}
    reference: Tensor | None = None
    for runtime in cfg.runtimes:
        rows[runtime] = {"batch_size": batch, "runtime": runtime}
        engine = _engine(state, runtime, model, opts)
        if isinstance(engine, str):
            rows[runtime].update({**dict.fromkeys(INFER_KEYS, UNAVAILABLE), "unavailable": engine})
            continue
        try:
            if reference is None:  # eager float32 on the CPU: what every runtime should give
                with torch.inference_mode():
                    reference = model.eval()(x).float()
            calls[runtime], cell = _ready_cell(state, engine, x.to(device), reference)
            rows[runtime].update(cell)
            settle[runtime] = engine.settle_s
        except Exception as err:
            rows[runtime].update(_failed(state, runtime, f"at batch {batch}", err))
    if calls:
        try:
            times = time_interleaved(calls, device, warmup=cfg.warmup, repeats=cfg.repeats,
                                     min_repeat_s=cfg.min_repeat_s, settle_s=settle)  # fmt: skip
            for runtime, seconds in times.items():
                rows[runtime].update(timing_stats(seconds, batch, "infer"))
        except Exception as err:
            for runtime in calls:
                rows[runtime].update(_failed(state, runtime, f"timing at batch {batch}", err))
    return list(rows.values())


def train_step(
    model: nn.Module, x: Tensor, y: Tensor, autocast: Callable[[], Any]
) -> Callable[[], None]:
    """One SGD-with-momentum training step on a fixed batch (the training cell's timed call)."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def _train_row(state: _Model, model: nn.Module, batch: int) -> dict[str, Any]:
    spec, cfg, device = state.spec, state.cfg, state.device
    x = torch.randn(batch, spec.in_channels, spec.input_size, spec.input_size, device=device)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, max(spec.num_classes, 1), (batch,), device=device)
    step = train_step(model, x, y, autocast_context(cfg.dtype, device))

    row: dict[str, Any] = {"batch_size": batch, "runtime": "train (eager)"}
    try:
        step()  # creates gradients and momentum buffers: the steady state a training run is in
        peak = peak_memory_bytes(step, device)
        _check_cap(peak, cfg, f"training at batch {batch}")
        times = time_calls(step, device, warmup=cfg.warmup, repeats=cfg.repeats,
                           min_repeat_s=cfg.min_repeat_s)  # fmt: skip
        row.update(timing_stats(times, batch, "train"), train_peak_mem_mib=peak / MIB)
    except Exception as err:
        _free(device)
        if not _is_oom(err):
            state.errors.append(f"training at batch {batch}: {type(err).__name__}: {err}")
        else:
            state.notes.append(f"training at batch {batch}: OOM ({str(err).splitlines()[0][:200]})")
        row.update(dict.fromkeys(("train_ms_per_image", "train_peak_mem_mib"),
                                 OOM if _is_oom(err) else ERROR))  # fmt: skip
    return row


def _counts(spec: ModelSpec, model: nn.Module) -> dict[str, Any]:
    meta = copy.deepcopy(model).to("meta")  # counting on meta costs no arithmetic
    example = torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size)
    return {
        "model": spec.name,
        "params": count_params(model),
        "params_trainable": count_params(model, trainable_only=True),
        "macs": count_macs(meta, spec.input_size, spec.in_channels),
        "macs_per_stage": count_stage_macs(meta, spec.input_size, spec.in_channels),
        **model_sizes(meta, example),
        "input_size": spec.input_size,
        "accuracy_top1_pct": spec.accuracy,
        "accuracy_source": spec.accuracy_source,
        "accuracy_dataset": spec.accuracy_dataset,
    }


def _throughput(result: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The best images/s at the largest batch size where any runtime fitted."""
    fitted = [r for r in rows if isinstance(r.get("infer_images_per_s"), float)]
    best = max(fitted, key=lambda r: (r["batch_size"], r["infer_images_per_s"]), default=None)
    result["throughput_images_per_s"] = best["infer_images_per_s"] if best else OOM
    result["throughput_batch_size"] = best["batch_size"] if best else None
    result["throughput_runtime"] = best["runtime"] if best else None


def bench_model(
    spec: ModelSpec,
    cfg: BenchConfig,
    progress: Callable[[str], None] | None = None,
    calibration: Tensor | None = None,
) -> dict[str, Any]:
    """Counts and measurements of one model; see the module docstring for units and method.
    ``calibration``: images for the int8 runtimes (default: ``cfg.calibration_data``, normalized
    as the model expects where it records how, ``quantize.model_normalization``)."""
    device = torch.device(cfg.device)
    _apply_threads(cfg)
    model = spec.build().eval()
    result = _counts(spec, model)
    normalization: dict[str, Any] = {"source": "images given to bench_model"}
    if calibration is None and any(r.endswith("-int8") for r in cfg.runtimes):
        from convzoo.bench.quantize import (
            calibration_images,
            model_normalization,
            normalization_record,
        )

        norm = model_normalization(model)
        calibration = calibration_images(cfg.calibration_data, size=spec.input_size,
                                         count=cfg.calibration_images,
                                         normalization=norm)  # fmt: skip
        normalization = normalization_record(norm)
    opts = _options(cfg, calibration, normalization)
    example = torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size)
    state = _Model(spec, cfg, device, Artifacts(model, example, opts))
    rows: list[dict[str, Any]] = []
    try:
        for batch in cfg.batch_sizes:
            if progress:
                progress(f"{spec.name}: inference, batch {batch}")
            rows += _infer_batch(state, model, opts, batch)
    finally:
        state.engines.clear()
        state.artifacts.close()
        _free(device)
    if cfg.train:
        train_model = model.to(device).train()
        if cfg.channels_last:
            train_model = train_model.to(memory_format=torch.channels_last)
        for batch in cfg.batch_sizes:
            if progress:
                progress(f"{spec.name}: training step, batch {batch}")
            rows.append(_train_row(state, train_model, batch))
        _free(device)
    _throughput(result, rows)
    compile_times = [r["compile_s"] for r in rows if isinstance(r.get("compile_s"), float)]
    result["compile_s"] = sum(compile_times) if compile_times else None
    result["batches"] = rows
    result["notes"] = state.notes
    result["errors"] = state.errors
    return result


def _apply_threads(cfg: BenchConfig) -> None:
    if cfg.threads is not None and torch.device(cfg.device).type == "cpu":
        torch.set_num_threads(cfg.threads)


def bench_models(
    specs: list[ModelSpec],
    cfg: BenchConfig,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole report: provenance, units, one entry per model."""
    _apply_threads(cfg)  # before provenance, which records the thread count
    report = {"provenance": provenance(cfg), "units": UNITS, "models": []}
    for spec in specs:
        report["models"].append(bench_model(spec, cfg, progress))
    return report
