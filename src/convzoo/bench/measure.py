"""Timing (one callable, or several interleaved in rounds), peak memory, CUDA graph capture;
everything in convzoo and ``benchmarks/`` that measures time uses these.

Peak memory is the peak of allocated tensor memory during one call ABOVE what was allocated just
before it. On CUDA it comes from ``torch.cuda.max_memory_allocated``; on the CPU from the CPU
allocator's events in ``torch.profiler`` (``profile_memory=True``): the running sum of their
sizes, whose maximum is the peak. That is allocator bookkeeping, not process RSS.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "capture_cuda_graph",
    "peak_memory_bytes",
    "sync",
    "time_calls",
    "time_interleaved",
    "timing_stats",
]


MIB = 2**20


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    fn: Callable[[], Any],
    device: torch.device,
    *,
    warmup: int,
    repeats: int,
    min_repeat_s: float,
) -> list[float]:
    """Seconds per call of each of ``repeats`` timed repeats, after ``warmup`` untimed calls;
    a repeat runs enough back-to-back calls to last ``min_repeat_s``, synchronized around it."""
    return time_interleaved(
        {"": fn}, device, warmup=warmup, repeats=repeats, min_repeat_s=min_repeat_s
    )[""]


def time_interleaved(
    fns: Mapping[str, Callable[[], Any]],
    device: torch.device,
    *,
    warmup: int,
    repeats: int,
    min_repeat_s: float,
    settle_s: Mapping[str, float] | None = None,
) -> dict[str, list[float]]:
    """``time_calls`` for several contenders in rounds: round r times one repeat of each, the
    starting contender rotating, so slow drifts of the machine (other processes, clocks) hit all
    alike. ``settle_s[name]``: an untimed pause after that contender's repeat (a runtime whose
    threads keep spinning after it returns)."""
    settle = settle_s or {}
    names = list(fns)
    calls: dict[str, int] = {}
    for name in names:
        for _ in range(warmup):
            fns[name]()
        sync(device)
        start = time.perf_counter()
        fns[name]()
        sync(device)
        calls[name] = max(1, math.ceil(min_repeat_s / max(time.perf_counter() - start, 1e-7)))
        _pause(settle.get(name, 0.0))
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn, n = fns[name], calls[name]
            sync(device)
            start = time.perf_counter()
            for _ in range(n):
                fn()
            sync(device)
            times[name].append((time.perf_counter() - start) / n)
            _pause(settle.get(name, 0.0))
    return times


def _pause(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)


def timing_stats(seconds: list[float], batch: int, prefix: str) -> dict[str, float]:
    """Per-image milliseconds of timed repeats of one batch: median, quartiles; for inference
    also the fastest and slowest repeat and images per second."""
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
