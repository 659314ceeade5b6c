"""Parameters and MACs of the SqueezeNet / SqueezeNext / ShuffleNet families beside their papers.

Counts run on the meta device (no memory, no arithmetic). MACs = multiply-adds (FLOPs / 2) of
one 224x224 image, conv and linear layers only. Prints a Markdown table.

    PYTHONPATH=src python benchmarks/mobile_b_counts.py
"""

from __future__ import annotations

import convzoo
from convzoo.bench.counts import model_counts

PATTERNS = ("squeezenet*", "sqnxt*", "shufflenet_g*", "shufflenet_v2_*")


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> None:
    print("| model | params (M) | paper params (M) | MACs (M) | paper MACs (M) | paper top-1 % |")
    print("|---|---|---|---|---|---|")
    for pattern in PATTERNS:
        for name in convzoo.list_models(pattern):
            info = convzoo.model_info(name)
            counts = model_counts(name)
            paper_macs = None if info.paper_macs_g is None else info.paper_macs_g * 1000
            print(
                f"| {name} | {counts['params'] / 1e6:.3f} | {_fmt(info.paper_params_m, 3)} | "
                f"{counts['macs'] / 1e6:.1f} | {_fmt(paper_macs, 0)} | "
                f"{_fmt(info.paper_accuracy, 2)} |"
            )


if __name__ == "__main__":
    main()
