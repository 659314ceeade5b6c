"""Stochastic depth's compute saving, forward + backward only, on the CPU (1 thread, CPU time).

Counts the blocks batch-mode DropPath actually skipped next to the time saved, so the saving can
be read against the expected drop fraction (mean of p_l = 0.5 l / L: 25.5% for ResNet-110).

    python benchmarks/train_sd_cpu.py [--model resnet110_cifar] [--batch-size 16] [--steps 10]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import convzoo
from convzoo.layers.drop import DropPath


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet110_cifar")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch_size,))
    models = {
        p: convzoo.create_model(args.model, drop_path_rate=p, drop_path_mode="batch").train()
        for p in (0.0, 0.5)
    }
    drops = [m for m in models[0.5].modules() if isinstance(m, DropPath)]
    print(f"{args.model}: {len(drops)} blocks, expected drop fraction "
          f"{sum(d.p for d in drops) / len(drops):.3f}")  # fmt: skip
    best: dict[float, float] = {}
    skipped = 0
    for _ in range(args.rounds):
        for p, model in models.items():
            t0 = time.process_time()
            for _ in range(args.steps):
                F.cross_entropy(model(x), y).backward()
            best[p] = min(best.get(p, float("inf")), time.process_time() - t0)
    # Count the drop draws of one more round (same RNG process as the timed ones).
    for _ in range(args.steps):
        skipped += sum(d.sample_drop() for d in drops)
    frac = skipped / (args.steps * len(drops))
    print(f"CPU s per {args.steps} fwd+bwd (batch {args.batch_size}): without {best[0.0]:.2f}, "
          f"with {best[0.5]:.2f}: {1 - best[0.5] / best[0.0]:.1%} less; "
          f"blocks skipped in a sample round {frac:.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
