"""Timing and peak memory of one callable, and CUDA graph capture; ``runner`` and
``benchmarks/compare_libraries.py`` both measure with these.

Peak memory is the peak of allocated tensor memory during one call ABOVE what was allocated just
before it. On CUDA it comes from ``torch.cuda.max_memory_allocated``; on the CPU from the CPU
allocator's events in ``torch.profiler`` (``profile_memory=True``): the running sum of their
sizes, whose maximum is the peak. That is allocator bookkeeping, not process RSS.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

__all__ = ["capture_cuda_graph", "peak_memory_bytes", "sync", "time_calls"]


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
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    one = time.perf_counter() - start
    calls = max(1, math.ceil(min_repeat_s / max(one, 1e-7)))
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync(device)
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
