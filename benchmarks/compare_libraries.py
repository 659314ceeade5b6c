"""convzoo against torchvision and timm, same architectures, same device, one run.

GPU part (``--part gpu``; needs CUDA): synthetic data resident on the device, bfloat16 autocast,
channels_last, cuDNN autotuning on for every library; batch 256 for inference and 128 for a
training step (forward, cross-entropy, backward, SGD with momentum). Measured per architecture:
eager inference and training of convzoo, torchvision and timm, and convzoo's inference fast path
(BatchNorm folded into convs, torch.compile, the compiled call replayed as a CUDA graph; compile
time recorded apart). Printed ratios (>1 means convzoo is faster):

    infer x   = faster of tv/timm eager inference time / convzoo eager      (target >= 1.0)
    train x   = faster of tv/timm eager training-step time / convzoo eager  (target >= 1.0)
    fast x    = faster of tv/timm eager inference time / convzoo fast path  (target >= 1.6)

CPU part (``--part cpu``): 2 threads, float32, batch 1: per-image latency of convzoo's CPU fast path
(``bench --fast``: the fastest of inductor, ONNX Runtime and OpenVINO, picked by a trial) over
torchvision eager (inference_mode, contiguous): ``cz fast / tv`` (target <= 0.8). The full CPU
comparison against ONNX Runtime and OpenVINO is ``benchmarks/cpu_runtimes.py``.

Every path is prepared and timed by ``convzoo.bench`` (``runtimes.torch_engine``, the ``fast``
runtime, ``runner.train_step``, ``measure.time_calls``): this script only picks the models.

Architectures not registered in convzoo are skipped with a note. All inputs are 224x224 (the
ImageNet evaluation size every library shares; NFNet-F0's own is 256). ``--smoke`` runs tiny
sizes on the CPU so the script itself can be checked anywhere.

    python benchmarks/compare_libraries.py --part gpu --output benchmarks/results/compare_gpu.json
    python benchmarks/compare_libraries.py --part cpu --output benchmarks/results/compare_cpu.json
    python benchmarks/compare_libraries.py --smoke
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import convzoo
from convzoo.bench.measure import time_calls
from convzoo.bench.runner import BenchConfig, provenance, train_step
from convzoo.bench.runtimes import (
    Artifacts,
    Engine,
    RuntimeOptions,
    autocast_context,
    compiled_model,
    prepare_engine,
    torch_engine,
)

# convzoo name -> (torchvision name, timm name); None where that library lacks the architecture.
GPU_ARCHS: dict[str, tuple[str | None, str | None]] = {
    "resnet18": ("resnet18", "resnet18"),
    "resnet50": ("resnet50", "resnet50"),
    "densenet121": ("densenet121", "densenet121"),
    "resnext50_32x4d": ("resnext50_32x4d", "resnext50_32x4d"),
    "wide_resnet50_2": ("wide_resnet50_2", "wide_resnet50_2"),
    "efficientnet_b0": ("efficientnet_b0", "efficientnet_b0"),
    "mobilenet_v2": ("mobilenet_v2", "mobilenetv2_100"),
    "mobilenet_v3_large": ("mobilenet_v3_large", "mobilenetv3_large_100"),
    "squeezenet1_0": ("squeezenet1_0", None),
    "squeezenet1_1": ("squeezenet1_1", None),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", None),
    "convnext_tiny": ("convnext_tiny", "convnext_tiny"),
    "nfnet_f0": (None, "dm_nfnet_f0"),
    "nf_resnet50": (None, "nf_resnet50"),
    "fbnet_c": (None, "fbnetc_100"),
}
CPU_ARCHS = ("resnet18", "mobilenet_v2", "shufflenet_v2_x1_0", "squeezenet1_1")


@dataclass(frozen=True)
class Setup:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None = float32
    channels_last: bool
    input_size: int
    infer_batch: int
    train_batch: int
    timing: BenchConfig  # warm-up, repeats, min seconds per repeat
    compile: bool


def build(library: str, name: str) -> nn.Module:
    if library == "convzoo":
        return convzoo.create_model(name)
    if library == "torchvision":
        import torchvision

        return torchvision.models.get_model(name, weights=None)
    import timm

    return timm.create_model(name, pretrained=False)


def _batch(s: Setup, n: int) -> Tensor:
    return torch.randn(n, 3, s.input_size, s.input_size, device=s.device)


def _median_ms(fn: Callable[[], Any], s: Setup) -> float:
    t = s.timing
    times = time_calls(
        fn, s.device, warmup=t.warmup, repeats=t.repeats, min_repeat_s=t.min_repeat_s
    )
    return 1e3 * statistics.median(times)


def _dtype(s: Setup) -> str:
    return "float32" if s.dtype is None else str(s.dtype).removeprefix("torch.")


def _engine(runtime: str, model: nn.Module, s: Setup, folder: Path) -> Engine:
    """``model`` prepared by convzoo.bench: ``eager`` as users run it, or the ``fast`` path."""
    example = torch.zeros(1, 3, s.input_size, s.input_size)
    opts = RuntimeOptions(threads=torch.get_num_threads(), channels_last=s.channels_last)
    if runtime == "eager":
        engine: Engine = torch_engine("eager", model, example, opts, s.device)
    elif not s.compile:  # the fast path without compilation: folded, channels_last, CUDA graph
        opts = replace(opts, fold_bn=True, channels_last=True)
        engine = torch_engine("eager", model, example, opts, s.device)
        engine.cuda_graph_max_batch = sys.maxsize if s.device.type == "cuda" else 0
    else:
        artifacts = Artifacts(model, example, opts, folder)
        engine = prepare_engine("fast", model, example, opts, artifacts, s.device)
    if hasattr(engine, "autocast"):
        engine.autocast = autocast_context(_dtype(s), s.device)
    return engine


def infer_ms(model: nn.Module, s: Setup, batch: int) -> float:
    """Median milliseconds per batch of eager inference."""
    with tempfile.TemporaryDirectory() as tmp:
        return _median_ms(_engine("eager", model, s, Path(tmp)).bind(_batch(s, batch)), s)


def train_ms(model: nn.Module, s: Setup) -> float:
    """Median milliseconds per training step (forward, loss, backward, SGD step)."""
    model = model.to(s.device).train()
    if s.channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = _batch(s, s.train_batch)
    if s.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    classes = getattr(model, "num_classes", 1000)  # torchvision models lack it: all are 1000-way
    y = torch.randint(0, classes, (s.train_batch,), device=s.device)
    return _median_ms(train_step(model, x, y, autocast_context(_dtype(s), s.device)), s)


def fast_infer_ms(model: nn.Module, s: Setup, batch: int) -> tuple[float, dict[str, Any]]:
    """convzoo's inference fast path; returns ms per batch and its settings (compile time...)."""
    x = _batch(s, batch)
    with tempfile.TemporaryDirectory() as tmp:
        engine = _engine("fast", model, s, Path(tmp))
        engine.run(x)  # compiles, where the engine compiles: not part of the latency
        call = engine.bind(x)
        info = dict(engine.settings)
        compiled = compiled_model(engine)
        if compiled is not None:
            info["compile_s"] = sum(compiled.compile_s.values())
        return _median_ms(call, s), info


def _provenance(s: Setup) -> dict[str, Any]:
    full = provenance(
        BenchConfig(device=str(s.device), dtype=_dtype(s), channels_last=s.channels_last)
    )
    keep = ("device", "device_name", "threads", "dtype", "torch", "cudnn", "python", "date")
    return {
        **{k: full[k] for k in keep},
        "input_size": s.input_size,
        "infer_batch": s.infer_batch,
        "train_batch": s.train_batch,
        "compile": s.compile,
        "timing": {
            "warmup": s.timing.warmup,
            "repeats": s.timing.repeats,
            "min_repeat_s": s.timing.min_repeat_s,
        },
    }


def _free(s: Setup) -> None:
    if s.device.type == "cuda":
        torch.cuda.empty_cache()


def _ratio(theirs: list[float | None], ours: float | None) -> float | None:
    known = [t for t in theirs if t is not None]
    return min(known) / ours if known and ours else None


def run_gpu_part(s: Setup, names: list[str]) -> list[dict[str, Any]]:
    rows = []
    registered = set(convzoo.list_models())
    for name in names:
        tv_name, timm_name = GPU_ARCHS.get(name, (None, None))
        row: dict[str, Any] = {"model": name, "torchvision": tv_name, "timm": timm_name}
        if name not in registered:
            row["note"] = "not registered in convzoo yet: skipped"
            print(f"[skip] {name}: {row['note']}", file=sys.stderr)
            rows.append(row)
            continue
        for library, lib_name in (("convzoo", name), ("torchvision", tv_name), ("timm", timm_name)):
            if lib_name is None:
                continue
            print(f"[gpu] {name}: {library} {lib_name}", file=sys.stderr, flush=True)
            try:
                row[f"{library}_infer_ms"] = infer_ms(build(library, lib_name), s, s.infer_batch)
                _free(s)
                row[f"{library}_train_ms"] = train_ms(build(library, lib_name), s)
                _free(s)
                if library == "convzoo":
                    ms, info = fast_infer_ms(build(library, lib_name), s, s.infer_batch)
                    row["convzoo_fast_infer_ms"], row["fast_path"] = ms, info
            except torch.OutOfMemoryError:
                row[f"{library}_error"] = "OOM"
                _free(s)
        theirs_i = [row.get("torchvision_infer_ms"), row.get("timm_infer_ms")]
        theirs_t = [row.get("torchvision_train_ms"), row.get("timm_train_ms")]
        row["infer_x"] = _ratio(theirs_i, row.get("convzoo_infer_ms"))
        row["train_x"] = _ratio(theirs_t, row.get("convzoo_train_ms"))
        row["fast_x"] = _ratio(theirs_i, row.get("convzoo_fast_infer_ms"))
        rows.append(row)
    return rows


def run_cpu_part(s: Setup, fast: Setup, names: list[str]) -> list[dict[str, Any]]:
    """Eager models run as users run them (``s``, contiguous); the fast path uses ``fast``."""
    rows = []
    registered = set(convzoo.list_models())
    for name in names:
        row: dict[str, Any] = {"model": name}
        if name not in registered:
            row["note"] = "not registered in convzoo yet: skipped"
            print(f"[skip] {name}: {row['note']}", file=sys.stderr)
            rows.append(row)
            continue
        print(f"[cpu] {name}", file=sys.stderr, flush=True)
        tv_name = GPU_ARCHS.get(name, (None, None))[0]
        if tv_name is not None:
            row["torchvision_eager_ms"] = infer_ms(build("torchvision", tv_name), s, 1)
        row["convzoo_eager_ms"] = infer_ms(build("convzoo", name), s, 1)
        row["convzoo_fast_ms"], row["fast_path"] = fast_infer_ms(build("convzoo", name), fast, 1)
        tv = row.get("torchvision_eager_ms")
        row["fast_over_tv"] = row["convzoo_fast_ms"] / tv if tv else None
        rows.append(row)
    return rows


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def print_gpu(rows: list[dict[str, Any]], s: Setup) -> None:
    print(
        f"\nGPU: batch {s.infer_batch} inference / {s.train_batch} training, "
        f"{s.input_size}px, autocast {s.dtype}, channels_last={s.channels_last}; ms per batch"
    )
    head = (
        "model",
        "cz inf",
        "tv inf",
        "timm inf",
        "cz fast",
        "cz train",
        "tv train",
        "timm train",
    )
    head += ("infer x", "train x", "fast x")
    print("  ".join(f"{h:>10}" if i else f"{h:<20}" for i, h in enumerate(head)))
    for r in rows:
        if "note" in r:
            print(f"{r['model']:<20}  {r['note']}")
            continue
        vals = [
            r.get(k)
            for k in (
                "convzoo_infer_ms",
                "torchvision_infer_ms",
                "timm_infer_ms",
                "convzoo_fast_infer_ms",
                "convzoo_train_ms",
                "torchvision_train_ms",
                "timm_train_ms",
                "infer_x",
                "train_x",
                "fast_x",
            )
        ]
        print(f"{r['model']:<20}  " + "  ".join(f"{_fmt(v):>10}" for v in vals))


def print_cpu(rows: list[dict[str, Any]], s: Setup) -> None:
    print(
        f"\nCPU: {torch.get_num_threads()} threads, float32, batch 1, {s.input_size}px; "
        "ms per image"
    )
    head = ("model", "tv eager", "cz eager", "cz fast", "cz fast / tv")
    print("  ".join(f"{h:>12}" if i else f"{h:<20}" for i, h in enumerate(head)))
    for r in rows:
        if "note" in r:
            print(f"{r['model']:<20}  {r['note']}")
            continue
        vals = [r.get(k) for k in ("torchvision_eager_ms", "convzoo_eager_ms", "convzoo_fast_ms")]
        cells = [*(f"{_fmt(v):>12}" for v in vals), f"{_fmt(r['fast_over_tv'], '.3f'):>12}"]
        print(f"{r['model']:<20}  " + "  ".join(cells))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--part", choices=("gpu", "cpu", "all"), default="all")
    p.add_argument("--models", nargs="+", help="convzoo names (default: the issue's list)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, checks the script")
    p.add_argument("--no-compile", action="store_true", help="fast path without torch.compile")
    p.add_argument("--output", type=Path, help="JSON file for the results")
    args = p.parse_args(argv)

    cuda = torch.cuda.is_available() and not args.smoke
    results: dict[str, Any] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    versions = {"torch": torch.__version__}
    for lib in ("torchvision", "timm"):
        versions[lib] = __import__(lib).__version__
    results["versions"] = versions
    quick = BenchConfig(warmup=1, repeats=3, min_repeat_s=0.01)
    if args.part in ("gpu", "all"):
        if not cuda and not args.smoke:
            print("GPU part: no CUDA device; skipped (run it on a GPU machine)", file=sys.stderr)
        else:
            torch.backends.cudnn.benchmark = True
            s = Setup(
                device=torch.device("cuda" if cuda else "cpu"),
                dtype=torch.bfloat16,
                channels_last=True,
                input_size=224 if cuda else 64,
                infer_batch=256 if cuda else 2,
                train_batch=128 if cuda else 2,
                timing=BenchConfig(warmup=3, repeats=5, min_repeat_s=0.2) if cuda else quick,
                compile=not args.no_compile,
            )
            names = args.models or list(GPU_ARCHS)
            rows = run_gpu_part(s, names)
            results["gpu"] = {"provenance": _provenance(s), "rows": rows}
            print_gpu(rows, s)
    if args.part in ("cpu", "all"):
        threads = torch.get_num_threads()
        torch.set_num_threads(2)
        s = Setup(
            device=torch.device("cpu"),
            dtype=None,
            channels_last=False,  # eager as users run it; the fast path adds channels_last
            input_size=64 if args.smoke else 224,
            infer_batch=1,
            train_batch=1,
            timing=quick if args.smoke else BenchConfig(warmup=5, repeats=15, min_repeat_s=0.2),
            compile=not args.no_compile,
        )
        fast = Setup(**{**s.__dict__, "channels_last": True})
        rows = run_cpu_part(s, fast, args.models or list(CPU_ARCHS))
        results["cpu"] = {"provenance": _provenance(s), "rows": rows}
        print_cpu(rows, s)
        torch.set_num_threads(threads)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
