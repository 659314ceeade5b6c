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

``fast-int8`` does the same among the int8 runtimes: ONNX Runtime on its own quantizer's QDQ file
and OpenVINO on NNCF's IR (the files the ``onnxruntime-int8`` and ``openvino-int8`` cells run).
Which is faster depends on the CPU and the model: on an AVX2 EPYC ONNX Runtime's file won 9 of
the 12 cells of one run, on an AMX Xeon NNCF's IR ran resnet18 3-4x faster than it while ONNX
Runtime stayed ahead on mobilenet_v2 (BENCHMARKS.md section 9), so any fixed choice is wrong
somewhere.

Where the two fastest candidates' medians are within ``CLOSE`` of each other, five rounds cannot
tell them apart (on an idle 2-core EPYC the short trial picked the slower of ONNX Runtime and
OpenVINO in two cells of twelve, 3.6 vs 4.1 ms and 41.1 vs 39.7 ms: BENCHMARKS.md section 9), so
the two run ``RUNOFF`` more interleaved rounds against each other and the choice is made on all
their rounds; the trial records the run-off.

Under bench's ``--dtype bfloat16`` / ``float16`` the candidates are those that run in it: the
compiled model under autocast and OpenVINO with that precision hint; ONNX Runtime drops out of the
trial as unavailable (it has no such CPU path), so a cell never mixes precisions.
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

__all__ = [
    "CLOSE",
    "CPU_CANDIDATES",
    "INT8_CANDIDATES",
    "RUNOFF",
    "FastEngine",
    "fast_engine",
    "fast_int8_engine",
    "pick",
]

CPU_CANDIDATES = ("compiled", "onnxruntime", "openvino")
INT8_CANDIDATES = ("onnxruntime-int8", "openvino-int8")
TRIAL = {"warmup": 2, "repeats": 5, "min_repeat_s": 0.05}  # per candidate, interleaved
CLOSE = 0.10  # relative gap between the two fastest medians under which they have a run-off
RUNOFF = {"warmup": 1, "repeats": 10, "min_repeat_s": 0.05}


def pick(
    times: dict[str, list[float]], rerun: Callable[[list[str]], dict[str, list[float]]]
) -> tuple[str, dict[str, Any]]:
    """The candidate with the lowest median time; when the two fastest are within ``CLOSE``,
    ``rerun([a, b])`` gives more rounds of just those two and the lower median over all of a
    candidate's rounds wins. Returns the choice and what the run-off measured (empty if none)."""
    ranked = sorted(times, key=lambda n: statistics.median(times[n]))
    if len(ranked) < 2:
        return ranked[0], {}
    a, b = ranked[:2]
    first, second = statistics.median(times[a]), statistics.median(times[b])
    if second > first * (1 + CLOSE):
        return a, {}
    more = rerun([a, b])
    pooled = {n: times[n] + more[n] for n in (a, b)}
    winner = min(pooled, key=lambda n: statistics.median(pooled[n]))
    runoff = {f"{n}_ms": 1e3 * statistics.median(pooled[n]) for n in (a, b)}
    return winner, {"between": [a, b], "rounds": len(pooled[a]), **runoff}


class FastEngine(Engine):
    """Picks, per input shape, the fastest of its candidate engines (see the module docstring)."""

    def __init__(
        self, candidates: dict[str, Engine], unavailable: dict[str, str], runtime: str = "fast"
    ) -> None:
        self.runtime = runtime
        self.candidates = candidates
        self.chosen: dict[tuple[int, ...], str] = {}
        self.trials: dict[tuple[int, ...], dict[str, float | str]] = {}
        self.runoffs: dict[tuple[int, ...], dict[str, Any]] = {}
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
            cpu = torch.device("cpu")
            times = time_interleaved(calls, cpu, settle_s=settle, **TRIAL)
            for name, seconds in times.items():
                trial[name] = 1e3 * statistics.median(seconds)

            def rerun(names: list[str]) -> dict[str, list[float]]:
                return time_interleaved(
                    {n: calls[n] for n in names}, cpu, settle_s=settle, **RUNOFF
                )

            self.chosen[shape], runoff = pick(times, rerun)
            self.trials[shape] = trial
            self.runoffs[shape] = runoff
        engine = self.candidates[self.chosen[shape]]
        self.settle_s = engine.settle_s
        self.settings = {
            "chosen": self.chosen[shape],
            **engine.settings,
            "trial_ms_per_batch": self.trials[shape],
            **({"trial_runoff": self.runoffs[shape]} if self.runoffs[shape] else {}),
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
        ort_spinning=opts.ort_spinning, dtype=opts.dtype,
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
    return FastEngine(*_prepare(CPU_CANDIDATES, folded, example, fast_opts, own, device))


def _prepare(
    names: tuple[str, ...], model: nn.Module, example: Tensor, opts: RuntimeOptions,
    artifacts: Artifacts, device: torch.device,
) -> tuple[dict[str, Engine], dict[str, str]]:  # fmt: skip
    """The candidates ``names`` that are installed, prepared; and why each other one is not."""
    candidates: dict[str, Engine] = {}
    unavailable: dict[str, str] = {}
    for name in names:
        try:
            candidates[name] = prepare_engine(name, model, example, opts, artifacts, device)
        except RuntimeUnavailable as err:
            unavailable[name] = f"unavailable: {err}"
    return candidates, unavailable


def fast_int8_engine(
    model: nn.Module, example: Tensor, opts: RuntimeOptions, artifacts: Artifacts,
    device: torch.device,
) -> Engine:  # fmt: skip
    """The faster int8 runtime of ``model`` per input shape (CPU only): a ``FastEngine`` over
    ``INT8_CANDIDATES``, on the int8 files the plain int8 cells share (``artifacts``)."""
    if device.type != "cpu":
        raise ValueError(f"runtime fast-int8 runs on the CPU only, not {device}")
    candidates, unavailable = _prepare(INT8_CANDIDATES, model, example, opts, artifacts, device)
    if not candidates:
        raise RuntimeUnavailable(
            "no int8 runtime is installed: pip install 'convzoo[onnx]' or 'convzoo[openvino]'"
        )
    return FastEngine(candidates, unavailable, runtime="fast-int8")
