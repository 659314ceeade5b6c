"""Parameters and MACs of the FractalNet, Multi-ResNet and PolyNet models next to their papers.

    python benchmarks/multipath_counts.py

Counts run on the meta device (no memory, no arithmetic). MACs: one multiply-add counts one.
"""

from __future__ import annotations

import datetime

import torch

import convzoo
from convzoo.bench.counts import model_counts

PATTERNS = ("fractalnet*", "fof*", "multiresnet*", "polynet*")


def main() -> None:
    print(f"torch {torch.__version__}, {datetime.datetime.now(datetime.UTC):%Y-%m-%d} UTC\n")
    print("| model | input | params (M) | paper params (M) | GMACs | paper top-1 % |")
    print("|---|---:|---:|---:|---:|---:|")
    for pattern in PATTERNS:
        for name in convzoo.list_models(pattern):
            info = convzoo.model_info(name)
            counts = model_counts(name)
            paper = "-" if info.paper_params_m is None else f"{info.paper_params_m}"
            acc = "-" if info.paper_accuracy is None else f"{info.paper_accuracy}"
            print(
                f"| {name} | {counts['input_size']} | {counts['params'] / 1e6:.2f} | {paper} "
                f"| {counts['macs'] / 1e9:.2f} | {acc} |"
            )


if __name__ == "__main__":
    main()
