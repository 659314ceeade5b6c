"""Post-training static int8 quantization of an ONNX export, calibrated on real images, by each
runtime's own quantizer.

``quantize_onnx``: ONNX Runtime's quantizer (``onnxruntime.quantization.quantize_static``) in
QDQ form: the graph is first pre-processed (shape inference, ORT's graph optimizations, which
fold BatchNorm into the convs), then activation ranges are read off the calibration images
(MinMax), weights quantized per output channel to int8, activations to uint8. ONNX Runtime
fuses the quantize/dequantize pairs into integer kernels.

``quantize_openvino``: OpenVINO's post-training quantizer, NNCF (``nncf.quantize`` on the ONNX
export read into OpenVINO, with NNCF's defaults: preset "performance", symmetric int8 weights per
output channel stored as int8 constants, symmetric int8 activations per tensor on min/max ranges,
fast bias correction), written as OpenVINO IR with FakeQuantize nodes. This is how an OpenVINO
user quantizes, and NNCF places its nodes where OpenVINO's CPU plugin expects them. It is not
the faster int8 file everywhere: in BENCHMARKS.md section 9 OpenVINO running ONNX Runtime's QDQ
file beat it on mobilenet_v2 and efficientnet_b0 and lost on others, and the ranking changed
between machine starts, so the benchmarks time both.

``reduce_range`` (7-bit weights) is on where the CPU lacks AVX-512 VNNI: there, ORT's
u8 x s8 kernels use ``vpmaddubsw``, whose 16-bit intermediate sums can saturate with full 8-bit
weights (ONNX Runtime's quantization documentation), which costs accuracy.

Calibration uses real images (``calibration_images``): the embedded scikit-learn digits by
default, or a folder / CIFAR directory; an untrained model calibrated on noise would say nothing
about the accuracy a user gets. The images are normalized as the model expects its input
(``model_normalization``: the mean and std of its published weights, or the training
normalization a checkpoint stores), since the activation ranges are read off exactly these
inputs; a model with no such record gets the images' own channel mean and std.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from convzoo.bench.runtimes import require

__all__ = [
    "OWN_STATISTICS",
    "Normalization",
    "calibration_images",
    "has_vnni",
    "model_normalization",
    "normalization_record",
    "quantize_onnx",
    "quantize_openvino",
]

OWN_STATISTICS = "the calibration images' own channel mean and std"


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(pixel / 255 - mean) / std`` (mean and std on the 0..1 scale), and where
    the constants come from."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    def __post_init__(self) -> None:
        if not self.mean or len(self.mean) != len(self.std):
            raise ValueError(f"normalization from {self.source}: mean {list(self.mean)} and std "
                             f"{list(self.std)} need one value per channel each")  # fmt: skip
        if min(self.std) <= 0:
            raise ValueError(f"normalization from {self.source}: std must be > 0, got "
                             f"{list(self.std)}")  # fmt: skip


def model_normalization(model: nn.Module) -> Normalization | None:
    """The normalization ``model`` expects, from ``model.pretrained_cfg`` (``convzoo.pretrained``:
    published weights' mean and std, or a training checkpoint's); ``None`` where it records none
    (random weights, or a checkpoint saved without mean and std)."""
    weights = getattr(model, "pretrained_cfg", None)
    prep = getattr(weights, "preprocess", None)
    if weights is None or prep is None or not prep.mean or not prep.std:
        return None
    return Normalization(tuple(prep.mean), tuple(prep.std),
                         f"{weights.library} {weights.weights}")  # fmt: skip


def normalization_record(normalization: Normalization | None) -> dict[str, Any]:
    """How calibration images were normalized, for a report (JSON-ready)."""
    if normalization is None:
        return {"source": OWN_STATISTICS}
    return {"source": normalization.source, "mean": list(normalization.mean),
            "std": list(normalization.std)}  # fmt: skip


def has_vnni() -> bool:
    """Whether the CPU has AVX-512 VNNI or AVX-VNNI (int8 dot products without saturation)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return bool({"avx512_vnni", "avx_vnni"} & flags)
    return False


def calibration_images(
    data: str | None = None,
    *,
    size: int,
    count: int = 64,
    seed: int = 0,
    normalization: Normalization | None = None,
) -> Tensor:
    """``count`` real images as float, balanced over classes: from ``data`` (a CIFAR or image
    folder, as ``--data`` takes), or the digits. Normalized by ``normalization`` (the model's:
    ``model_normalization``), or by the images' own channel mean and std when it is ``None``."""
    from convzoo.data.build import load_splits
    from convzoo.data.datasets import ArrayDataset, channel_stats, find_cifar, read_image

    # A folder is scanned, not decoded: only ``count`` of its images are read.
    folder = data not in (None, "", "digits") and find_cifar(str(data)) is None
    splits = load_splits(data, image_size=size, loader="workers" if folder else "auto")
    train = splits.train
    labels = train.labels
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=g)
    per_class = -(-count // len(splits.classes))
    picked: list[int] = []
    for c in range(len(splits.classes)):
        picked += [int(i) for i in order[labels[order] == c][:per_class]]
    picked = picked[:count]
    if isinstance(train, ArrayDataset):
        images = train.images[picked]
    else:
        arrays = [read_image(train.samples[i][0], size) for i in picked]
        images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    if normalization is None:
        mean, std = channel_stats(images)
    elif len(normalization.mean) != images.shape[1]:
        raise ValueError(f"normalization from {normalization.source} has "
                         f"{len(normalization.mean)} channels; the calibration images have "
                         f"{images.shape[1]}")  # fmt: skip
    else:
        mean, std = list(normalization.mean), list(normalization.std)
    x = images.float() / 255.0
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def quantize_onnx(
    fp32: str | Path,
    out: str | Path,
    calibration: Tensor,
    *,
    batch_size: int = 8,
    reduce_range: bool | None = None,
) -> dict[str, Any]:
    """Write the int8 (QDQ) version of the ONNX model ``fp32`` to ``out``; returns the settings
    and both file sizes (MB, 10**6 bytes) for the report. ``reduce_range``: 7-bit weights
    (True), full 8-bit (False), or None: 7-bit unless this CPU has VNNI (``has_vnni``)."""
    ort = require("onnxruntime", "onnx")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, out = Path(fp32), Path(out)
    session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batches = [calibration[i : i + batch_size] for i in range(0, len(calibration), batch_size)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter({name: b.contiguous().numpy()} for b in batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    if reduce_range is None:
        reduce_range = not has_vnni()
        why = f"auto: this CPU {'lacks' if reduce_range else 'has'} VNNI"
    else:
        why = "asked"
    pre = out.with_name(out.stem + "-pre.onnx")
    try:
        # Both steps log progress through print/logging; a library call should not.
        with contextlib.redirect_stdout(io.StringIO()):
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
    finally:
        pre.unlink(missing_ok=True)
    return {
        "quantizer": f"onnxruntime {ort.__version__} quantize_static",
        "quant_format": "QDQ",
        "weights": "int8 per channel" + (" (7-bit range)" if reduce_range else ""),
        "weight_range": f"{7 if reduce_range else 8}-bit ({why})",
        "activations": "uint8 per tensor, MinMax",
        "calibration_images": len(calibration),
        "size_mb_fp32": fp32.stat().st_size / 1e6,
        "size_mb_int8": out.stat().st_size / 1e6,
    }


def quantize_openvino(fp32: str | Path, out: str | Path, calibration: Tensor) -> dict[str, Any]:
    """Write the ONNX model ``fp32`` quantized to int8 by NNCF as OpenVINO IR (``out`` with
    suffix ``.xml``, and its ``.bin``); returns the settings and both sizes (MB, 10**6 bytes:
    the fp32 ONNX file, the int8 ``.xml`` + ``.bin``) for the report. One calibration image per
    statistics step, every image used."""
    ov = require("openvino", "openvino")
    nncf = require("nncf", "openvino")
    import logging

    fp32, xml = Path(fp32), Path(out).with_suffix(".xml")
    model = ov.Core().read_model(str(fp32))
    images = [calibration[i : i + 1].contiguous().numpy() for i in range(len(calibration))]
    # NNCF logs each step and draws progress bars; a library call should not.
    level = logging.getLogger("nncf").level
    nncf.set_log_level(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            quantized = nncf.quantize(model, nncf.Dataset(images), subset_size=len(images))
    finally:
        logging.getLogger("nncf").setLevel(level)
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    return {
        "quantizer": f"nncf {nncf.__version__} quantize (OpenVINO {ov.__version__.split('-')[0]})",
        "quant_format": "OpenVINO IR, FakeQuantize",
        "weights": "int8 per channel, symmetric",
        "activations": "int8 per tensor, symmetric (preset performance), min/max",
        "calibration_images": len(images),
        "size_mb_fp32": fp32.stat().st_size / 1e6,
        "size_mb_int8": (xml.stat().st_size + xml.with_suffix(".bin").stat().st_size) / 1e6,
    }
