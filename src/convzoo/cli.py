"""The ``convzoo`` command. Thin: it parses arguments and calls library functions."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from convzoo import __version__
from convzoo.cliutil import Parser, UsageError, add_command, print_error
from convzoo.registry import list_models, model_info

# Subcommands that live beside the library code they drive; each module has add_commands(sub).
COMMAND_MODULES: tuple[str, ...] = (
    "convzoo.train.cli",
    "convzoo.bench.cli",
    "convzoo.interop.export",
    "convzoo.nas.cli",
    "convzoo.lab.cli",
)


def _fmt_m(value: float | None, scale: float, digits: int = 2) -> str:
    return "-" if value is None else f"{value / scale:.{digits}f}"


def cmd_list(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if args.pretrained:
        from convzoo.pretrained import describe_pretrained

        names = [n for n in names if describe_pretrained(n)]
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    for name in names:
        info = model_info(name)
        line = f"{name:36s} {info.family:14s} {info.dataset:9s} {info.input_size:4d}px"
        print(f"{line}  {describe_pretrained(name)}" if args.pretrained else line)
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
    parser = Parser(prog="convzoo", description=__doc__)
    parser.add_argument("--version", action="version", version=f"convzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = add_command(sub, "list", cmd_list, help="list registered models (fnmatch pattern)")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--pretrained", action="store_true", help="only models with published weights")

    p = add_command(sub, "info", cmd_info, help="params, MACs and paper numbers of one model")
    p.add_argument("name")

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)
    return parser


# Mistakes of the user's (bad values, files, data, checkpoints; a full disk or a read-only
# folder): one line and exit status 2. Anything else is a bug and keeps its traceback.
USER_ERRORS = (UsageError, ValueError, TypeError, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``convzoo`` command; returns the exit status (2 for a usage error)."""
    args = build_parser().parse_args(argv)
    prog = getattr(args, "prog", f"convzoo {args.command}")
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a reader that went away is seen here
        return status
    except BrokenPipeError:
        # The reader went away (``convzoo list | head``): stop quietly. Point stdout at devnull so
        # the interpreter's final flush does not raise a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except USER_ERRORS as err:
        print_error(prog, err)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
