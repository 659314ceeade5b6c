"""PyTorch's own int8 path (PT2E with the x86 inductor quantizer) against ONNX Runtime, on a CPU.

Issue 16 names PyTorch's post-training static quantization, the PT2E flow with the x86 inductor
quantizer, as one way to an int8 model. Since torch 2.10 that flow lives in ``torchao``
(``torchao.quantization.pt2e``): ``torch.export`` the model with a dynamic batch, annotate it with
``X86InductorQuantizer``'s default configuration (static, per-channel int8 weights, u8
activations), calibrate, convert, then ``torch.compile`` with freezing, where torchao's inductor
passes fuse each quantize/conv/dequantize (and its activation: ReLU, SiLU, ...) into one oneDNN
int8 convolution. This script times that compiled model against ONNX Runtime's fp32 file and
its int8 QDQ file (``convzoo export --int8``'s quantizer) and, where OpenVINO and NNCF are
installed, NNCF's int8 IR in OpenVINO (``export --format openvino --int8``), on the same weights
and the same calibration images (``bench.quantize.calibration_images``: the embedded digits), in
interleaved rounds, with ONNX Runtime's threads kept from spinning into the next contender; each
model's outputs are compared with eager fp32 (max abs difference).

    OMP_NUM_THREADS=2 python benchmarks/pt2e_int8.py mobilenet_v2 efficientnet_b0 \\
        --batch-sizes 1 16 --output benchmarks/results/pt2e_int8.json

Needs ``torchao`` (``pip install torchao``) and ``onnxruntime``; without either it says so in
one line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from convzoo.bench.measure import time_interleaved
from convzoo.bench.quantize import calibration_images, quantize_onnx, quantize_openvino
from convzoo.bench.report import md_table
from convzoo.bench.runtimes import (
    OpenVinoEngine,
    OrtEngine,
    RuntimeOptions,
    RuntimeUnavailable,
    require,
)
from convzoo.interop.export import export_onnx
from convzoo.registry import create_model, get_entry, list_models


def pt2e_int8(model: nn.Module, calibration: Tensor, batch: int = 4) -> nn.Module:
    """``model`` quantized by torchao's PT2E flow with ``X86InductorQuantizer`` (default, static)
    and calibrated on ``calibration``; not yet compiled."""
    require("torchao", "pt2e")
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example = calibration[:2]  # batch 2: the exporter would specialize a traced batch of 1
    dynamic = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    graph = torch.export.export(model.eval(), (example,), dynamic_shapes=dynamic).module()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(graph, quantizer)  # type: ignore[arg-type]
    with torch.no_grad():
        for i in range(0, len(calibration), batch):
            prepared(calibration[i : i + batch])
    return convert_pt2e(prepared)


def _has_openvino() -> bool:
    """OpenVINO and NNCF both importable (then NNCF's int8 IR is a contender too)."""
    try:
        require("openvino", "openvino")
        require("nncf", "openvino")
    except RuntimeUnavailable:
        return False
    return True


def compile_frozen(model: nn.Module) -> Any:
    """``torch.compile`` with inductor's freezing (which the int8 fusion passes run under)."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    return torch.compile(model)


def _openvino_version() -> str | None:
    if not _has_openvino():
        return None
    import openvino

    return str(openvino.__version__).split("-")[0]


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def measure(name: str, batch_sizes: list[int], *, rounds: int, threads: int, tiny: bool,
            folder: Path) -> list[dict[str, Any]]:  # fmt: skip
    entry = get_entry(name)
    size = entry.tiny.input_size if tiny else entry.info.input_size
    torch.manual_seed(0)
    model = create_model(name, **(entry.tiny.overrides if tiny else {})).eval()
    calib = calibration_images(None, size=size, count=16 if tiny else 64)
    t0 = time.perf_counter()
    compiled = compile_frozen(pt2e_int8(model, calib))
    fp32, int8 = folder / f"{name}.onnx", folder / f"{name}-int8.onnx"
    export_onnx(model, fp32, calib[:2])
    quantize_onnx(fp32, int8, calib)
    opts = RuntimeOptions(threads=threads, ort_spinning=False)
    engines = {"onnxruntime": OrtEngine("onnxruntime", fp32, opts),
               "onnxruntime-int8": OrtEngine("onnxruntime-int8", int8, opts)}  # fmt: skip
    if _has_openvino():
        ir = folder / f"{name}-int8-openvino.xml"
        quantize_openvino(fp32, ir, calib)
        engines["openvino-int8"] = OpenVinoEngine("openvino-int8", ir, opts)
    prepare_s = time.perf_counter() - t0
    cells = []
    for bs in batch_sizes:
        x = torch.randn(bs, *calib.shape[1:], generator=torch.Generator().manual_seed(bs))
        with torch.no_grad():
            want = model(x)
            got = {"pt2e-int8": compiled(x)}  # the first call at this batch compiles
            got.update({k: e.run(x) for k, e in engines.items()})
            fns = {"pt2e-int8": lambda x=x: compiled(x)}
            fns.update({k: e.bind(x) for k, e in engines.items()})
            times = time_interleaved(fns, torch.device("cpu"), warmup=2, repeats=rounds,
                                     min_repeat_s=0.3)  # fmt: skip
        cell: dict[str, Any] = {"model": name, "batch": bs, "input_size": size, "contenders": {}}
        for k, ts in times.items():
            cell["contenders"][k] = {
                "ms_median": 1e3 * statistics.median(ts),
                "ms_rounds": [1e3 * t for t in ts],
                "max_abs_diff_vs_eager": float((got[k] - want).abs().max()),
            }
        ratios = [a / b for a, b in zip(times["pt2e-int8"], times["onnxruntime-int8"])]
        cell["pt2e_over_ort_int8_per_round_median"] = statistics.median(ratios)
        peers = [k for k in times if k.endswith("-int8") and k != "pt2e-int8"]
        best = [min(r) for r in zip(*(times[k] for k in peers))]
        ratios = [a / b for a, b in zip(times["pt2e-int8"], best)]
        cell["pt2e_over_best_int8_per_round_median"] = statistics.median(ratios)
        cell["output_scale"] = float(want.abs().max())
        cells.append(cell)
    cells[0]["prepare_s"] = prepare_s
    return cells


def markdown(cells: list[dict[str, Any]]) -> str:
    ov = any("openvino-int8" in c["contenders"] for c in cells)
    header = ["model", "batch", "PT2E int8 (inductor) ms", "ORT int8 ms", "ORT fp32 ms",
              "PT2E / ORT int8 (per-round median)"]  # fmt: skip
    if ov:
        header[4:4] = ["OV int8 (NNCF) ms"]
        header.append("PT2E / best int8 peer (per-round median)")
    body = []
    for c in cells:
        ms = {k: v["ms_median"] for k, v in c["contenders"].items()}
        row = [c["model"], str(c["batch"]), f"{ms['pt2e-int8']:.2f}",
               f"{ms['onnxruntime-int8']:.2f}", f"{ms['onnxruntime']:.2f}",
               f"{c['pt2e_over_ort_int8_per_round_median']:.2f}"]  # fmt: skip
        if ov:
            row[4:4] = [f"{ms['openvino-int8']:.2f}" if "openvino-int8" in ms else "-"]
            row.append(f"{c['pt2e_over_best_int8_per_round_median']:.2f}")
        body.append(row)
    return md_table(header, body) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("models", nargs="+")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tiny", action="store_true", help="the models' tiny configurations")
    p.add_argument("--output", type=Path, help="JSON file to write")
    args = p.parse_args(argv)
    unknown = [m for m in args.models if m not in set(list_models())]
    if unknown:
        print(f"pt2e_int8: unknown model(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    cells: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for m in args.models:
                cells += measure(m, args.batch_sizes, rounds=args.rounds, threads=args.threads,
                                 tiny=args.tiny, folder=Path(tmp))  # fmt: skip
    except RuntimeUnavailable as err:
        print(f"pt2e_int8: {err}", file=sys.stderr)
        return 2
    print(markdown(cells), end="")
    if args.output:
        import onnxruntime
        import torchao

        result = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": _cpu_name(),
            "threads": args.threads,
            "rounds": args.rounds,
            "torch": torch.__version__,
            "torchao": torchao.__version__,
            "onnxruntime": onnxruntime.__version__,
            "openvino": _openvino_version(),
            "cells": cells,
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
