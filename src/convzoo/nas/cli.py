"""``convzoo search fbnet`` and ``convzoo search scaling``: flags map onto the search configs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from convzoo.nas.fbnet_search import SearchConfig


def cmd_search_fbnet(args: argparse.Namespace) -> int:
    from convzoo.nas.fbnet_search import run_search

    cfg = SearchConfig(
        supernet=args.supernet, width_multiplier=args.width_multiplier, data=args.data,
        max_train_samples=args.max_train_samples, epochs=args.epochs,
        warmup_epochs=args.warmup_epochs, batch_size=args.batch_size, device=args.device,
        latency_table=args.latency_table, latency_batch_size=args.latency_batch_size,
        latency_scale=args.latency_scale, alpha=args.alpha, beta=args.beta, seed=args.seed,
        output=args.output, progress=not args.no_progress,
    )  # fmt: skip
    result = run_search(cfg)
    print("searched architecture (stage by stage):")
    for i, stage in enumerate(result["architecture"]):
        print(f"  stage {i + 1}: {' '.join(stage)}")
    print(f"latency: predicted {result['predicted_latency_ms']:.3f} ms, measured "
          f"{result['measured_latency_ms']:.3f} ms (batch {cfg.latency_batch_size}, {cfg.device})")  # fmt: skip
    args_file = Path(cfg.output) / "model_args.json"
    flags = " ".join(f"--model-arg {k}={v}" for k, v in json.loads(args_file.read_text()).items()
                     if k != "num_classes")  # fmt: skip
    print(
        f"spec: {cfg.output}/arch.json ({args_file}); train it with: convzoo train fbnet_c {flags}"
    )
    return 0


def cmd_search_scaling(args: argparse.Namespace) -> int:
    from convzoo.nas.scaling import ScalingSearchConfig, run_scaling_search

    train = {"epochs": args.epochs, "batch_size": args.batch_size, "data": args.data,
             "device": args.device, "progress": False, "plots": False}  # fmt: skip
    if args.max_train_samples:
        train["max_train_samples"] = args.max_train_samples
    cfg = ScalingSearchConfig(
        base=args.base, model_args=json.loads(args.model_args), base_resolution=args.base_resolution,
        budget=args.budget, step=args.step, tolerance=args.tolerance,
        max_candidates=args.max_candidates, train=train, output=args.output,
    )  # fmt: skip
    result = run_scaling_search(cfg)
    print(f"{'alpha':>6} {'beta':>6} {'gamma':>6} {'res':>4} {'MMACs':>9} {'val acc %':>9}")
    for r in result["candidates"]:
        print(f"{r['alpha']:6.2f} {r['beta']:6.2f} {r['gamma']:6.2f} {r['resolution']:4d} "
              f"{r['macs'] / 1e6:9.1f} {r['val_acc']:9.2f}")  # fmt: skip
    c = result["chosen"]
    print(f"chosen: alpha={c['alpha']} beta={c['beta']} gamma={c['gamma']}; scaled up:")
    for s in result["scaled"]:
        print(f"  phi={s['phi']}: depth x{s['depth']:.3f} width x{s['width']:.3f} "
              f"res {s['resolution']} params {s['params'] / 1e6:.2f}M MACs {s['macs'] / 1e9:.3f}G")  # fmt: skip
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    search = sub.add_parser("search", help="architecture search (FBNet DNAS, compound scaling)")
    kinds = search.add_subparsers(dest="search_kind", required=True)

    p = kinds.add_parser("fbnet", help="FBNet's differentiable, latency-aware search")
    d = SearchConfig()
    p.add_argument("--data", default=None, help="CIFAR / image-folder directory (default: digits)")
    p.add_argument("--supernet", choices=("cifar", "imagenet"), default=d.supernet)
    p.add_argument("--width-multiplier", type=float, default=d.width_multiplier)
    p.add_argument("--device", default=d.device)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--max-train-samples", type=int, default=None)
    p.add_argument("--latency-table", default=None, help="JSON table to reuse, or to write")
    p.add_argument("--latency-batch-size", type=int, default=d.latency_batch_size)
    p.add_argument("--latency-scale", type=float, default=None, help="default: auto")
    p.add_argument("--alpha", type=float, default=d.alpha)
    p.add_argument("--beta", type=float, default=d.beta)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--output", default=d.output)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_search_fbnet)

    p = kinds.add_parser("scaling", help="EfficientNet's compound-scaling grid search")
    p.add_argument("--base", default="efficientnet_b0")
    p.add_argument("--model-args", default="{}", help="JSON overrides of the base config")
    p.add_argument("--base-resolution", type=int, default=None)
    p.add_argument("--data", default=None)
    p.add_argument("--budget", type=float, default=2.0)
    p.add_argument("--step", type=float, default=0.1)
    p.add_argument("--tolerance", type=float, default=0.1)
    p.add_argument("--max-candidates", type=int, default=None)
    p.add_argument("--epochs", type=int, default=1, help="training epochs per candidate")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-train-samples", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", default="runs/scaling")
    p.set_defaults(func=cmd_search_scaling)
