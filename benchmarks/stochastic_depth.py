"""Training-step time of a ResNet with and without stochastic depth (Huang et al. 2016).

In "batch" mode a dropped block's residual branch is not computed at all; with the linear-decay
rule and p_L = 0.5 the expected fraction of executed branches is 1 - 0.5 (L + 1) / (2L) ~ 0.75,
so a training step should cost about a quarter less in the blocks (the paper reports ~25%).
"sample" mode computes every branch and masks it, so it saves nothing.

    python benchmarks/stochastic_depth.py --model resnet110_cifar --batch-size 128 --steps 20

Runs on CUDA when available (float32, channels-first), else CPU. Modes are interleaved over
``--repeats`` rounds and the median is reported, to damp drift in a shared machine's load.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from collections.abc import Callable

import torch

import convzoo
from convzoo.models.resnet import residual_blocks


def step_time(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds per SGD step (forward, backward, update), after one warm-up step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def one() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    one()
    if x.is_cuda:
        torch.cuda.synchronize()
    start = clock()
    for _ in range(steps):
        one()
    if x.is_cuda:
        torch.cuda.synchronize()
    return (clock() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet110_cifar")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--drop-path-rate", type=float, default=0.5)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    info = convzoo.model_info(args.model)
    size = info.input_size
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, info.in_channels, size, size, device=device)
    y = torch.randint(0, info.num_classes, (args.batch_size,), device=device)
    variants = {
        "none": {},
        "batch": {"drop_path_rate": args.drop_path_rate, "drop_path_mode": "batch"},
        "sample": {"drop_path_rate": args.drop_path_rate, "drop_path_mode": "sample"},
    }
    models = {
        k: convzoo.create_model(args.model, **v).to(device).train() for k, v in variants.items()
    }
    # On one CPU thread, process CPU time ignores the load of other tenants of the machine.
    cpu_clock = device.type == "cpu" and torch.get_num_threads() == 1
    clock = time.process_time if cpu_clock else time.perf_counter
    times: dict[str, list[float]] = {k: [] for k in variants}
    executed = {k: 0 for k in variants}  # residual branches run, counted at their first conv
    for name, model in models.items():
        for block in residual_blocks(model):
            block.conv1.register_forward_hook(
                lambda *_, name=name: executed.__setitem__(name, executed[name] + 1)
            )
    for _ in range(args.repeats):
        for name, model in models.items():
            times[name].append(step_time(model, x, y, args.steps, clock))
    num_blocks = len(residual_blocks(models["none"]))

    dev = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"# {args.model}, batch {args.batch_size}, {size}x{size}, float32, NCHW, device {dev}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"clock {'process CPU time' if cpu_clock else 'wall'}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    )
    base = statistics.median(times["none"])
    print("| drop_path_mode | p_L | branches computed | ms / training step (median) | vs. none |")
    print("|---|---|---|---|---|")
    for name in variants:
        t = statistics.median(times[name])
        p = 0.0 if name == "none" else args.drop_path_rate
        frac = executed[name] / (num_blocks * args.repeats * (args.steps + 1))
        print(f"| {name} | {p} | {frac:.0%} | {t * 1e3:.1f} | {t / base:.2f}x |")


if __name__ == "__main__":
    main()
