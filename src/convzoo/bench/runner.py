"""Latency against batch size, throughput, peak memory and training-step cost of models.

Units (every field name carries its unit; ``UNITS`` spells them out): latency in milliseconds per
image (the time of one batch divided by its size), throughput in images per second, memory in MiB
(2**20 bytes), MACs in multiply-adds per image, compile time in seconds.

Timing: ``warmup`` untimed calls, then ``repeats`` timed repeats, each of enough back-to-back calls
to last ``min_repeat_s``; the device is synchronized before and after each repeat. We report the
median over repeats and their spread (25th and 75th percentiles, min, max).

Peak memory is the peak of allocated tensor memory during one call ABOVE what was allocated just
before it (so weights and the input batch are not counted, activations and workspaces are). On CUDA
it comes from ``torch.cuda.max_memory_allocated``; on the CPU from the CPU allocator's events in
``torch.profiler`` (``profile_memory=True``): the running sum of their sizes, whose maximum is the
peak. That is allocator bookkeeping, not process RSS.

A cell that does not fit records "OOM" (``torch.OutOfMemoryError``, or a measured peak above the
simulated cap ``memory_cap_mib``) and the run goes on. Other errors record "error" in the cell and
their message in the model's ``errors``.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convzoo.bench.counts import count_macs, count_params, count_stage_macs
from convzoo.bench.fold import fold_batchnorm
from convzoo.registry import create_model, get_entry

__all__ = [
    "UNITS",
    "BenchConfig",
    "ModelSpec",
    "bench_model",
    "bench_models",
    "capture_cuda_graph",
    "peak_memory_bytes",
    "provenance",
    "registered_spec",
    "time_calls",
]

OOM = "OOM"
ERROR = "error"
MIB = 2**20

UNITS: dict[str, str] = {
    "params": "parameters (count)",
    "params_trainable": "parameters (count)",
    "macs": "multiply-adds per image (one multiply-add = 1 MAC = 2 FLOPs)",
    "macs_per_stage": "multiply-adds per image",
    "input_size": "pixels (height = width)",
    "batch_size": "images",
    "infer_ms_per_image": "ms per image, median over repeats",
    "infer_ms_per_image_p25": "ms per image, 25th percentile over repeats",
    "infer_ms_per_image_p75": "ms per image, 75th percentile over repeats",
    "infer_ms_per_image_min": "ms per image, fastest repeat",
    "infer_ms_per_image_max": "ms per image, slowest repeat",
    "infer_images_per_s": "images per second (batch size / median batch time)",
    "infer_peak_mem_mib": "MiB above the level before the call (activations, workspace)",
    "train_ms_per_image": "ms per image for forward + backward + SGD step, median over repeats",
    "train_ms_per_image_p25": "ms per image, 25th percentile",
    "train_ms_per_image_p75": "ms per image, 75th percentile",
    "train_peak_mem_mib": "MiB above the level before the step (activations, gradients, momentum)",
    "compile_s": "seconds for the first compiled call (compilation + one run), not in latency",
    "throughput_images_per_s": "images per second at the largest batch size that fit",
    "accuracy_top1_pct": "top-1 accuracy in percent",
}


@dataclass(frozen=True)
class BenchConfig:
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    device: str = "cpu"
    dtype: str = "float32"  # float32 | bfloat16 | float16; the last two via autocast
    channels_last: bool = False
    compile: bool = False  # torch.compile for inference; on the CPU with freezing
    fold_bn: bool = False  # BatchNorm folded into the preceding conv for inference
    cuda_graphs: bool = False  # replay a captured CUDA graph for batches <= cuda_graph_max_batch
    cuda_graph_max_batch: int = 16
    train: bool = False  # also time a training step (eager, SGD with momentum)
    warmup: int = 3
    repeats: int = 7
    min_repeat_s: float = 0.05
    memory_cap_mib: float | None = None  # simulated memory size: a bigger peak is recorded as OOM
    threads: int | None = None  # torch.set_num_threads on the CPU; None keeps torch's default

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ValueError(f"batch sizes must be positive, got {self.batch_sizes}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError("repeats must be >= 1 and warmup >= 0")
        if self.cuda_graphs and not self.device.startswith("cuda"):
            raise ValueError("cuda_graphs needs device='cuda'")

    @property
    def memory_format(self) -> str:
        return "channels_last" if self.channels_last else "contiguous (NCHW)"


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ModelSpec:
    """What to benchmark: a name, how to build the module (on CPU, float32), its input."""

    name: str
    build: Callable[[], nn.Module]
    input_size: int
    in_channels: int = 3
    num_classes: int = 1000
    accuracy: float | None = None  # top-1 %, for the accuracy plots
    accuracy_source: str = ""


def registered_spec(
    name: str,
    *,
    tiny: bool = False,
    input_size: int | None = None,
    accuracy: float | None = None,
    accuracy_source: str = "",
) -> ModelSpec:
    """A registered model, full size or at its ``Tiny`` overrides and input size. Accuracy
    defaults to the paper's number in ``model_info``."""
    entry = get_entry(name)
    overrides = dict(entry.tiny.overrides) if tiny else {}
    cfg_classes = overrides.get("num_classes", entry.info.num_classes)
    size = input_size or (entry.tiny.input_size if tiny else entry.info.input_size)
    if accuracy is None and entry.info.paper_accuracy is not None:
        accuracy = entry.info.paper_accuracy
        dataset = entry.info.paper_accuracy_dataset or entry.info.dataset
        accuracy_source = f"paper ({entry.info.table}; {dataset})"
    return ModelSpec(
        name=name,
        build=lambda: create_model(name, **overrides),
        input_size=size,
        in_channels=entry.info.in_channels,
        num_classes=cfg_classes,
        accuracy=accuracy,
        accuracy_source=accuracy_source,
    )


def provenance(cfg: BenchConfig) -> dict[str, Any]:
    """Where and how the numbers were taken; stored with every result."""
    dev = torch.device(cfg.device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        cudnn = torch.backends.cudnn.version()
    else:
        name = _cpu_name()
        cudnn = None
    return {
        "device": cfg.device,
        "device_name": name,
        "threads": torch.get_num_threads(),
        "dtype": cfg.dtype + (" (autocast)" if cfg.dtype != "float32" else ""),
        "memory_format": cfg.memory_format,
        "compile": cfg.compile,
        "fold_bn": cfg.fold_bn,
        "cuda_graphs": cfg.cuda_graphs,
        "batch_sizes": list(cfg.batch_sizes),
        "warmup": cfg.warmup,
        "repeats": cfg.repeats,
        "min_repeat_s": cfg.min_repeat_s,
        "memory_method": (
            "torch.cuda.max_memory_allocated above the level before the call"
            if dev.type == "cuda"
            else "CPU allocator events from torch.profiler(profile_memory=True): peak above the level before the call"
        ),
        "memory_cap_mib": cfg.memory_cap_mib,
        "torch": torch.__version__,
        "cudnn": cudnn,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------------
# Measuring one callable


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], device: torch.device, cfg: BenchConfig) -> list[float]:
    """Seconds per call of each timed repeat, after ``cfg.warmup`` untimed calls."""
    for _ in range(cfg.warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    one = time.perf_counter() - start
    calls = max(1, math.ceil(cfg.min_repeat_s / max(one, 1e-7)))
    times = []
    for _ in range(cfg.repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        _sync(device)
        times.append((time.perf_counter() - start) / calls)
    return times


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    # Kineto prints start/stop lines on fd 2 for every profiler session; they are not errors.
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak allocated bytes during one call of ``fn`` above the level just before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Only CPU activities are profiled, so every memory event is a CPU allocation or free.
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]  # type: ignore[union-attr]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def _stats(seconds: list[float], batch: int, prefix: str) -> dict[str, float]:
    per_image = sorted(1e3 * s / batch for s in seconds)
    q = statistics.quantiles(per_image, n=4, method="inclusive") if len(per_image) > 1 else None
    med = statistics.median(per_image)
    out = {
        f"{prefix}_ms_per_image": med,
        f"{prefix}_ms_per_image_p25": q[0] if q else med,
        f"{prefix}_ms_per_image_p75": q[2] if q else med,
    }
    if prefix == "infer":
        out["infer_ms_per_image_min"] = per_image[0]
        out["infer_ms_per_image_max"] = per_image[-1]
        out["infer_images_per_s"] = 1e3 / med
    return out


def _check_cap(peak: int, cfg: BenchConfig, what: str) -> None:
    if cfg.memory_cap_mib is not None and peak > cfg.memory_cap_mib * MIB:
        raise torch.OutOfMemoryError(
            f"{what}: peak {peak / MIB:.1f} MiB exceeds the simulated cap {cfg.memory_cap_mib} MiB"
        )


# ---------------------------------------------------------------------------------------------
# Inference fast paths


def _autocast(cfg: BenchConfig, device: torch.device) -> contextlib.AbstractContextManager:
    if cfg.dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[cfg.dtype])


def capture_cuda_graph(fn: Callable[[Tensor], Tensor], x: Tensor) -> Callable[[], Tensor]:
    """Capture ``fn(x)`` once; each call replays it on the same static input and output."""
    static_x = x.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # let cuDNN pick algorithms and the allocator settle before capture
            fn(static_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn(static_x)

    def replay() -> Tensor:
        graph.replay()
        return static_out

    return replay


def _prepare_eval(model: nn.Module, spec: ModelSpec, cfg: BenchConfig, device: torch.device):
    model = model.eval()
    if cfg.fold_bn:
        model = fold_batchnorm(
            model, torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size)
        )
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _input(batch: int, spec: ModelSpec, cfg: BenchConfig, device: torch.device) -> Tensor:
    x = torch.randn(batch, spec.in_channels, spec.input_size, spec.input_size, device=device)
    return x.contiguous(memory_format=torch.channels_last) if cfg.channels_last else x


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# One model


@dataclass
class _State:
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    compiled: Callable[[Tensor], Tensor] | None = None
    compile_ok: bool = True


def _infer_cell(
    eager: nn.Module,
    batch: int,
    spec: ModelSpec,
    cfg: BenchConfig,
    device: torch.device,
    state: _State,
) -> dict[str, Any]:
    x = _input(batch, spec, cfg, device)
    row: dict[str, Any] = {}

    def eager_fn(inp: Tensor) -> Tensor:
        with torch.inference_mode(), _autocast(cfg, device):
            return eager(inp)

    fn: Callable[[Tensor], Tensor] = eager_fn
    path = "eager"
    if cfg.compile and state.compile_ok:
        if state.compiled is None:
            # One graph per batch size (static shapes are fastest); every batch size is a
            # recompile of the same code, hence the raised limit in bench_model.
            state.compiled = torch.compile(eager, dynamic=False)
        compiled = state.compiled

        def compiled_fn(inp: Tensor) -> Tensor:
            with torch.inference_mode(), _autocast(cfg, device):
                return compiled(inp)

        freezing = (
            torch._inductor.config.patch(freezing=True)  # type: ignore[attr-defined]
            if device.type == "cpu"
            else contextlib.nullcontext()
        )
        start = time.perf_counter()
        try:
            with freezing:
                compiled_fn(x)
            _sync(device)
            row["compile_s"] = time.perf_counter() - start
            fn, path = compiled_fn, "compiled" + (" (freezing)" if device.type == "cpu" else "")
        except Exception as err:
            if _is_oom(err):
                raise
            state.compile_ok = False
            state.notes.append(
                f"torch.compile failed, eager fallback: {type(err).__name__}: {str(err)[:200]}"
            )
    call: Callable[[], Tensor] = lambda: fn(x)  # noqa: E731
    if cfg.cuda_graphs and batch <= cfg.cuda_graph_max_batch:
        try:
            call = capture_cuda_graph(fn, x)
            path += " + CUDA graph"
        except Exception as err:
            if _is_oom(err):
                raise
            state.notes.append(f"CUDA graph capture failed at batch {batch}: {err}")
    # Memory after one call so lazily allocated workspaces are in place; before timing so an
    # over-cap batch is not timed.
    call()
    peak = peak_memory_bytes(call, device)
    _check_cap(peak, cfg, f"inference at batch {batch}")
    row.update(_stats(time_calls(call, device, cfg), batch, "infer"))
    row["infer_peak_mem_mib"] = peak / MIB
    row["infer_path"] = path
    return row


def _train_cell(
    model: nn.Module, batch: int, spec: ModelSpec, cfg: BenchConfig, device: torch.device
) -> dict[str, Any]:
    x = _input(batch, spec, cfg, device)
    y = torch.randint(0, max(spec.num_classes, 1), (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(cfg, device):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    step()  # creates gradients and momentum buffers: the steady state a training run is in
    peak = peak_memory_bytes(step, device)
    _check_cap(peak, cfg, f"training at batch {batch}")
    row = _stats(time_calls(step, device, cfg), batch, "train")
    row["train_peak_mem_mib"] = peak / MIB
    return row


def _guarded(
    fn: Callable[[], dict[str, Any]], keys: tuple[str, ...], what: str, state: _State, device
) -> dict[str, Any]:
    try:
        return fn()
    except Exception as err:
        _free(device)
        if _is_oom(err):
            state.notes.append(f"{what}: OOM ({str(err).splitlines()[0][:200]})")
            return dict.fromkeys(keys, OOM)
        state.errors.append(f"{what}: {type(err).__name__}: {err}")
        return dict.fromkeys(keys, ERROR)


def bench_model(
    spec: ModelSpec,
    cfg: BenchConfig,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Counts and measurements of one model; see the module docstring for units and method."""
    device = torch.device(cfg.device)
    if cfg.threads is not None and device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    model = spec.build()
    meta = copy.deepcopy(model).to("meta")  # counting on meta costs no arithmetic
    result: dict[str, Any] = {
        "model": spec.name,
        "params": count_params(model),
        "params_trainable": count_params(model, trainable_only=True),
        "macs": count_macs(meta, spec.input_size, spec.in_channels),
        "macs_per_stage": count_stage_macs(meta, spec.input_size, spec.in_channels),
        "input_size": spec.input_size,
        "accuracy_top1_pct": spec.accuracy,
        "accuracy_source": spec.accuracy_source,
    }
    del meta
    state = _State()
    eager = _prepare_eval(copy.deepcopy(model) if cfg.train else model, spec, cfg, device)
    rows: list[dict[str, Any]] = []
    if cfg.compile:
        torch._dynamo.reset()  # models share ZooModel.forward: start each with a clean cache
    limit = torch._dynamo.config.patch(recompile_limit=max(8, 2 * len(cfg.batch_sizes)))
    infer_keys = ("infer_ms_per_image", "infer_images_per_s", "infer_peak_mem_mib")
    for batch in cfg.batch_sizes:
        if progress:
            progress(f"{spec.name}: inference, batch {batch}")
        with limit:
            cell = _guarded(
                lambda b=batch: _infer_cell(eager, b, spec, cfg, device, state),
                infer_keys,
                f"inference at batch {batch}",
                state,
                device,
            )
        rows.append({"batch_size": batch, **cell})
    eager = state.compiled = None  # free the inference copy before training
    _free(device)
    if cfg.train:
        train_model = model.to(device).train()
        if cfg.channels_last:
            train_model = train_model.to(memory_format=torch.channels_last)
        for row in rows:
            batch = row["batch_size"]
            if progress:
                progress(f"{spec.name}: training step, batch {batch}")
            row.update(
                _guarded(
                    lambda b=batch: _train_cell(train_model, b, spec, cfg, device),
                    ("train_ms_per_image", "train_peak_mem_mib"),
                    f"training at batch {batch}",
                    state,
                    device,
                )
            )
        del train_model
        _free(device)
    fitted = [r for r in rows if isinstance(r.get("infer_images_per_s"), float)]
    result["throughput_images_per_s"] = fitted[-1]["infer_images_per_s"] if fitted else OOM
    result["throughput_batch_size"] = fitted[-1]["batch_size"] if fitted else None
    compile_times = [r["compile_s"] for r in rows if "compile_s" in r]
    result["compile_s"] = sum(compile_times) if compile_times else None
    result["batches"] = rows
    result["notes"] = state.notes
    result["errors"] = state.errors
    return result


def bench_models(
    specs: list[ModelSpec],
    cfg: BenchConfig,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole report: provenance, units, one entry per model."""
    report = {"provenance": provenance(cfg), "units": UNITS, "models": []}
    for spec in specs:
        report["models"].append(bench_model(spec, cfg, progress))
    return report
