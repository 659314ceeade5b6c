"""What a benchmark measures (``BenchConfig``), on which model (``ModelSpec``), in what units
(``UNITS``), and where the numbers were taken (``provenance``)."""

from __future__ import annotations

import contextlib
import datetime
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from convzoo.bench.runtimes import RUNTIMES
from convzoo.cliutil import UsageError, option, validate_config
from convzoo.registry import create_model, get_entry

__all__ = ["DTYPES", "UNITS", "BenchConfig", "ModelSpec", "provenance", "registered_spec"]

UNITS: dict[str, str] = {
    "params": "parameters (count)",
    "params_trainable": "parameters (count)",
    "macs": "multiply-adds per image (one multiply-add = 1 MAC = 2 FLOPs)",
    "macs_per_stage": "multiply-adds per image",
    "size_mb_fp32": "MB (2^20 bytes) of the state dict, floating tensors at fp32",
    "size_mb_fp16": "MB (2^20 bytes) of the state dict, floating tensors at fp16",
    "size_mb_int8": "MB (2^20 bytes) of the int8 export's tensors (bench.compare.int8_mb)",
    "input_size": "pixels (height = width)",
    "batch_size": "images",
    "infer_ms_per_image": "ms per image, median over repeats",
    "infer_ms_per_image_p25": "ms per image, 25th percentile over repeats",
    "infer_ms_per_image_p75": "ms per image, 75th percentile over repeats",
    "infer_ms_per_image_min": "ms per image, fastest repeat",
    "infer_ms_per_image_max": "ms per image, slowest repeat",
    "infer_images_per_s": "images per second (batch size / median batch time)",
    "infer_peak_mem_mib": "MiB above the level before the call (activations, workspace)",
    "train_ms_per_image": "ms per image for forward + backward + SGD step, median over repeats",
    "train_ms_per_image_p25": "ms per image, 25th percentile",
    "train_ms_per_image_p75": "ms per image, 75th percentile",
    "train_peak_mem_mib": "MiB above the level before the step (activations, gradients, momentum)",
    "compile_s": "seconds for the first compiled call (compilation + one run), not in latency",
    "max_abs_diff_vs_eager": "largest |output - eager float32 output| on the cell's input batch",
    "throughput_images_per_s": "images per second at the largest batch size that fit",
    "accuracy_top1_pct": "top-1 accuracy in percent",
}


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# how a dtype other than float32 is applied (bench.runtimes; each cell records its own)
DTYPE_HOW = " (torch: autocast; OpenVINO: inference precision hint; ONNX Runtime: unavailable)"


@dataclass(frozen=True)
class BenchConfig:
    """``convzoo bench``'s flags are generated from these fields (``cliutil``)."""

    batch_sizes: tuple[int, ...] = option((1, 2, 4, 8, 16, 32, 64), low=1)  # images
    device: str = option("cpu", device=True)
    dtype: str = option("float32", choices=DTYPES)  # bfloat16 / float16: see DTYPE_HOW
    channels_last: bool = False  # torch runtimes: NHWC weights and inputs
    runtimes: tuple[str, ...] = option(("eager",), choices=RUNTIMES)  # timed in interleaved rounds
    fast: bool = False  # also the "fast" runtime (bench.fast): the fastest path for the device
    fold_bn: bool = False  # torch runtimes: BatchNorm folded into the preceding conv
    cuda_graphs: bool = False  # replay a captured CUDA graph for batches <= cuda_graph_max_batch
    cuda_graph_max_batch: int = option(16, low=1)  # images
    train: bool = False  # also time a training step (eager, SGD with momentum)
    warmup: int = option(3, low=0)  # untimed calls
    repeats: int = option(7, low=1)  # timed repeats (interleaved rounds)
    min_repeat_s: float = option(0.05, low=0)  # seconds: a repeat runs calls until this long
    memory_cap_mib: float | None = option(None, above=0)  # simulated memory: bigger peaks are OOM
    threads: int | None = option(None, low=1)  # CPU threads; None keeps torch's default
    calibration_data: str | None = None  # int8 runtimes: CIFAR or image folder; None: the digits
    calibration_images: int = option(64, low=1)  # int8 runtimes: images read for calibration

    def __post_init__(self) -> None:
        validate_config(self)
        if not self.batch_sizes or not self.runtimes:
            raise UsageError("batch_sizes and runtimes need at least one value each")
        if self.cuda_graphs and not self.device.startswith("cuda"):
            raise UsageError("cuda_graphs needs device='cuda'")
        if self.fast and "fast" not in self.runtimes:
            object.__setattr__(self, "runtimes", (*self.runtimes, "fast"))

    @property
    def memory_format(self) -> str:
        return "channels_last" if self.channels_last else "contiguous (NCHW)"


@dataclass(frozen=True)
class ModelSpec:
    """What to benchmark: a name, how to build the module (on CPU, float32), its input."""

    name: str
    build: Callable[[], nn.Module]
    input_size: int
    in_channels: int = 3
    num_classes: int = 1000
    accuracy: float | None = None  # top-1 %, for the accuracy plots
    accuracy_source: str = ""
    accuracy_dataset: str = ""  # plots label each point with it: CIFAR and ImageNet do not mix


def registered_spec(
    name: str,
    *,
    tiny: bool = False,
    input_size: int | None = None,
    accuracy: float | None = None,
    accuracy_source: str = "",
) -> ModelSpec:
    """A registered model, full size or at its ``Tiny`` overrides and input size. Accuracy
    defaults to the paper's number in ``model_info``."""
    entry = get_entry(name)
    overrides = dict(entry.tiny.overrides) if tiny else {}
    cfg_classes = overrides.get("num_classes", entry.info.num_classes)
    size = input_size or (entry.tiny.input_size if tiny else entry.info.input_size)
    dataset = ""
    if accuracy is None and entry.info.paper_accuracy is not None:
        accuracy = entry.info.paper_accuracy
        dataset = entry.info.paper_accuracy_dataset or entry.info.dataset
        accuracy_source = f"paper ({entry.info.table})"
    return ModelSpec(
        name=name,
        build=lambda: create_model(name, **overrides),
        input_size=size,
        in_channels=entry.info.in_channels,
        num_classes=cfg_classes,
        accuracy=accuracy,
        accuracy_source=accuracy_source,
        accuracy_dataset=dataset,
    )


def provenance(cfg: BenchConfig) -> dict[str, Any]:
    """Where and how the numbers were taken; stored with every result."""
    dev = torch.device(cfg.device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        cudnn = torch.backends.cudnn.version()
    else:
        name = _cpu_name()
        cudnn = None
    return {
        "device": cfg.device,
        "device_name": name,
        "threads": torch.get_num_threads(),
        "dtype": cfg.dtype + (DTYPE_HOW if cfg.dtype != "float32" else ""),
        "memory_format": cfg.memory_format,
        "runtimes": list(cfg.runtimes),
        "fold_bn": cfg.fold_bn,
        "cuda_graphs": cfg.cuda_graphs,
        "batch_sizes": list(cfg.batch_sizes),
        "warmup": cfg.warmup,
        "repeats": cfg.repeats,
        "min_repeat_s": cfg.min_repeat_s,
        "memory_method": (
            "torch.cuda.max_memory_allocated above the level before the call"
            if dev.type == "cuda"
            else "CPU allocator events from torch.profiler(profile_memory=True): peak above the level before the call"
        ),
        "memory_cap_mib": cfg.memory_cap_mib,
        "torch": torch.__version__,
        "cudnn": cudnn,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
