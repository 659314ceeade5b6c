"""FractalNet drop-path: what one training step costs in each sampling mode.

Dropped paths are not computed (convzoo.models.fractalnet), so a drop-path step should be
cheaper than a full one: global sampling runs one column (the deepest holds 4 of the 7 convs
of a C=3 block), local sampling skips whatever the joins dropped. For each mode this prints the
mean time of a training step (forward + backward + SGD update, milliseconds) and the conv
multiply-adds actually executed per step as a share of the full network's.

    python benchmarks/fractal_drop_path.py --batch-size 100 --steps 30 --device cuda
    python benchmarks/fractal_drop_path.py --batch-size 8 --steps 5   # CPU smoke run

Writes a markdown table to stdout with the device, torch version and date.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import torch
from torch import Tensor, nn

import convzoo

MODES: dict[str, dict[str, float]] = {
    "off (full network)": {},
    "local only, p=0.15": {"drop_path_rate": 0.15, "global_ratio": 0.0},
    "global only": {"drop_path_rate": 0.15, "global_ratio": 1.0},
    "paper: 50/50 local/global": {"drop_path_rate": 0.15, "global_ratio": 0.5},
}


def conv_macs_counter(model: nn.Module) -> list[int]:
    """Forward hooks adding each executed conv's multiply-adds to the returned one-item list."""
    total = [0]

    def hook(mod: nn.Conv2d, inputs: tuple[Tensor, ...], out: Tensor) -> None:
        kh, kw = mod.kernel_size
        total[0] += out.numel() * (mod.in_channels // mod.groups) * kh * kw

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(hook)
    return total


def measure(
    name: str, overrides: dict[str, float], batch: int, steps: int, warmup: int, device: str
) -> tuple[float, float, int]:
    torch.manual_seed(0)
    model = convzoo.create_model(name, **overrides).to(device).train()
    macs = conv_macs_counter(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    size = convzoo.model_info(name).input_size
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, model.num_classes, (batch,), device=device)
    times, executed = [], []
    for step in range(warmup + steps):
        macs[0] = 0
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
            executed.append(macs[0])
    return 1e3 * statistics.mean(times), statistics.mean(executed), batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fractalnet20_cifar")
    parser.add_argument("--batch-size", type=int, default=100)  # the paper's CIFAR batch
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.device == "cuda":
        device_name = torch.cuda.get_device_name()
    else:
        device_name = platform.processor() or platform.machine()
    print(f"# {args.model}: training step by drop-path mode")
    print(
        f"device: {args.device} ({device_name}), float32, NCHW, batch {args.batch_size}, "
        f"{args.steps} steps after {args.warmup} warm-up, torch {torch.__version__}, "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n"
    )
    print("| mode | ms / step | conv GMACs / step | share of full |")
    print("|---|---:|---:|---:|")
    full = None
    for mode, overrides in MODES.items():
        ms, macs, _ = measure(
            args.model, overrides, args.batch_size, args.steps, args.warmup, args.device
        )
        full = full or macs
        print(f"| {mode} | {ms:.1f} | {macs / 1e9:.2f} | {macs / full:.0%} |")


if __name__ == "__main__":
    main()
