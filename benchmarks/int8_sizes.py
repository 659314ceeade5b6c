"""int8 file size against fp32, at initialization and with the folded biases a trained net has.

``convzoo export --int8`` on a freshly initialized model understates the int8 file: every
BatchNorm starts with running mean 0, variance 1 and shift 0, so the bias it folds into its
convolution is exactly zero and the exporter writes the convolution without one. A trained
network has a bias on every folded convolution, and ONNX Runtime's QDQ file stores each as int32
with a per-channel scale and zero point (12 bytes a channel, against 4 in fp32), beside the
per-channel weight scales. Those per-channel costs weigh most on nets with few weights a channel
(depthwise layers, small CIFAR nets).

This script writes, for each model, the fp32 ONNX file and ONNX Runtime's int8 file twice: as
initialized, and after giving every BatchNorm non-trivial statistics and affine parameters (the
values do not matter for the size, only that the folded biases are not zero; checked against a
trained ResNet-20 in BENCHMARKS.md). The files are written by ``export_model``, the code behind
``convzoo export --int8``, with its default calibration images.

    python benchmarks/int8_sizes.py resnet20_cifar squeezenet1_1 mobilenet_v2 \\
        shufflenet_v2_x1_0 efficientnet_b0 --output benchmarks/results/int8_sizes.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convzoo.bench.report import md_table
from convzoo.bench.runtimes import RuntimeUnavailable
from convzoo.interop.export import ExportConfig, ExportError, export_model
from convzoo.registry import create_model, get_entry, list_models


def give_bn_statistics(model: nn.Module, seed: int = 1) -> int:
    """Give every BatchNorm of ``model`` the non-zero statistics and affine parameters of a
    trained net (so its folded bias is not zero); returns how many it changed."""
    g = torch.Generator().manual_seed(seed)
    changed = 0
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                c = mod.num_features
                if mod.running_mean is not None and mod.running_var is not None:
                    mod.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                    mod.running_var.copy_(0.5 + torch.rand(c, generator=g))
                if mod.affine:
                    mod.weight.copy_(0.5 + torch.rand(c, generator=g))
                    mod.bias.copy_(0.1 * torch.randn(c, generator=g))
                changed += 1
    return changed


def measure(name: str, folder: Path, *, tiny: bool = False) -> dict[str, Any]:
    """Sizes (MB, 10**6 bytes) of the fp32 and int8 ONNX files ``convzoo export --int8`` writes
    for ``name`` (calibrated on its default images), as initialized and with trained-like
    BatchNorm statistics."""
    entry = get_entry(name)
    size = entry.tiny.input_size if tiny else entry.info.input_size
    row: dict[str, Any] = {"model": name, "input_size": size}
    for state in ("initialized", "bn_statistics"):
        torch.manual_seed(0)
        model = create_model(name, **(entry.tiny.overrides if tiny else {})).eval()
        if state == "bn_statistics":
            row["batchnorms"] = give_bn_statistics(model)
        cfg = ExportConfig(model=name, output=folder / f"{name}-{state}-int8.onnx", int8=True,
                           tiny=tiny)  # fmt: skip
        q = export_model(model, cfg, input_size=size, in_channels=entry.info.in_channels)
        sizes = q.quantization
        row[state] = {
            "fp32_mb": sizes["size_mb_fp32"],
            "int8_mb": sizes["size_mb_int8"],
            "smaller": sizes["size_mb_fp32"] / sizes["size_mb_int8"],
            "int8_max_abs_diff": q.max_abs_diff,
        }
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    header = ["model", "fp32 MB", "int8 MB, initialized", "smaller", "fp32 MB, BN statistics",
              "int8 MB, BN statistics", "smaller"]  # fmt: skip
    body = []
    for r in rows:
        a, b = r["initialized"], r["bn_statistics"]
        body.append([r["model"], f"{a['fp32_mb']:.3f}", f"{a['int8_mb']:.3f}", f"{a['smaller']:.2f}x",
                     f"{b['fp32_mb']:.3f}", f"{b['int8_mb']:.3f}", f"{b['smaller']:.2f}x"])  # fmt: skip
    return md_table(header, body) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("models", nargs="+")
    p.add_argument("--tiny", action="store_true", help="the models' tiny configurations")
    p.add_argument("--output", type=Path, help="JSON file to write")
    args = p.parse_args(argv)
    known = set(list_models())
    unknown = [m for m in args.models if m not in known]
    if unknown:
        print(f"int8_sizes: unknown model(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = [measure(m, Path(tmp), tiny=args.tiny) for m in args.models]
    except (RuntimeUnavailable, ExportError) as err:
        print(f"int8_sizes: {err}", file=sys.stderr)
        return 2
    print(markdown(rows), end="")
    if args.output:
        result = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "rows": rows,
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
