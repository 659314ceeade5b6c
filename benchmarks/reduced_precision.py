"""OpenVINO's bfloat16 against int8 and float32 on the CPU: which reduced precision is faster?

Issue 16's int8 target (>= 1.5x over the best fp32 path) misses on efficientnet_b0 on both CPUs
measured (BENCHMARKS.md section 9): its SiLU and squeeze-excitation do not quantize into fused
int8 kernels. On a CPU with native bfloat16 (AVX-512 BF16 / AMX), OpenVINO can instead run the
float model in bf16 (its inference precision hint), and can run the ops NNCF did not quantize in
bf16 too. This script times those beside the fp32 and int8 engines, interleaved in one run:

    ORT fp32            the model's ONNX export in ONNX Runtime (``bench``'s ``onnxruntime``)
    OV f32              the same file in OpenVINO, f32 hint (``openvino``)
    OV bf16             the same file in OpenVINO, bf16 hint (``openvino`` under ``--dtype
                        bfloat16``)
    ORT int8            ONNX Runtime's QDQ file (``onnxruntime-int8``)
    OV int8             NNCF's IR, f32 hint: unquantized ops in f32 (``openvino-int8``)
    OV int8 + bf16      NNCF's IR, bf16 hint: unquantized ops in bf16 (``openvino-int8`` under
                        ``--dtype bfloat16``)

Weights, files and calibration are ``cpu_runtimes.py``'s (convzoo's model converted from
torchvision's random-init one, seed 0; 64 digits), shared through its ``--cache``. Each cell records
the precision OpenVINO compiled to (``inference_precision``: f32 on a CPU without native bf16,
where the bf16 rows measure nothing new) and the largest output difference from PyTorch eager
fp32. Ratios are per round (a round times every contender once), median and range:

    bf16 speed-up       best fp32 (ORT fp32, OV f32) / OV bf16
    int8 speed-up       best fp32 / best of ORT int8, OV int8
    int8 + bf16         best fp32 / OV int8 + bf16

    OMP_NUM_THREADS=2 python benchmarks/reduced_precision.py --output DIR [--models ...]
    python benchmarks/reduced_precision.py --smoke --output /tmp/rp     # tiny, checks the script
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_runtimes import check_timing_args, measure_engines, per_round_ratio, timing_parser

from convzoo.bench.quantize import calibration_images
from convzoo.bench.report import md_table
from convzoo.bench.runtimes import (
    Artifacts,
    Engine,
    OpenVinoEngine,
    OrtEngine,
    RuntimeOptions,
    RuntimeUnavailable,
)
from convzoo.bench.spec import BenchConfig, provenance
from convzoo.interop import from_torchvision

FP32 = ("ORT fp32", "OV f32")
INT8 = ("ORT int8", "OV int8")
BF16 = "OV bf16"
INT8_BF16 = "OV int8 + bf16"
CONTENDERS = (*FP32, BF16, *INT8, INT8_BF16)


def _engines(name: str, size: int, threads: int, folder: Path) -> tuple[dict[str, Any], Any]:
    torch.manual_seed(0)
    tv = torchvision.models.get_model(name, weights=None).eval()
    cz = from_torchvision(name, tv).eval()
    f32 = RuntimeOptions(threads=threads, calibration=calibration_images(size=size, count=64))
    bf16 = RuntimeOptions(threads=threads, dtype="bfloat16")
    files = Artifacts(cz, torch.zeros(1, 3, size, size), f32, folder / "cz", reuse=True)
    files.folder.mkdir(parents=True, exist_ok=True)
    plan = {
        "ORT fp32": lambda: OrtEngine("onnxruntime", files.onnx(), f32),
        "OV f32": lambda: OpenVinoEngine("openvino", files.onnx(), f32),
        BF16: lambda: OpenVinoEngine("openvino", files.onnx(), bf16),
        "ORT int8": lambda: OrtEngine("onnxruntime-int8", files.int8("onnxruntime"), f32),
        "OV int8": lambda: OpenVinoEngine("openvino-int8", files.int8("openvino"), f32),
        INT8_BF16: lambda: OpenVinoEngine("openvino-int8", files.int8("openvino"), bf16),
    }
    engines: dict[str, Engine | str] = {}
    for label, make in plan.items():
        print(f"[{name}] preparing {label}", file=sys.stderr, flush=True)
        try:
            engines[label] = make()
        except RuntimeUnavailable as err:
            engines[label] = str(err)
    return engines, cz


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    size = args.input_size
    engines, model = _engines(name, size, args.threads, args.cache / f"{name}-{size}px")
    return measure_engines(name, engines, model, args, "max_abs_diff_vs_eager")


def table(results: list[dict[str, Any]]) -> str:
    def ms(cells: dict[str, Any], label: str) -> str:
        v = cells.get(label, {}).get("ms_per_batch")
        return "-" if v is None else f"{v:.1f}"

    def ratio(cells: dict[str, Any], num: tuple[str, ...]) -> str:
        # speed-up: best fp32 time / best time of ``num``, per round
        r = per_round_ratio(cells, FP32, num)
        return "-" if r is None else f"{r[0]:.2f} ({r[1]:.2f}-{r[2]:.2f})"

    rows = []
    for r in results:
        for b in r["batches"]:
            c = b["cells"]
            ran = c.get(BF16, {}).get("settings", {}).get("inference_precision", "-")
            rows.append([r["model"], str(b["batch_size"]), *(ms(c, k) for k in CONTENDERS), ran,
                         ratio(c, (BF16,)), ratio(c, INT8), ratio(c, (INT8_BF16,))])  # fmt: skip
    head = ["model", "batch", *CONTENDERS, "bf16 ran as", "bf16 speed-up", "int8 speed-up",
            "int8 + bf16 speed-up"]  # fmt: skip
    return md_table(head, rows)


def main(argv: list[str] | None = None) -> int:
    p = timing_parser(__doc__ or "", rounds=7)
    args = p.parse_args(argv)
    check_timing_args(p, args)
    if args.smoke:
        args.models, args.batch_sizes, args.input_size = ["squeezenet1_1"], [2], 64
        args.rounds, args.warmup, args.min_repeat_s = 2, 1, 0.01
    args.output.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    machine = provenance(BenchConfig(threads=args.threads, batch_sizes=tuple(args.batch_sizes),
                                     warmup=args.warmup, repeats=args.rounds,
                                     min_repeat_s=args.min_repeat_s))  # fmt: skip
    results = []
    for name in args.models:
        result = {**measure(name, args), "provenance": machine, "settings": vars(args)}
        path = args.output / f"{name}.json"
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {path}", file=sys.stderr)
        results.append(result)
    text = table(results)
    (args.output / "reduced_precision.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
