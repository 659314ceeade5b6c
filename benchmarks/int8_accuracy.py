"""int8 accuracy and size: a trained CIFAR checkpoint, fp32 against static int8, on its validation
split.

The checkpoint's model is exported to ONNX and quantized by each runtime's quantizer in
``convzoo.bench.quantize`` (ONNX Runtime's static quantizer: QDQ, per-channel int8 weights, uint8
activations, MinMax ranges; OpenVINO's, NNCF: IR, symmetric int8), calibrated on
``--calibration-images`` training images (never validation images), normalized as in training.
Top-1 on the run's held-out validation split (the split training used) for: PyTorch eager fp32,
ONNX Runtime fp32, ONNX Runtime int8 (weights in this CPU's default range: 7-bit without VNNI,
8-bit with it) and int8 with the other range, OpenVINO int8 (NNCF), and OpenVINO on ONNX
Runtime's QDQ file; file sizes in MB (10**6 bytes). Beside int8, OpenVINO's bfloat16 (the fp32
file under the bf16 precision hint, and NNCF's int8 IR with its unquantized ops in bf16), each with
the precision the plugin compiled to (f32 on a CPU without native bf16).

    convzoo train mobilenet_v2 --data data_local/cifar10 --image-size 32 --epochs 2 \\
        --max-train-samples 10000 --output runs/int8_mobilenet_v2
    python benchmarks/int8_accuracy.py runs/int8_mobilenet_v2/last.pt --output \\
        benchmarks/results/int8_accuracy.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from convzoo.bench.quantize import has_vnni, quantize_onnx, quantize_openvino
from convzoo.bench.runtimes import (
    OpenVinoEngine,
    OrtEngine,
    RuntimeOptions,
    RuntimeUnavailable,
)
from convzoo.data.build import load_splits
from convzoo.data.datasets import ArrayDataset
from convzoo.interop.export import export_onnx
from convzoo.train.config import TrainConfig
from convzoo.train.inference import load_trained


def _normalized(images: Tensor, mean: list[float], std: list[float]) -> Tensor:
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    return (images.float() / 255.0 - m) / s


def _top1(run, x: Tensor, y: Tensor, batch: int) -> float:
    hits = sum(
        int((run(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
        for i in range(0, len(y), batch)
    )
    return 100.0 * hits / len(y)


def openvino_compile_failure(path: Path, shape: tuple[int, ...]) -> str | None:
    """Why OpenVINO's CPU plugin cannot compile the ONNX file ``path`` for ``shape``, or None if
    it can. Tried in a child process: on ONNX Runtime's QDQ files of pre-activation and concat
    nets (RevNet, DenseNet) the plugin raised or crashed the process (2026-12-03, 2026.4.1)."""
    code = (
        "import sys, openvino as ov\n"
        "core = ov.Core(); m = core.read_model(sys.argv[1])\n"
        "m.reshape({m.inputs[0].get_any_name(): [int(v) for v in sys.argv[2:]]})\n"
        "core.compile_model(m, 'CPU')\n"
    )
    argv = [sys.executable, "-c", code, str(path), *map(str, shape)]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if run.returncode == 0:
        return None
    if run.returncode < 0:
        return f"OpenVINO crashed compiling {path.name} (signal {-run.returncode})"
    last = (run.stderr.strip().splitlines() or ["no message"])[-1]
    return f"OpenVINO could not compile {path.name}: {last[:300]}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--calibration-images", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, ckpt = load_trained(args.checkpoint, device="cpu")
    cfg = TrainConfig.from_dict(ckpt["config"])
    splits = load_splits(cfg.data, image_size=ckpt["image_size"], val_fraction=cfg.val_fraction,
                         split_seed=cfg.split_seed, loader="device")  # fmt: skip
    assert isinstance(splits.val, ArrayDataset) and isinstance(splits.train, ArrayDataset)
    x = _normalized(splits.val.images, ckpt["mean"], ckpt["std"])
    y = splits.val.labels
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(splits.train), generator=g)[: args.calibration_images]
    calib = _normalized(splits.train.images[pick], ckpt["mean"], ckpt["std"])
    result: dict[str, Any] = {
        "checkpoint": str(args.checkpoint),
        "model": cfg.model,
        "data": splits.source,
        "val_images": len(y),
        "image_size": ckpt["image_size"],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }
    opts = RuntimeOptions(threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        export_onnx(model, fp32, x[:1])
        result["quantization"] = quantize_onnx(fp32, int8, calib)
        with torch.inference_mode():
            result["top1_torch_fp32"] = _top1(model, x, y, args.batch_size)
        result["top1_ort_fp32"] = _top1(
            OrtEngine("onnxruntime", fp32, opts).run, x, y, args.batch_size
        )
        result["top1_ort_int8"] = _top1(
            OrtEngine("onnxruntime-int8", int8, opts).run, x, y, args.batch_size
        )
        # The file with the other weight range than this CPU's default: 8-bit weights where the
        # default is 7-bit (no VNNI: the saturation the 7-bit range avoids), 7-bit where it is
        # 8-bit (VNNI: what a file portable to CPUs without VNNI costs here).
        other = has_vnni()  # reduce_range of the file with the other range
        other_path = Path(tmp) / "int8-other-range.onnx"
        quantize_onnx(fp32, other_path, calib, reduce_range=other)
        result[f"top1_ort_int8_{7 if other else 8}bit_weights"] = _top1(
            OrtEngine("onnxruntime-int8", other_path, opts).run, x, y, args.batch_size
        )
        try:
            result["quantization_openvino"] = quantize_openvino(fp32, Path(tmp) / "ov.xml", calib)
            ov = OpenVinoEngine("openvino-int8", Path(tmp) / "ov.xml", opts)
            result["top1_openvino_int8"] = _top1(ov.run, x, y, args.batch_size)
            bf16 = RuntimeOptions(threads=args.threads, dtype="bfloat16")
            for key, path in (("bf16", fp32), ("int8_bf16_rest", Path(tmp) / "ov.xml")):
                ov = OpenVinoEngine("openvino", path, bf16)
                result[f"top1_openvino_{key}"] = _top1(ov.run, x, y, args.batch_size)
                result[f"openvino_{key}_ran_as"] = ov.settings["inference_precision"]
            failure = openvino_compile_failure(int8, tuple(x[:1].shape))
            if failure:
                result["top1_openvino_on_ort_int8"] = failure
            else:
                ov = OpenVinoEngine("openvino-int8", int8, opts)
                result["top1_openvino_on_ort_int8"] = _top1(ov.run, x, y, args.batch_size)
        except RuntimeUnavailable as err:
            result["top1_openvino_int8"] = str(err)
    q = result["quantization"]
    result["size_ratio_fp32_over_int8"] = q["size_mb_fp32"] / q["size_mb_int8"]
    result["top1_change_ort_int8_pts"] = result["top1_ort_int8"] - result["top1_ort_fp32"]
    if isinstance(result["top1_openvino_int8"], float):
        qo = result["quantization_openvino"]
        result["size_ratio_fp32_over_openvino_int8"] = qo["size_mb_fp32"] / qo["size_mb_int8"]
        result["top1_change_openvino_int8_pts"] = (
            result["top1_openvino_int8"] - result["top1_ort_fp32"]
        )
        result["top1_change_openvino_bf16_pts"] = (
            result["top1_openvino_bf16"] - result["top1_ort_fp32"]
        )
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
