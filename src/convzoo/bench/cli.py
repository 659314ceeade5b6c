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
    from convzoo.bench.compare import COMPARE_HEADER, compare_rows, format_compare

    rows = format_compare(compare_rows(args.pattern))
    if args.markdown:
        from convzoo.bench.report import md_table

        print(md_table(list(COMPARE_HEADER), rows))
        return 0
    widths = [max(len(r[i]) for r in [list(COMPARE_HEADER), *rows]) for i in range(len(rows[0]))]
    for r in [list(COMPARE_HEADER), *rows]:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
            )
        )
    print(
        "\nparams in millions; MACs in billions of multiply-adds per image at the default input "
        "size; diff = ours - paper (percent of the paper's figure); MB = state dict with float "
        "tensors at fp32 / fp16, 2^20 bytes."
    )
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

    p = sub.add_parser("compare", help="our params and MACs beside the papers' numbers")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(func=cmd_compare)
