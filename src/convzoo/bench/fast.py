"""``bench --fast``: the fastest way convzoo knows to run a model on the device, chosen by
measuring.

On CUDA: BatchNorm folded into the convs, channels_last, ``torch.compile``, and the compiled
call replayed as a CUDA graph for small batches (per-launch overhead dominates there).

On the CPU no one engine wins everywhere (BENCHMARKS.md, "CPU runtimes"): inductor's code, ONNX
Runtime and OpenVINO trade places by model and batch size. So at each input shape the fast
engine prepares every candidate that is installed - ``compiled`` (BN folded, channels_last,
freezing: oneDNN prepacks the weights), ``onnxruntime`` and ``openvino`` on convzoo's own ONNX
export of the folded model - times them in a few interleaved rounds, and keeps the fastest.
The cell's settings record the candidates' trial times and the one chosen, so a report says
which engine produced each number; ``convzoo export`` writes the file for that engine.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from convzoo.bench.fold import fold_batchnorm
from convzoo.bench.measure import time_interleaved
from convzoo.bench.runtimes import (
    Artifacts,
    Engine,
    RuntimeOptions,
    RuntimeUnavailable,
    TorchEngine,
    prepare_engine,
    torch_engine,
)

__all__ = ["CPU_CANDIDATES", "FastEngine", "fast_engine"]

CPU_CANDIDATES = ("compiled", "onnxruntime", "openvino")
TRIAL = {"warmup": 2, "repeats": 5, "min_repeat_s": 0.05}  # per candidate, interleaved


class FastEngine(Engine):
    """Picks, per input shape, the fastest of its candidate engines (see the module docstring)."""

    runtime = "fast"

    def __init__(self, candidates: dict[str, Engine], unavailable: dict[str, str]) -> None:
        self.candidates = candidates
        self.chosen: dict[tuple[int, ...], str] = {}
        self.trials: dict[tuple[int, ...], dict[str, float | str]] = {}
        self.unavailable = unavailable
        self.settings: dict[str, Any] = {}

    def _choose(self, x: Tensor) -> Engine:
        shape = tuple(x.shape)
        if shape not in self.chosen:
            calls: dict[str, Callable[[], Any]] = {}
            trial: dict[str, float | str] = dict(self.unavailable)
            for name, engine in self.candidates.items():
                try:
                    calls[name] = engine.bind(x)
                except Exception as err:  # a candidate that cannot run this shape drops out
                    trial[name] = f"failed: {type(err).__name__}: {str(err)[:160]}"
            if not calls:
                raise RuntimeError(f"no fast-path candidate runs input {shape}: {trial}")
            settle = {n: e.settle_s for n, e in self.candidates.items()}
            times = time_interleaved(calls, torch.device("cpu"), settle_s=settle, **TRIAL)
            for name, seconds in times.items():
                trial[name] = 1e3 * statistics.median(seconds)
            self.trials[shape] = trial
            self.chosen[shape] = min(times, key=lambda n: statistics.median(times[n]))
        engine = self.candidates[self.chosen[shape]]
        self.settle_s = engine.settle_s
        self.settings = {
            "chosen": self.chosen[shape],
            **engine.settings,
            "trial_ms_per_batch": self.trials[shape],
        }
        return engine

    def bind(self, x: Tensor) -> Callable[[], Any]:
        return self._choose(x).bind(x)

    def run(self, x: Tensor) -> Tensor:
        return self._choose(x).run(x)


def fast_engine(
    model: nn.Module, example: Tensor, opts: RuntimeOptions, artifacts: Artifacts,
    device: torch.device,
) -> Engine:  # fmt: skip
    """The fast path of ``model`` on ``device`` (CPU: a ``FastEngine`` over the candidates)."""
    fast_opts = RuntimeOptions(
        threads=opts.threads, fold_bn=True, channels_last=True, compile=opts.compile,
        ort_spinning=opts.ort_spinning,
    )  # fmt: skip
    if device.type != "cpu":
        engine: TorchEngine = torch_engine("compiled", model, example, fast_opts, device)
        engine.runtime = "fast"
        # Static shapes and no Python between kernels: a graph replay is never slower, and at
        # small batches it removes the launch overhead that dominates.
        engine.cuda_graph_max_batch = sys.maxsize
        return engine
    folded = fold_batchnorm(model.eval(), example[:1])
    # The ONNX candidates run convzoo's export of the folded model (its own file, not the one
    # the plain onnxruntime / openvino cells share).
    own = Artifacts(folded, example, fast_opts, artifacts.folder / "fast", artifacts.reuse)
    own.folder.mkdir(exist_ok=True)
    candidates: dict[str, Engine] = {}
    unavailable: dict[str, str] = {}
    for name in CPU_CANDIDATES:
        try:
            candidates[name] = prepare_engine(name, folded, example, fast_opts, own, device)
        except RuntimeUnavailable as err:
            unavailable[name] = f"unavailable: {err}"
    return FastEngine(candidates, unavailable)
