"""``convzoo bench`` and ``convzoo compare``: argument parsing only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convzoo.bench.runner import BenchConfig, bench_models, registered_spec
from convzoo.cliutil import add_command, add_config_flags, checked, given_fields

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
    report = bench_models(specs, cfg, progress=_progress(len(specs), len(cfg.batch_sizes)))
    print(table_text(report))
    paths = write_report(report, args.output)
    print(f"\nwrote {', '.join(str(p) for p in paths)}")
    return 1 if any(m["errors"] for m in report["models"]) else 0


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
    add_config_flags(p, BenchConfig, title="what to measure (BenchConfig)")

    p = add_command(sub, "compare", cmd_compare,
                    help="our params, MACs and sizes beside the papers' numbers")  # fmt: skip
    p.add_argument("pattern", nargs="?", default=None,
                   help="model names (glob); default: all, or the measured ones with --measured")  # fmt: skip
    p.add_argument("--markdown", action="store_true", help="print Markdown tables")
    p.add_argument("--measured", metavar="PATH",
                   help="cifar_table.json (benchmarks/cifar_table.py): measured top-1 columns "
                   "and a plot beside the papers'")  # fmt: skip
    p.add_argument("--plot", default="measured_vs_paper.png", metavar="PNG",
                   help="where --measured draws its plot (default: %(default)s)")  # fmt: skip
