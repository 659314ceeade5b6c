"""CPU inference: convzoo's fast path against ONNX Runtime and OpenVINO, and int8.

Setup (the one a CPU user deploys with): float32, 224x224, ``--threads`` (2) threads everywhere,
the same weights in every runtime (torchvision's model, random init, seed 0, converted into
convzoo with ``interop.from_torchvision``). Contenders, all prepared by ``convzoo.bench``:

    torchvision eager   torchvision's model, inference_mode, contiguous
    convzoo fast        ``bench --fast`` on the CPU (``bench.fast``: the fastest of inductor,
                        ONNX Runtime and OpenVINO on convzoo's own export of the BN-folded model,
                        picked by a short trial, with a run-off when the two fastest are
                        within 10%; the chosen engine is recorded)
    onnxruntime         torchvision's model's ONNX export, CPUExecutionProvider, ORT_ENABLE_ALL,
                        intra-op threads = --threads, otherwise ORT's defaults
    openvino            the same ONNX file, CPU plugin, f32 hint, LATENCY hint, --threads threads
    onnxruntime-int8    convzoo's export quantized to int8 by ONNX Runtime's quantizer
                        (``bench.quantize.quantize_onnx``: QDQ, per-channel weights)
    openvino-int8       the same export quantized by OpenVINO's, NNCF (``quantize_openvino``)
    OV on ORT int8      OpenVINO running ONNX Runtime's QDQ file (what ``openvino-int8`` was
                        before 2026-12-02); all int8 files calibrated on the same 64 images of
                        the embedded digits

Each model and batch size: every contender warmed up, then ``--rounds`` interleaved rounds (each
round times every contender once, starting contender rotating, a repeat lasting at least
``--min-repeat-s``); the median per contender. Ratios are within one run:

    fast / best peer   convzoo fast / min(onnxruntime, openvino)        (target <= 1.0)
    int8 speed-up      best fp32 (any contender) / best int8            (target >= 1.5)

Results: one JSON per model and batch size in ``--output`` (machine, threads, load average before
and after, each contender's settings and output difference from torchvision eager); ``--table``
prints the Markdown table of every JSON there. Exported and quantized files are kept in
``--cache`` (git-ignored) and reused by later runs (the weights are fixed by the seed), so one model's
batch sizes can run as separate invocations, each within a time limit.

    python benchmarks/cpu_runtimes.py --models resnet18 --output benchmarks/results/cpu_runtimes
    python benchmarks/cpu_runtimes.py --table --output benchmarks/results/cpu_runtimes
    python benchmarks/cpu_runtimes.py --smoke --output /tmp/cpu_smoke     # tiny, checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
import torchvision

from convzoo.bench.measure import time_interleaved
from convzoo.bench.quantize import calibration_images
from convzoo.bench.runtimes import (
    Artifacts,
    Engine,
    OpenVinoEngine,
    RuntimeOptions,
    RuntimeUnavailable,
    prepare_engine,
    torch_engine,
)
from convzoo.bench.spec import BenchConfig, provenance
from convzoo.interop import from_torchvision

MODELS = (
    "resnet18",
    "mobilenet_v2",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "efficientnet_b0",
    "convnext_tiny",
)
PEERS = ("onnxruntime", "openvino")
INT8 = ("onnxruntime-int8", "openvino-int8", "OV on ORT int8")
FP32 = ("torchvision eager", "convzoo fast", *PEERS)


def _engines(name: str, size: int, threads: int, folder: Path) -> tuple[dict[str, Any], Any]:
    """Every contender (an Engine, or the one-line reason it is missing) and the tv model."""
    torch.manual_seed(0)
    tv = torchvision.models.get_model(name, weights=None).eval()
    cz = from_torchvision(name, tv).eval()
    example = torch.zeros(1, 3, size, size)
    opts = RuntimeOptions(threads=threads, calibration=calibration_images(size=size, count=64))
    tv_files = Artifacts(tv, example, opts, folder / "tv", reuse=True)
    cz_files = Artifacts(cz, example, opts, folder / "cz", reuse=True)
    for files in (tv_files, cz_files):
        files.folder.mkdir(parents=True, exist_ok=True)
    engines: dict[str, Engine | str] = {
        "torchvision eager": torch_engine(
            "eager", tv, example, RuntimeOptions(), torch.device("cpu")
        )
    }
    plan = [("convzoo fast", "fast", cz, cz_files)]
    plan += [(p, p, tv, tv_files) for p in PEERS] + [(q, q, cz, cz_files) for q in INT8[:2]]
    for label, runtime, model, files in plan:
        print(f"[{name}] preparing {label}", file=sys.stderr, flush=True)
        try:
            engines[label] = prepare_engine(runtime, model, example, opts, files)
        except RuntimeUnavailable as err:
            engines[label] = str(err)
    try:
        qdq = OpenVinoEngine("openvino-int8", cz_files.int8("onnxruntime"), opts)
        qdq.settings.update(cz_files.quantizations["onnxruntime"])
        engines[INT8[2]] = qdq
    except RuntimeUnavailable as err:
        engines[INT8[2]] = str(err)
    return engines, tv


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num and den else None


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    engines, tv = _engines(name, args.input_size, args.threads,
                           args.cache / f"{name}-{args.input_size}px")  # fmt: skip
    return measure_engines(name, engines, tv, args, "max_abs_diff_vs_tv")


def measure_engines(
    name: str, engines: dict[str, Any], reference: Any, args: argparse.Namespace, diff_key: str
) -> dict[str, Any]:
    """Every engine (or the reason it is missing) at each of ``args.batch_sizes``, interleaved
    (``args.rounds``, ``args.warmup``, ``args.min_repeat_s``), with its largest output difference
    from ``reference`` (a torch model) under ``diff_key``; the machine's load before and after."""
    size = args.input_size
    result: dict[str, Any] = {"model": name, "load_before": os.getloadavg(), "batches": []}
    for batch in args.batch_sizes:
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            want = reference(x)
        cells: dict[str, dict[str, Any]] = {}
        calls, settle = {}, {}
        for label, engine in engines.items():
            if isinstance(engine, str):
                cells[label] = {"missing": engine}
                continue
            print(f"[{name}] batch {batch}: {label}", file=sys.stderr, flush=True)
            try:
                diff = (engine.run(x).float() - want).abs().max().item()
                calls[label], settle[label] = engine.bind(x), engine.settle_s
                cells[label] = {diff_key: diff, "settings": dict(engine.settings)}
            except Exception as err:  # recorded in the cell, the other contenders go on
                cells[label] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
        times = time_interleaved(calls, torch.device("cpu"), warmup=args.warmup,
                                 repeats=args.rounds, min_repeat_s=args.min_repeat_s,
                                 settle_s=settle)  # fmt: skip
        for label, seconds in times.items():
            cells[label]["ms_per_batch"] = 1e3 * statistics.median(seconds)
            cells[label]["ms_per_batch_rounds"] = [1e3 * s for s in seconds]
        result["batches"].append({"batch_size": batch, "cells": cells})
    result["load_after"] = os.getloadavg()
    return result


def _ms(cells: dict[str, Any], label: str) -> float | None:
    return cells.get(label, {}).get("ms_per_batch")


def per_round_ratio(
    cells: dict[str, Any], nums: tuple[str, ...], dens: tuple[str, ...]
) -> tuple[float, float, float] | None:
    """Median, min and max over the rounds of (fastest of ``nums`` / fastest of ``dens``) taken
    within each round. A round times every contender back to back, so a slow spell of the
    machine hits both sides of its ratio; the ratio of the medians mixes rounds and does not."""
    num = [r for r in (cells.get(k, {}).get("ms_per_batch_rounds") for k in nums) if r]
    den = [r for r in (cells.get(k, {}).get("ms_per_batch_rounds") for k in dens) if r]
    if not num or not den:
        return None
    n = min(len(r) for r in num + den)
    ratios = [min(r[i] for r in num) / min(r[i] for r in den) for i in range(n)]
    return statistics.median(ratios), min(ratios), max(ratios)


def _spread(r: tuple[float, float, float] | None) -> str:
    return "-" if r is None else f"{r[0]:.2f} ({r[1]:.2f}-{r[2]:.2f})"


def across(runs: list[tuple[str, list[dict[str, Any]]]]) -> str:
    """One row per model and batch, per run folder: fast / best peer and int8 speed-up, each the
    median of the per-round ratios (``per_round_ratio``)."""
    head = ["model", "batch"]
    head += [f"fast / best peer, {n}" for n, _ in runs] + [f"int8 speed-up, {n}" for n, _ in runs]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    keys: dict[tuple[str, int], list[dict[str, Any] | None]] = {}
    for i, (_, results) in enumerate(runs):
        for r in results:
            for b in r["batches"]:
                row = keys.setdefault((r["model"], b["batch_size"]), [None] * len(runs))
                row[i] = b["cells"]
    order = {m: i for i, m in enumerate(MODELS)}
    for (model, batch), cells in sorted(
        keys.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1])
    ):
        fast = [per_round_ratio(c, ("convzoo fast",), PEERS) if c else None for c in cells]
        int8 = [per_round_ratio(c, FP32, INT8) if c else None for c in cells]
        vals = [f"{r[0]:.2f}" if r else "-" for r in fast + int8]
        lines.append("| " + " | ".join([model, str(batch), *vals]) + " |")
    return "\n".join(lines)


def table(results: list[dict[str, Any]]) -> str:
    head = ["model", "batch", "tv eager", "cz fast", "ORT", "OpenVINO", "fast / best peer",
            "per round", "fast engine", "ORT int8", "OV int8", "OV on ORT int8", "int8 speed-up",
            "per round"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    fmt = lambda v, spec=".1f": "-" if v is None else format(v, spec)  # noqa: E731
    for r in results:
        for b in r["batches"]:
            c = b["cells"]
            peers = [v for v in (_ms(c, p) for p in PEERS) if v is not None]
            fp32 = [v for v in (_ms(c, f) for f in FP32) if v is not None]
            int8 = [v for v in (_ms(c, q) for q in INT8) if v is not None]
            fast = _ms(c, "convzoo fast")
            row = [r["model"], str(b["batch_size"]), *(fmt(_ms(c, k)) for k in FP32)]
            row += [fmt(_ratio(fast, min(peers) if peers else None), ".2f")]
            row += [_spread(per_round_ratio(c, ("convzoo fast",), PEERS))]
            fast = c.get("convzoo fast", {}).get("settings", {})
            runoff = " (run-off)" if fast.get("trial_runoff") else ""
            row += [fast.get("chosen", "-") + runoff]
            row += [fmt(_ms(c, q)) for q in INT8]
            row += [fmt(_ratio(min(fp32) if fp32 else None, min(int8) if int8 else None), ".2f")]
            row += [_spread(per_round_ratio(c, FP32, INT8))]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def timing_parser(doc: str, rounds: int) -> argparse.ArgumentParser:
    """The flags this script shares with the others that time ``MODELS`` on its cache."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--min-repeat-s", type=float, default=0.2)
    p.add_argument("--output", type=Path, required=True, help="folder of per-model JSON files")
    p.add_argument("--cache", type=Path, default=Path("data_local/cpu_runtimes"),
                   help="exported files, reused across runs (shared by the scripts)")  # fmt: skip
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script")
    return p


def check_timing_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if min(args.batch_sizes) < 1 or args.threads < 1 or args.rounds < 1 or args.input_size < 1:
        p.error("batch sizes, --threads, --rounds and --input-size must be >= 1")


def main(argv: list[str] | None = None) -> int:
    p = timing_parser(__doc__ or "", rounds=5)
    p.add_argument("--table", action="store_true", help="print the table of --output and exit")
    p.add_argument("--across", type=Path, nargs="+", default=[],
                   help="with --table: also the per-round ratios of these run folders beside "
                        "--output's, one column each")  # fmt: skip
    args = p.parse_args(argv)
    check_timing_args(p, args)
    if args.smoke:
        args.models, args.batch_sizes, args.input_size = ["squeezenet1_1"], [1, 2], 64
        args.rounds, args.warmup, args.min_repeat_s = 2, 1, 0.01
    args.output.mkdir(parents=True, exist_ok=True)
    if not args.table:
        torch.set_num_threads(args.threads)
        # The provenance records this script's own timing settings, not BenchConfig's defaults.
        machine = provenance(BenchConfig(threads=args.threads, batch_sizes=tuple(args.batch_sizes),
                                         warmup=args.warmup, repeats=args.rounds,
                                         min_repeat_s=args.min_repeat_s))  # fmt: skip
        for name in args.models:
            result = {**measure(name, args), "provenance": machine, "settings": vars(args)}
            batches = "-".join(str(b) for b in args.batch_sizes)
            path = args.output / f"{name}-b{batches}.json"
            path.write_text(json.dumps(result, indent=2, default=str) + "\n")
            print(f"wrote {path}", file=sys.stderr)
    results = _read(args.output)
    print(table(results))
    if args.across:
        print()
        runs = [(args.output, results)] + [(d, _read(d)) for d in args.across]
        print(across([(_started(rs) or d.name, rs) for d, rs in runs]))
    return 0


def _started(results: list[dict[str, Any]]) -> str | None:
    """The run's first start time (UTC, to the minute) from the files' provenance."""
    dates = sorted(str(r.get("provenance", {}).get("date", "")) for r in results)
    dates = [d for d in dates if d]
    return dates[0][:16].replace("T", " ") if dates else None


def _read(folder: Path) -> list[dict[str, Any]]:
    if not folder.is_dir():
        raise SystemExit(f"cpu_runtimes: no such run folder: {folder}")
    results = [json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))]
    order = {m: i for i, m in enumerate(MODELS)}
    results.sort(key=lambda r: (r["batches"][0]["batch_size"], order.get(r["model"], len(order))))
    return results


if __name__ == "__main__":
    raise SystemExit(main())
