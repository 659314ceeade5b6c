"""``convzoo bench`` and ``convzoo compare``: argument parsing only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convzoo.bench.runner import BenchConfig, bench_models, registered_spec
from convzoo.bench.runtimes import RUNTIMES
from convzoo.bench.spec import DTYPES

__all__ = ["add_commands"]


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch sizes must be integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive, got {text!r}")
    return sizes


def _runtimes(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(RUNTIMES)}, got {text!r}")
    return names


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def cmd_bench(args: argparse.Namespace) -> int:
    from convzoo.bench.report import load_accuracies, table_text, write_report

    accuracies: dict[str, float] = {}
    for path in args.metrics or []:
        accuracies.update(load_accuracies(path))
    device = args.device
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available")
    cfg = BenchConfig(
        batch_sizes=args.batch_sizes,
        device=device,
        dtype=args.dtype,
        channels_last=args.channels_last,
        runtimes=args.runtime,
        fast=args.fast,
        fold_bn=args.fold_bn,
        cuda_graphs=args.cuda_graphs,
        train=args.train,
        warmup=args.warmup,
        repeats=args.repeats,
        min_repeat_s=args.min_repeat_s,
        memory_cap_mib=args.memory_cap_mib,
        threads=args.threads,
        calibration_data=args.calibration_data,
        calibration_images=args.calibration_images,
    )
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
        "size; diff = ours - paper (percent of the paper's figure)."
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="latency vs batch size, throughput, memory, params, MACs; table, CSV/JSON/MD, plots",
    )
    p.add_argument("models", nargs="+", metavar="MODEL")
    p.add_argument("--batch-sizes", type=_batch_sizes, default=(1, 2, 4, 8, 16, 32, 64))
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument(
        "--runtime",
        type=_runtimes,
        default=("eager",),
        help=f"comma-separated, timed in interleaved rounds: {', '.join(RUNTIMES)}",
    )
    p.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into convs")
    p.add_argument("--cuda-graphs", action="store_true", help="CUDA graphs for batch <= 16")
    p.add_argument(
        "--fast",
        action="store_true",
        help="add the 'fast' runtime: the fastest engine for the device, chosen by measuring",
    )
    p.add_argument("--train", action="store_true", help="also time a training step")
    p.add_argument("--tiny", action="store_true", help="registered Tiny configs (smoke runs)")
    p.add_argument("--input-size", type=int, default=None, help="pixels; default: the model's")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-repeat-s", type=float, default=0.05)
    p.add_argument("--threads", type=_positive, default=None, help="CPU threads (torch default)")
    p.add_argument("--calibration-data", default=None, help="int8: image folder (default digits)")
    p.add_argument("--calibration-images", type=_positive, default=64)
    p.add_argument("--memory-cap-mib", type=float, default=None, help="simulated memory size")
    p.add_argument(
        "--metrics",
        action="append",
        help="JSON file of top-1 accuracies (repeatable); default: the papers' numbers",
    )
    p.add_argument("--output", type=Path, default=Path("bench_results"))
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("compare", help="our params and MACs beside the papers' numbers")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(func=cmd_compare)
