"""Measured CIFAR-10 accuracy of the small ``_cifar`` models under one short recipe.

Every model here trains with the same recipe (``RECIPE``): SGD with Nesterov momentum 0.9,
lr 0.1 at batch 128 after one linear warm-up epoch from 0.01, cosine decay to 0 over ``--epochs``
epochs, weight decay 5e-4 (not on norms and biases), 4-pixel padding + random 32x32 crop +
horizontal flip, float32. Training uses 45,000 images of the CIFAR-10 training set and accuracy
is top-1 on the 5,000 held out of it (stratified, split seed 0; the same split for every run),
never on the test set. Each (model, seed) is one run; the seed sets initialisation, data order
and augmentation, never the split. The short recipe is the point: it ranks the models under one
budget; the papers' accuracies (printed beside) come from their own, far longer, schedules.

Models (``ENTRIES``): the ``_cifar`` models up to about 2M parameters -- ResNet-20/56/110 with and
without stochastic depth (batch mode, p_L = 0.5), DenseNet-BC-100 (k=12), NiN (as published, and
with BatchNorm, the variant that learns at this recipe), RevNet-38/110,
Hyper-WRN-40-1, PolyNet-CIFAR, and FractalNet-20 at a quarter of its width (2.1M instead of 33.7M).

Results are rewritten after every run (``cifar_table.json`` with each run's accuracy, wall time,
device and start time; ``cifar_table.md``, the table with mean and sample std over seeds), so a
time limit leaves the finished runs on disk. Runs already in ``--output``'s ``cifar_table.json``
are kept and not run again, so a table can be filled in over several invocations (a run whose
recipe differs from ``RECIPE`` or whose epoch count differs is refused rather than mixed in). A
run that was stopped before it finished (a time limit, a killed process, the end of a session) is
resumed from its last checkpoint (``runs/<label>-seed<N>/last.pt``) by the next invocation that
asks for it, instead of refused; its record says ``resumed_at_epoch``, and its ``wall_s`` adds the
epoch times of the earlier invocation (from ``metrics.jsonl``) to this one's.

    python benchmarks/cifar_table.py --data data_local/cifar10 --epochs 15 --seeds 0 1 2 \\
        --output results/cifar_table                      # the full table (a GPU session)
    python benchmarks/cifar_table.py --smoke --output /tmp/cifar_table   # tiny, any CPU

``--smoke`` trains the tiny variants (one epoch unless ``--epochs``) on the embedded digits (no
data needed), to prove the script end to end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from convzoo.registry import create_model, get_entry, model_info
from convzoo.train.checkpoint import find_resume
from convzoo.train.config import make_config
from convzoo.train.engine import train

# The one short recipe (TrainConfig fields); ``--epochs`` sets its length.
RECIPE: dict[str, Any] = {
    "optimizer": "sgd",
    "lr": 0.1,  # at batch 128
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "batch_size": 128,
    "schedule": "cosine",
    "min_lr": 0.0,
    "warmup_epochs": 1.0,
    "warmup_lr": 0.1,  # fraction of lr: warm-up starts at 0.01
    "crop_padding": 4,
    "hflip": True,
    "val_fraction": 0.1,  # 45k / 5k
    "split_seed": 0,
}


@dataclass(frozen=True)
class Entry:
    label: str
    model: str
    model_args: dict[str, Any] = field(default_factory=dict)
    train_args: dict[str, Any] = field(default_factory=dict)  # other TrainConfig fields
    # The paper's accuracy for exactly this configuration; None: the model's own where the entry
    # runs it unchanged, else none.
    paper_accuracy: float | None = None

    def paper(self) -> float | None:
        if self.paper_accuracy is not None:
            return self.paper_accuracy
        return None if self.model_args or self.train_args else model_info(self.model).paper_accuracy


_SD = {"drop_path_rate": 0.5, "drop_path_mode": "batch"}  # Huang et al.: p_L = 0.5
ENTRIES: tuple[Entry, ...] = (
    Entry("ResNet-20", "resnet20_cifar"),
    Entry("ResNet-20 + stochastic depth", "resnet20_cifar", train_args=_SD),
    Entry("ResNet-56", "resnet56_cifar"),
    Entry("ResNet-56 + stochastic depth", "resnet56_cifar", train_args=_SD),
    Entry("ResNet-110", "resnet110_cifar"),
    # Huang et al. 2016, Table 1: 5.25% test error on CIFAR-10+ for the 110-layer network.
    Entry("ResNet-110 + stochastic depth", "resnet110_cifar", train_args=_SD, paper_accuracy=94.75),
    Entry("DenseNet-BC-100 (k=12)", "densenet_bc100_k12_cifar"),
    Entry("NiN", "nin_cifar"),
    # Not the paper's network: BatchNorm after every conv. Without it NiN stays at chance level
    # under this recipe (its loss flat at ln 10; BENCHMARKS.md section 5), so this row is the one
    # that ranks the architecture; the paper's number is not beside it.
    Entry("NiN + BatchNorm", "nin_cifar", model_args={"batch_norm": True}),
    Entry("RevNet-38", "revnet38_cifar"),
    Entry("RevNet-110", "revnet110_cifar"),
    Entry("Hyper-WRN-40-1", "hyper_wrn40_1_cifar"),
    Entry("PolyNet-CIFAR", "polynet_cifar"),
    Entry(
        "FractalNet-20, quarter width",
        "fractalnet20_cifar",
        model_args={"widths": (16, 32, 64, 128, 128)},
    ),
)


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                 if ln.startswith("model name")]  # fmt: skip
        cpu = names[0] if names else cpu
    return f"CPU {cpu}, {torch.get_num_threads()} threads"


def run_one(entry: Entry, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    model_args = dict(entry.model_args)
    extra: dict[str, Any] = {}
    if args.smoke:
        # The tiny sizes replace the entry's own where both set a field; its switches stay.
        model_args = {**entry.model_args, **get_entry(entry.model).tiny.overrides}
        extra = {"max_train_samples": 256, "batch_size": 32}
    slug = "".join(c if c.isalnum() else "_" for c in entry.label.lower())
    out = args.output / "runs" / f"{slug}-seed{seed}"
    with torch.device("meta"):
        params = sum(q.numel() for q in create_model(entry.model, **model_args).parameters())
    cfg = make_config(
        None,
        **{**RECIPE, **entry.train_args, **extra},
        model=entry.model,
        model_args=model_args,
        data=args.data,
        epochs=args.epochs,
        seed=seed,
        device=args.device,
        amp=args.amp,
        output=str(out),
        progress=False,
        plots=False,
    )
    started = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    earlier = _epoch_times(out) if find_resume(out) is not None else None
    if earlier is not None:
        before = json.loads((out / "config.json").read_text()).get("epochs")
        if before != args.epochs:
            raise SystemExit(f"cifar_table: {out} holds an unfinished {before}-epoch run, not "
                             f"{args.epochs}; use another --output")  # fmt: skip
    t0 = time.perf_counter()
    final = train(cfg, resume=earlier is not None)
    resumed = {} if earlier is None else {"resumed_at_epoch": len(earlier)}
    return {
        "label": entry.label,
        "model": entry.model,
        "model_args": {k: list(v) if isinstance(v, tuple) else v for k, v in model_args.items()},
        "train_args": entry.train_args,
        "seed": seed,
        "epochs": args.epochs,
        "val_acc": final["val_acc"],
        "wall_s": sum(earlier or []) + time.perf_counter() - t0,
        "started": started,
        **resumed,
        "params": params,
        "paper_accuracy": None if args.smoke else entry.paper(),
    }


def table(runs: list[dict[str, Any]], header: str) -> str:
    lines = [header, "", "| model | what ran | params | val top-1 % (mean ± std) | seeds | "
             "paper % (test set, full recipe) | wall s / run |",
             "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for entry in ENTRIES:
        rs = [r for r in runs if r["label"] == entry.label]
        if not rs:
            continue
        accs = [r["val_acc"] for r in rs]
        # one seed has no spread to report
        acc = f"{statistics.mean(accs):.2f}" + (
            f" ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else " (one seed)"
        )
        settings = {**rs[0]["model_args"], **rs[0]["train_args"]}
        what = f"`{entry.model}`" + "".join(f" {k}={v}" for k, v in settings.items())
        paper = rs[0]["paper_accuracy"]
        lines.append(
            f"| {entry.label} | {what} | {rs[0]['params']:,} | {acc} | {len(rs)} | "
            f"{paper if paper is not None else '-'} | "
            f"{statistics.mean(r['wall_s'] for r in rs):.0f} |"
        )
    return "\n".join(lines) + "\n"


def _epoch_times(run_dir: Path) -> list[float]:
    """Seconds of each epoch an interrupted run in ``run_dir`` logged before it stopped."""
    log = run_dir / "metrics.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    records = [json.loads(line) for line in lines if line.strip()]
    return [r["epoch_time_s"] for r in records if r.get("kind") == "epoch"]


def previous_runs(path: Path, epochs: int) -> list[dict[str, Any]]:
    """The runs an earlier invocation left in ``path``, if they used this recipe and length."""
    if not path.is_file():
        return []
    old = json.loads(path.read_text())
    if old.get("recipe") != RECIPE:
        raise SystemExit(f"cifar_table: {path} was made with another recipe; use another --output")
    runs: list[dict[str, Any]] = old.get("runs", [])
    other = sorted({r["epochs"] for r in runs} - {epochs})
    if other:
        raise SystemExit(f"cifar_table: {path} holds {other}-epoch runs, not {epochs}; "
                         "use another --output")  # fmt: skip
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="CIFAR-10 folder (JPEG mirror or cifar-10-batches-py)")
    p.add_argument("--output", type=Path, default=Path("cifar_table"))
    p.add_argument("--epochs", type=int, help="default 15 (1 with --smoke)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--models", nargs="+", help="labels or model names to run (default: all)")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", choices=["bf16", "fp16"], help="autocast (default: float32)")
    p.add_argument("--smoke", action="store_true", help="tiny models, one epoch, embedded digits")
    args = p.parse_args()
    if args.epochs is None:
        args.epochs = 1 if args.smoke else 15
    if args.smoke:
        args.data = None
    elif not args.data:
        p.error("--data is required (the CIFAR-10 folder), unless --smoke")
    chosen = [
        e for e in ENTRIES if not args.models or e.label in args.models or e.model in args.models
    ]
    if not chosen:
        p.error(f"--models matched none of: {', '.join(e.label for e in ENTRIES)}")
    args.output.mkdir(parents=True, exist_ok=True)
    device = (
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    header = (
        f"CIFAR-10 {'(embedded digits, --smoke)' if args.smoke else f'from {args.data}'}, 45k/5k "
        f"split (seed 0), {args.epochs} epochs of the short recipe, {device_name(device)}, "
        f"torch {torch.__version__}, {args.amp or 'float32'}; each run's start time and device "
        "are in cifar_table.json"
    )
    runs = previous_runs(args.output / "cifar_table.json", args.epochs)
    done = {(r["label"], r["seed"]) for r in runs}
    for seed in args.seeds:  # seeds outermost: every model gets seed 0 before any gets seed 1
        for entry in chosen:
            if (entry.label, seed) in done:
                print(f"{entry.label} seed {seed}: already in {args.output}, kept", flush=True)
                continue
            r = run_one(entry, seed, args)
            runs.append({**r, "device": device_name(device)})
            print(
                f"{entry.label} seed {seed}: {r['val_acc']:.2f}% ({r['wall_s']:.0f} s)", flush=True
            )
            (args.output / "cifar_table.json").write_text(
                json.dumps({"header": header, "recipe": RECIPE, "runs": runs}, indent=2)
            )
            (args.output / "cifar_table.md").write_text(table(runs, header))
    print(table(runs, header))


if __name__ == "__main__":
    main()
