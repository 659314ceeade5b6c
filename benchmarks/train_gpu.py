"""Training-system benchmarks, one prepared script (issue 6). Meant for one CUDA GPU; ``--smoke``
runs every part at tiny sizes on the CPU to prove the script works.

1. data path: training throughput (images/s) with real CIFAR-10 data + on-device augmentation
   (DeviceLoader: crop with 4-pixel padding + flip) against synthetic input already on the
   device, same model, same step; target ratio >= 0.95.
2. accuracy: each model trained with its recipe on the CIFAR-10 JPEG mirror (45k/5k split),
   schedule shortened to ``--epochs`` (milestones scaled), 5k validation top-1 and wall time,
   beside the paper's number.
3. stochastic depth: seconds per training epoch (or per ``--sd-steps`` steps) of resnet110_cifar
   with batch-mode stochastic depth (p_L = 0.5) against without; Huang et al. report ~25% less.

    python benchmarks/train_gpu.py --data DIR --output $OUT                 # on the GPU
    python benchmarks/train_gpu.py --smoke --data DIR --output /tmp/bench   # CPU, tiny

DIR is the unpacked JPEG mirror (``/work/shared/data/unpack-cifar10.sh DIR``) or a folder with
``cifar-10-batches-py``. Prints a short table; writes ``train_gpu.json`` and ``train_gpu.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from convzoo.data.build import load_splits
from convzoo.data.datasets import channel_stats
from convzoo.data.device_loader import DeviceAugment, DeviceLoader
from convzoo.registry import create_model, get_entry, list_models, model_info
from convzoo.train.config import make_config
from convzoo.train.engine import train

THROUGHPUT_MODELS = ("resnet20_cifar", "wrn16_8_cifar", "densenet_bc100_k12_cifar")
ACCURACY_RUNS = (  # (model, recipe, extra overrides)
    ("resnet20_cifar", "resnet_cifar", {}),
    ("resnet110_cifar", "resnet110_sd", {}),
    ("wrn16_8_cifar", "wrn", {}),
    ("densenet_bc100_k12_cifar", "densenet_bc", {}),
)


def device_info(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return f"CPU {cpu} ({torch.get_num_threads()} threads)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make(name: str, smoke: bool, **kw: Any) -> tuple[torch.nn.Module, int]:
    """The model (tiny overrides under --smoke) and its input size."""
    entry = get_entry(name)
    over = dict(entry.tiny.overrides) if smoke else {}
    over.update(kw)
    return create_model(name, **over), (entry.tiny.input_size if smoke else entry.info.input_size)


CLOCK = time.perf_counter  # --cpu-time switches to process CPU time (a shared, busy CPU box)


def time_steps(model, batches, steps: int, warmup: int, device, amp: bool) -> float:
    """Images per second over ``steps`` training steps after ``warmup`` (SGD, cross-entropy)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    model.train()
    it = iter(batches)
    n = 0
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            t0 = CLOCK()
            n = 0
        x, y = next(it)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        n += len(y)
    sync(device)
    return n / (CLOCK() - t0)


def forever(loader: DeviceLoader):
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def bench_data_path(args, device, splits) -> list[dict[str, Any]]:
    rows = []
    for name in args.throughput_models:
        if name not in list_models():
            rows.append({"model": name, "status": "not registered"})
            continue
        model, size = make(name, args.smoke)
        model = model.to(device, memory_format=torch.channels_last if args.channels_last else None)
        train_set = splits.train
        mean, std = channel_stats(train_set.images)
        real = DeviceLoader(train_set, args.batch_size, device=device, mean=mean, std=std,
                            augment=DeviceAugment(crop_padding=4, hflip=True), shuffle=True,
                            drop_last=True, channels_last=args.channels_last)  # fmt: skip
        x = torch.randn(args.batch_size, 3, size, size, device=device)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (args.batch_size,), device=device)
        synthetic = iter(lambda x=x, y=y: (x, y), None)
        # Interleave twice (synthetic, real, synthetic, real) so clock drift hits both.
        syn, rea = [], []
        for _ in range(2):
            syn.append(time_steps(model, synthetic, args.steps, args.warmup, device, args.amp))
            rea.append(time_steps(model, forever(real), args.steps, args.warmup, device, args.amp))
        s, r = max(syn), max(rea)
        rows.append({"model": name, "batch": args.batch_size, "synthetic_img_s": s,
                     "real_img_s": r, "ratio": r / s, "status": "ok"})  # fmt: skip
        print(f"  data path {name}: synthetic {s:,.0f} img/s, real+aug {r:,.0f} img/s, "
              f"ratio {r / s:.3f}", flush=True)  # fmt: skip
        del model
    return rows


def bench_accuracy(args, device, out: Path) -> list[dict[str, Any]]:
    rows = []
    for name, recipe, extra in ACCURACY_RUNS:
        if name not in args.accuracy_models:
            continue
        if name not in list_models():
            rows.append({"model": name, "recipe": recipe, "status": "not registered"})
            continue
        base = make_config(recipe)
        scale = args.epochs / base.epochs
        over: dict[str, Any] = dict(
            model=name, data=args.data, epochs=args.epochs, output=str(out / f"acc_{name}"),
            milestones=tuple(max(1, round(m * scale)) for m in base.milestones),
            amp="bf16" if args.amp else None, channels_last=args.channels_last,
            device=str(device), progress=False, plots=True, **extra,
        )  # fmt: skip
        if args.smoke:
            over.update(model_args=dict(get_entry(name).tiny.overrides),
                        max_train_samples=args.smoke_samples, batch_size=32)  # fmt: skip
        cfg = dataclasses.replace(make_config(recipe, **over))
        t0 = time.perf_counter()
        final = train(cfg)
        wall = time.perf_counter() - t0
        info = model_info(name)
        rows.append({"model": name, "recipe": recipe, "epochs": cfg.epochs,
                     "milestones": list(cfg.milestones), "val_acc": final["val_acc"],
                     "paper_acc": info.paper_accuracy, "wall_s": wall, "status": "ok"})  # fmt: skip
        print(f"  accuracy {name} ({recipe}, {cfg.epochs} ep): val {final['val_acc']:.2f}% "
              f"(paper {info.paper_accuracy}), {wall:.0f} s", flush=True)  # fmt: skip
    return rows


def bench_stochastic_depth(args, device, splits) -> dict[str, Any]:
    name = args.sd_model
    if name not in list_models():
        return {"model": name, "status": "not registered"}
    train_set = splits.train
    mean, std = channel_stats(train_set.images)
    loader = DeviceLoader(train_set, args.batch_size, device=device, mean=mean, std=std,
                          augment=DeviceAugment(crop_padding=4, hflip=True), shuffle=True,
                          drop_last=True, channels_last=args.channels_last)  # fmt: skip
    steps = args.sd_steps or len(loader)
    models = {}
    for label, p in (("without", 0.0), ("with", 0.5)):
        torch.manual_seed(0)
        model, _ = make(name, args.smoke, drop_path_rate=p, drop_path_mode="batch")
        models[label] = model.to(
            device, memory_format=torch.channels_last if args.channels_last else None
        )
    # Alternate the two, ``--rounds`` times, and keep each one's best: drift and neighbours'
    # load hit both alike.
    best = {"without": float("inf"), "with": float("inf")}
    for _ in range(args.rounds):
        for label, model in models.items():
            ips = time_steps(model, forever(loader), steps, args.warmup, device, args.amp)
            best[label] = min(best[label], steps * args.batch_size / ips)
    res = best
    saving = 1.0 - res["with"] / res["without"]
    print(f"  stochastic depth {name}: {res['without']:.2f} s -> {res['with']:.2f} s per {steps} "
          f"steps, {saving:.1%} less (paper ~25%)", flush=True)  # fmt: skip
    return {"model": name, "steps": steps, "batch": args.batch_size, "s_without": res["without"],
            "s_with": res["with"], "time_saved": saving, "status": "ok"}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--output", default="bench_out")
    ap.add_argument("--smoke", action="store_true", help="tiny models and sizes (CPU check)")
    ap.add_argument("--parts", nargs="+", default=["data", "accuracy", "sd"])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=200, help="timed steps per throughput run")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=15, help="shortened schedule for accuracy runs")
    ap.add_argument("--sd-model", default="resnet110_cifar")
    ap.add_argument("--sd-steps", type=int, default=0, help="0 = one full epoch")
    ap.add_argument("--throughput-models", nargs="+", default=list(THROUGHPUT_MODELS))
    ap.add_argument("--accuracy-models", nargs="+", default=[m for m, _, _ in ACCURACY_RUNS])
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                    help="bfloat16 autocast (default: on for CUDA)")  # fmt: skip
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--smoke-samples", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the SD timing")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with process CPU time and 1 thread (a busy shared CPU)")  # fmt: skip
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.cpu_time:
        global CLOCK
        CLOCK = time.process_time
        torch.set_num_threads(1)
    args.amp = device.type == "cuda" if args.amp is None else args.amp
    args.channels_last = device.type == "cuda" if args.channels_last is None else args.channels_last
    if args.smoke:
        args.batch_size, args.steps, args.warmup = 32, 5, 2
        args.epochs, args.sd_steps = 1, args.sd_steps or 5
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    splits = load_splits(args.data, image_size=32, val_fraction=0.1, split_seed=0)
    if args.smoke:
        splits.train = splits.train.subset(torch.arange(args.smoke_samples))
    meta = {"device": device_info(device), "torch": torch.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "dtype": "bfloat16 autocast" if args.amp else "float32",
            "memory_format": "channels_last" if args.channels_last else "contiguous",
            "batch_size": args.batch_size, "smoke": args.smoke, "data": splits.source,
            "clock": "process CPU time, 1 thread" if args.cpu_time else "wall"}  # fmt: skip
    print(f"{meta['device']} | torch {meta['torch']} | {meta['dtype']} | {meta['memory_format']}")
    results: dict[str, Any] = {"meta": meta}
    if "data" in args.parts:
        results["data_path"] = bench_data_path(args, device, splits)
    if "sd" in args.parts:
        results["stochastic_depth"] = bench_stochastic_depth(args, device, splits)
    if "accuracy" in args.parts:
        results["accuracy"] = bench_accuracy(args, device, out)
    (out / "train_gpu.json").write_text(json.dumps(results, indent=2))
    (out / "train_gpu.md").write_text(to_markdown(results))
    print(to_markdown(results))


def to_markdown(r: dict[str, Any]) -> str:
    m = r["meta"]
    lines = [f"device {m['device']}, torch {m['torch']}, {m['dtype']}, {m['memory_format']}, "
             f"clock {m['clock']}, "
             f"batch {m['batch_size']}, {m['date']}{' (SMOKE: tiny models)' if m['smoke'] else ''}",
             ""]  # fmt: skip
    if "data_path" in r:
        lines += ["| model | synthetic img/s | real + aug img/s | ratio |", "|---|---:|---:|---:|"]
        for row in r["data_path"]:
            if row["status"] != "ok":
                lines.append(f"| {row['model']} | {row['status']} | | |")
                continue
            lines.append(f"| {row['model']} | {row['synthetic_img_s']:,.0f} | "
                         f"{row['real_img_s']:,.0f} | {row['ratio']:.3f} |")  # fmt: skip
        lines.append("")
    if "stochastic_depth" in r:
        s = r["stochastic_depth"]
        if s["status"] == "ok":
            lines += [f"stochastic depth ({s['model']}, batch mode p_L=0.5, {s['steps']} steps): "
                      f"{s['s_without']:.2f} s -> {s['s_with']:.2f} s, {s['time_saved']:.1%} less "
                      "(paper: about 25%)", ""]  # fmt: skip
        else:
            lines += [f"stochastic depth: {s['model']} {s['status']}", ""]
    if "accuracy" in r:
        lines += ["| model | recipe | epochs (milestones) | val top-1 % (5k) | paper % | wall s |",
                  "|---|---|---|---:|---:|---:|"]  # fmt: skip
        for row in r["accuracy"]:
            if row["status"] != "ok":
                lines.append(f"| {row['model']} | {row['recipe']} | {row['status']} | | | |")
                continue
            lines.append(f"| {row['model']} | {row['recipe']} | {row['epochs']} "
                         f"({', '.join(map(str, row['milestones']))}) | {row['val_acc']:.2f} | "
                         f"{row['paper_acc']} | {row['wall_s']:.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
