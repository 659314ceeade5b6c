"""``convzoo bench`` and ``convzoo compare``: argument parsing only."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import cast

from torch import nn

from convzoo.bench.runner import BenchConfig, ModelSpec, bench_models, registered_spec
from convzoo.cliutil import UsageError, add_command, add_config_flags, checked, given_fields
from convzoo.registry import create_model

__all__ = ["add_commands"]


def cmd_bench(args: argparse.Namespace) -> int:
    from convzoo.bench.report import load_accuracies, table_text, write_report

    accuracies: dict[str, float] = {}
    for path in args.metrics or []:
        accuracies.update(load_accuracies(path))
    cfg = BenchConfig(**given_fields(args, BenchConfig))
    specs = [
        registered_spec(
            name,
            tiny=args.tiny,
            input_size=args.input_size,
            accuracy=accuracies.get(name),
            accuracy_source="metrics file" if name in accuracies else "",
        )
        for name in args.models
    ]
    weights: dict[str, str] = {}
    if args.pretrained is not None:
        specs, weights = _with_pretrained(specs, args)
    report = bench_models(specs, cfg, progress=_progress(len(specs), len(cfg.batch_sizes)))
    for m in report["models"]:
        if m["model"] in weights:
            m["weights"] = weights[m["model"]]
            m["notes"].insert(0, f"weights: {weights[m['model']]}")
    print(table_text(report))
    paths = write_report(report, args.output)
    print(f"\nwrote {', '.join(str(p) for p in paths)}")
    return 1 if any(m["errors"] for m in report["models"]) else 0


def _with_pretrained(
    specs: list[ModelSpec], args: argparse.Namespace
) -> tuple[list[ModelSpec], dict[str, str]]:
    """``specs`` building their models with ``--pretrained`` weights, and which weights each
    holds. Every model is loaded here (fetched, converted, checked), so that a missing or wrong
    source stops the run before any timing; the default input size becomes the weights' crop."""
    from convzoo.pretrained import PretrainedWeights, parse_pretrained

    source = parse_pretrained(args.pretrained)
    if source is False:
        return specs, {}
    if args.tiny:
        raise UsageError("--pretrained loads the full-size models; --tiny builds small test "
                         "configs that no published weights fit")  # fmt: skip
    out: list[ModelSpec] = []
    weights: dict[str, str] = {}
    for spec in specs:
        model = create_model(spec.name, pretrained=source)
        weights_cfg = cast(PretrainedWeights, model.pretrained_cfg)
        held: list[nn.Module] = [model]

        def build(held: list[nn.Module] = held, name: str = spec.name) -> nn.Module:
            return held.pop() if held else create_model(name, pretrained=source)

        size = args.input_size or weights_cfg.preprocess.crop or spec.input_size
        out.append(replace(spec, build=build, input_size=size, num_classes=model.num_classes))
        weights[spec.name] = f"{weights_cfg.library} {weights_cfg.weights}"
    return out, weights


def _progress(n_models: int, n_batches: int):
    """Progress on stderr: which model, which batch size, how far through the run."""
    done = {"n": 0, "last": ""}

    def show(message: str) -> None:
        model = message.split(":", 1)[0]
        if model != done["last"]:
            done["n"] += 1
            done["last"] = model
        print(f"[{done['n']}/{n_models}] {message}", file=sys.stderr, flush=True)

    return show


def cmd_compare(args: argparse.Namespace) -> int:
    from convzoo.bench.compare import compare_report

    if args.plot is not None and args.measured is None:
        raise UsageError("--plot draws measured runs beside the papers': give --measured FILE too")
    print(compare_report(args.pattern, markdown=args.markdown, measured=args.measured,
                         plot=args.plot))  # fmt: skip
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "bench",
        cmd_bench,
        help="latency vs batch size on one or more runtimes, throughput, memory, params, MACs; "
        "table, CSV/JSON/MD, plots",
    )
    p.add_argument("models", nargs="+", metavar="MODEL")
    p.add_argument("--tiny", action="store_true", help="registered Tiny configs (smoke runs)")
    p.add_argument(
        "--input-size", type=checked(int, low=1), default=None, help="pixels; default: the model's"
    )
    p.add_argument(
        "--metrics",
        action="append",
        help="JSON file of top-1 accuracies (repeatable); default: the papers' numbers",
    )
    p.add_argument("--output", type=Path, default=Path("bench_results"))
    p.add_argument(
        "--pretrained",
        nargs="?",
        const="auto",
        default=None,
        help="time the models holding published weights: auto (torchvision, else timm), "
        "torchvision, timm, or a checkpoint path; loaded before timing starts; default input "
        "size: the weights' crop",
    )
    add_config_flags(p, BenchConfig, title="what to measure (BenchConfig)")

    p = add_command(sub, "compare", cmd_compare,
                    help="our params, MACs and sizes beside the papers' numbers")  # fmt: skip
    p.add_argument("pattern", nargs="?", default=None,
                   help="model names (glob); default: all, or the measured ones with --measured")  # fmt: skip
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p.add_argument("--measured", metavar="PATH",
                   help="cifar_table.json (benchmarks/cifar_table.py): measured top-1 columns "
                   "and a plot beside the papers'")  # fmt: skip
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="with --measured: draw the measured top-1 beside the papers' in this "
                   "PNG (default: no plot, nothing written)")  # fmt: skip
