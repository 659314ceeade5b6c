"""Where the CPU time goes: inductor's compiled model against ONNX Runtime, per kind of op.

Issue 16 asks why the fast path's own engine (inductor: BN folded, channels_last, freezing) is
slower than ONNX Runtime on the mobile nets. This script runs both on the same BN-folded convzoo
model (torchvision's architecture and random weights, seed 0, ``from_torchvision``) and splits
one batch's time into kinds of op:

    inductor   ``torch.profiler`` (CPU), self time of every op in ``--iters`` calls, inductor's
               generated kernels named (``cpp.enable_kernel_profile``)
    ORT        ONNX Runtime's own profiler (``enable_profiling``): each node's kernel time

Kinds: ``conv`` (every convolution, fused activations included: oneDNN's pointwise convolution
in inductor, Conv / FusedConv in ORT), ``matmul`` (the classifier), ``fused elementwise``
(inductor's generated C++ loops: BN that did not fold, activations, adds, pooling; ORT's
element-wise nodes), ``data movement`` (concat, transpose, reshape, slice, split, copies and
layout reorders), ``pool``, ``other``, ``framework`` (inductor only: dynamo's guard check and
the compiled graph's call, their own time), and ``outside ops``: the wall time of a call minus
the sum of everything profiled (Python, dispatch, thread wake-ups). Milliseconds per batch, wall time
measured on the same calls without the profiler (median of ``--iters``).

    OMP_NUM_THREADS=2 python benchmarks/profile_fast.py --models mobilenet_v2 shufflenet_v2_x1_0 \\
        --batch-sizes 1 16 --output benchmarks/results/profile_fast
    OMP_NUM_THREADS=2 python benchmarks/profile_fast.py --cpp-wrapper \
        --output benchmarks/results/profile_fast      # inductor's C++ wrapper, timed interleaved
    python benchmarks/profile_fast.py --smoke --output /tmp/profile_smoke   # checks the script
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torchvision

from convzoo.bench.compiled import CompileSettings
from convzoo.bench.fold import fold_batchnorm
from convzoo.bench.measure import time_interleaved
from convzoo.bench.runtimes import Artifacts, RuntimeOptions, prepare_engine, torch_engine
from convzoo.bench.spec import BenchConfig, provenance
from convzoo.interop import from_torchvision

KINDS = (
    "conv", "matmul", "fused elementwise", "data movement", "pool", "other", "framework",
    "outside ops",
)  # fmt: skip

_TORCH_KINDS = [
    ("fused elementwise", re.compile(r"^(cpp_fused|kernel_cpp|graph_\d+_cpp_fused)")),
    ("framework", re.compile(r"TorchDynamo|CompiledFxGraph|Torch-Compiled|^## ")),
    ("conv", re.compile(r"conv", re.I)),
    ("matmul", re.compile(r"addmm|mm$|linear|matmul|bmm", re.I)),
    ("data movement", re.compile(r"copy|cat|clone|contiguous|reorder|to_dense|permute|view", re.I)),
    ("pool", re.compile(r"pool", re.I)),
]
_ORT_KINDS = {
    "conv": {"Conv", "FusedConv", "NhwcFusedConv", "QLinearConv", "ConvInteger"},
    "matmul": {"Gemm", "MatMul", "FusedGemm", "FusedMatMul"},
    "data movement": {
        "Concat",
        "Transpose",
        "Reshape",
        "Slice",
        "Split",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Gather",
        "ReorderInput",
        "ReorderOutput",
        "Identity",
        "Expand",
        "Shape",
    },
    "pool": {"MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "NhwcMaxPool"},
}


def torch_kind(name: str) -> str:
    for kind, pattern in _TORCH_KINDS:
        if pattern.search(name):
            return kind
    return "other"


def ort_kind(op_type: str) -> str:
    for kind, ops in _ORT_KINDS.items():
        if op_type in ops:
            return kind
    return "fused elementwise"


def _wall_ms(fn: Any, iters: int) -> float:
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def profile_inductor(model: torch.nn.Module, x: torch.Tensor, iters: int) -> dict[str, Any]:
    import torch._inductor.config as inductor_config
    from torch.profiler import ProfilerActivity, profile

    inductor_config.cpp.enable_kernel_profile = True
    opts = RuntimeOptions(threads=torch.get_num_threads(), fold_bn=True, channels_last=True)
    engine = torch_engine("compiled", model, x[:1], opts, torch.device("cpu"))
    call = engine.bind(x)
    for _ in range(3):
        call()
    wall = _wall_ms(call, iters)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            call()
    ops: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        # leaves only: an op's self time excludes the ops it called
        ops[event.key] += event.self_cpu_time_total / 1e3 / iters
    return _split(ops, wall, torch_kind)


def profile_ort(path: Path, x: torch.Tensor, threads: int, iters: int) -> dict[str, Any]:
    import onnxruntime as ort

    def session(profiling: bool) -> Any:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if profiling:
            so.enable_profiling = True
            so.profile_file_prefix = str(path.parent / "ort_profile")
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    feed = {"input": x.contiguous().numpy()}
    plain = session(False)
    for _ in range(3):
        plain.run(None, feed)
    wall = _wall_ms(functools.partial(plain.run, None, feed), iters)
    del plain
    time.sleep(0.05)  # let its spinning threads park
    prof = session(True)
    for _ in range(3):  # warm-up calls, dropped from the trace below
        prof.run(None, feed)
    for _ in range(iters):
        prof.run(None, feed)
    trace = Path(prof.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    kernel = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_call = len(kernel) // (iters + 3)
    ops: dict[str, float] = defaultdict(float)
    for e in kernel[3 * per_call :]:
        ops[e["args"]["op_name"]] += e["dur"] / 1e3 / iters
    return _split(ops, wall, ort_kind)


def _split(ops: dict[str, float], wall: float, kind_of: Any) -> dict[str, Any]:
    kinds = dict.fromkeys(KINDS, 0.0)
    for name, ms in ops.items():
        kinds[kind_of(name)] += ms
    inside = sum(kinds.values())
    kinds["outside ops"] = max(wall - inside, 0.0)
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:8]
    return {"wall_ms": wall, "ops_ms": inside, "kinds_ms": kinds, "top_ops_ms": dict(top)}


def _head(r: dict[str, Any], what: str, columns: list[str]) -> list[str]:
    bar = "|---|" + "---:|" * (len(columns) - 1)
    return [
        f"**{r['model']}, batch {r['batch_size']}**: {what}",
        "",
        f"| {' | '.join(columns)} |",
        bar,
    ]


def cpp_wrapper_table(results: list[dict[str, Any]]) -> str:
    names = [*CONTENDERS, "onnxruntime"]
    lines = [f"| model | batch | {' ms | '.join(names)} ms |", "|---|---:|" + "---:|" * len(names)]
    for r in results:
        for b in r["batches"]:
            cells = " | ".join(f"{b['ms_per_batch'][n]:.2f}" for n in names)
            lines.append(f"| {r['model']} | {b['batch_size']} | {cells} |")
    return "\n".join(lines) + "\n"


def int8_table(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        fp, q = r["onnxruntime"], r["onnxruntime-int8"]
        lines += _head(
            r,
            f"wall {fp['wall_ms']:.2f} ms fp32, {q['wall_ms']:.2f} ms int8 "
            f"({fp['wall_ms'] / q['wall_ms']:.2f}x)",
            ["fp32 op", "ms", "int8 op", "ms"],
        )
        a, b = list(fp["top_ops_ms"].items()), list(q["top_ops_ms"].items())
        for i in range(max(len(a), len(b))):
            left = f"{a[i][0]} | {a[i][1]:.2f}" if i < len(a) else " | "
            right = f"{b[i][0]} | {b[i][1]:.2f}" if i < len(b) else " | "
            lines.append(f"| {left} | {right} |")
        lines.append("")
    return "\n".join(lines)


def measure(
    name: str, batch: int, size: int, threads: int, iters: int, int8: bool = False
) -> dict[str, Any]:
    """One model and batch: inductor against ONNX Runtime, or (``int8``) ONNX Runtime fp32
    against its int8 (``bench.quantize``, as ``--runtimes onnxruntime-int8``) per op type."""
    from convzoo.bench.quantize import calibration_images, quantize_onnx

    torch.manual_seed(0)
    tv = torchvision.models.get_model(name, weights=None).eval()
    example = torch.zeros(1, 3, size, size)
    folded = fold_batchnorm(from_torchvision(name, tv).eval(), example)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
    out: dict[str, Any] = {"model": name, "batch_size": batch, "input_size": size,
                           "threads": threads, "iters": iters, "load_before": os.getloadavg()}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="convzoo-profile-") as tmp:
        fp32 = Artifacts(folded, example, RuntimeOptions(threads=threads), tmp).onnx()
        out["onnxruntime"] = profile_ort(fp32, x, threads, iters)
        if int8:
            quantized = Path(tmp) / "int8.onnx"
            quantize_onnx(fp32, quantized, calibration_images(size=size, count=64))
            out["onnxruntime-int8"] = profile_ort(quantized, x, threads, iters)
    if not int8:
        out["inductor"] = profile_inductor(folded, x, iters)
    out["load_after"] = os.getloadavg()
    return out


CONTENDERS = {
    "inductor": CompileSettings(),
    "inductor cpp_wrapper": CompileSettings(cpp_wrapper=True),
}


def measure_cpp_wrapper(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Inductor's C++ wrapper against its Python one and ONNX Runtime, interleaved in one run: does
    it remove the per-call framework time the profile finds at batch 1?"""
    torch.manual_seed(0)
    size = args.input_size
    tv = torchvision.models.get_model(name, weights=None).eval()
    example = torch.zeros(1, 3, size, size)
    folded = fold_batchnorm(from_torchvision(name, tv).eval(), example)
    out: dict[str, Any] = {"model": name, "load_before": os.getloadavg(), "batches": []}
    with tempfile.TemporaryDirectory(prefix="convzoo-cppw-") as tmp:
        engines = {}
        for label, settings in CONTENDERS.items():
            opts = RuntimeOptions(threads=args.threads, fold_bn=True, channels_last=True,
                                  compile=settings)  # fmt: skip
            engines[label] = prepare_engine(
                "compiled", folded, example, opts, Artifacts(folded, example, opts, tmp)
            )
        ort_opts = RuntimeOptions(threads=args.threads)
        engines["onnxruntime"] = prepare_engine(
            "onnxruntime", folded, example, ort_opts, Artifacts(folded, example, ort_opts, tmp)
        )
        for batch in args.batch_sizes:
            x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
            with torch.no_grad():
                want = folded(x)
            calls, settle, diffs = {}, {}, {}
            for label, engine in engines.items():
                diffs[label] = (engine.run(x) - want).abs().max().item()
                calls[label], settle[label] = engine.bind(x), engine.settle_s
            times = time_interleaved(calls, torch.device("cpu"), warmup=3, repeats=args.rounds,
                                     min_repeat_s=args.min_repeat_s, settle_s=settle)  # fmt: skip
            ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
            out["batches"].append({"batch_size": batch, "ms_per_batch": ms, "max_abs_diff": diffs})
    out["load_after"] = os.getloadavg()
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        ind, ort = r["inductor"], r["onnxruntime"]
        lines += _head(
            r,
            f"ms per batch; wall {ind['wall_ms']:.2f} inductor vs {ort['wall_ms']:.2f} "
            f"ORT, {ind['wall_ms'] / ort['wall_ms']:.2f}x",
            ["kind", "inductor ms", "ORT ms", "inductor - ORT"],
        )
        for kind in KINDS:
            a, b = ind["kinds_ms"][kind], ort["kinds_ms"][kind]
            lines.append(f"| {kind} | {a:.2f} | {b:.2f} | {a - b:+.2f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["mobilenet_v2", "shufflenet_v2_x1_0"])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--rounds", type=int, default=7, help="--cpp-wrapper: interleaved rounds")
    p.add_argument("--min-repeat-s", type=float, default=0.2, help="--cpp-wrapper: per repeat")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--int8", action="store_true", help="ORT fp32 against ORT int8 instead")
    mode.add_argument(
        "--cpp-wrapper",
        action="store_true",
        help="inductor with and without its C++ wrapper, and ORT, timed interleaved",
    )
    p.add_argument(
        "--smoke", action="store_true", help="32x32, batch 2, 3 calls: checks the script"
    )
    args = p.parse_args()
    if args.smoke:
        args.input_size, args.batch_sizes, args.iters = 32, [2], 3
        args.rounds, args.min_repeat_s, args.models = 2, 0.01, args.models[:1]
    torch.set_num_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.models:
        if args.cpp_wrapper:  # one compile per contender serves every batch size
            results.append(measure_cpp_wrapper(name, args))
            continue
        for batch in args.batch_sizes:
            print(f"{name} batch {batch}", file=sys.stderr, flush=True)
            results.append(
                measure(name, batch, args.input_size, args.threads, args.iters, args.int8)
            )
    stem = "cpp_wrapper" if args.cpp_wrapper else "profile_int8" if args.int8 else "profile_fast"
    machine = provenance(BenchConfig(threads=args.threads))
    (args.output / f"{stem}.json").write_text(
        json.dumps({"provenance": machine, "results": results}, indent=2)
    )
    show = cpp_wrapper_table if args.cpp_wrapper else int8_table if args.int8 else table
    text = show(results)
    (args.output / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
