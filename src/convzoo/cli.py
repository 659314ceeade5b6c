"""The ``convzoo`` command. Thin: it parses arguments and calls library functions."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from convzoo import __version__
from convzoo.registry import list_models, model_info

# Subcommands that live beside the library code they drive; each module has add_commands(sub).
COMMAND_MODULES: tuple[str, ...] = (
    "convzoo.train.cli",
    "convzoo.bench.cli",
    "convzoo.interop.export",
    "convzoo.nas.cli",
)


def _fmt_m(value: float | None, scale: float, digits: int = 2) -> str:
    return "-" if value is None else f"{value / scale:.{digits}f}"


def cmd_list(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    for name in names:
        info = model_info(name)
        print(f"{name:36s} {info.family:14s} {info.dataset:9s} {info.input_size:4d}px")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from convzoo.bench.counts import model_counts

    info = model_info(args.name)  # raises ValueError with close matches
    counts = model_counts(args.name)
    rows = [
        ("model", args.name),
        ("family", info.family),
        ("paper", f"{info.paper.title} (arXiv {info.paper.arxiv})"),
        ("config from", info.table),
        (
            "dataset",
            f"{info.dataset}, {info.num_classes} classes, {info.input_size}x{info.input_size} input",
        ),
        (
            "params (M)",
            f"ours {_fmt_m(counts['params'], 1e6, 3)}   paper {_fmt_m(info.paper_params_m, 1)}",
        ),
        (
            "MACs (G, multiply-adds)",
            f"ours {_fmt_m(counts['macs'], 1e9, 3)}   paper {_fmt_m(info.paper_macs_g, 1, 3)}",
        ),
        (
            "paper accuracy (top-1 %)",
            "-"
            if info.paper_accuracy is None
            else f"{info.paper_accuracy:.2f}"
            + (f" on {info.paper_accuracy_dataset}" if info.paper_accuracy_dataset else ""),
        ),
    ]
    if info.notes:
        rows.append(("notes", info.notes))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convzoo", description=__doc__)
    parser.add_argument("--version", action="version", version=f"convzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered models (fnmatch pattern)")
    p.add_argument("pattern", nargs="?", default="*")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="params, MACs and paper numbers of one model")
    p.add_argument("name")
    p.set_defaults(func=cmd_info)

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"convzoo {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
