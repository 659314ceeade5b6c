"""Inductor's C++ wrapper on the CPU: does it remove the per-call framework time at batch 1?

``profile_fast.py`` found inductor losing to ONNX Runtime at batch 1 by its own framework time
(dynamo's guards and the Python wrapper that calls the kernels, ~2 ms of mobilenet_v2's 10). This
times, interleaved in one run, the fast path's inductor candidate (BN folded, channels_last,
freezing) with the Python wrapper and with ``cpp_wrapper=True``, beside ONNX Runtime on the same
folded model; same setup as ``cpu_runtimes.py`` (torchvision architecture, random weights seed 0).

    OMP_NUM_THREADS=2 python benchmarks/cpp_wrapper.py --models mobilenet_v2 shufflenet_v2_x1_0 \\
        --batch-sizes 1 16 --output benchmarks/results/cpp_wrapper.json
    python benchmarks/cpp_wrapper.py --smoke --output /tmp/cpp_wrapper.json   # checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
import torchvision

from convzoo.bench.compiled import CompileSettings
from convzoo.bench.fold import fold_batchnorm
from convzoo.bench.measure import time_interleaved
from convzoo.bench.runtimes import Artifacts, RuntimeOptions, prepare_engine
from convzoo.bench.spec import BenchConfig, provenance
from convzoo.interop import from_torchvision

CONTENDERS = {
    "inductor": CompileSettings(),
    "inductor cpp_wrapper": CompileSettings(cpp_wrapper=True),
}


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["mobilenet_v2", "shufflenet_v2_x1_0"])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--min-repeat-s", type=float, default=0.2)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--smoke", action="store_true", help="32x32, batch 2: checks the script")
    args = p.parse_args()
    if args.smoke:
        args.input_size, args.batch_sizes, args.rounds, args.min_repeat_s = 32, [2], 2, 0.01
        args.models = args.models[:1]
    torch.set_num_threads(args.threads)
    results = [measure(name, args) for name in args.models]
    machine = provenance(BenchConfig(threads=args.threads))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"provenance": machine, "results": results}, indent=2))
    print("| model | batch | " + " | ".join(f"{k} ms" for k in [*CONTENDERS, "onnxruntime"]) + " |")
    print("|---|---:|" + "---:|" * (len(CONTENDERS) + 1))
    for r in results:
        for b in r["batches"]:
            cells = " | ".join(f"{v:.2f}" for v in b["ms_per_batch"].values())
            print(f"| {r['model']} | {b['batch_size']} | {cells} |")


if __name__ == "__main__":
    main()
