"""Training memory and time of RevNet's activation-free backprop vs ordinary backprop.

Compares, at one batch size:
* revnet164_cifar with ``memory_saving=True`` (the reversible backward),
* the same module with ``memory_saving=False`` (ordinary autograd, same weights),
* a pre-activation ResNet-164 (bottleneck, 18-18-18 units, widths 64-128-256): the
  non-reversible network of the same depth (Gomez et al. Table 1's baseline),
and sweeps the RevNet's depth to show that its activation memory does not grow with depth.

Activation memory is measured as the bytes of the tensors autograd saves for backward during the
forward pass (``saved_tensors_hooks``, each storage counted once, parameters excluded): that is
the memory that stays alive between forward and backward. On CUDA the peak allocated memory of a
full training step (``torch.cuda.max_memory_allocated``) is reported as well.

    PYTHONPATH=src python benchmarks/revnet_memory.py --batch-size 128
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import Tensor, nn

import convzoo
from convzoo.layers.preact import preact_branch


class PreActBottleneck(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, first: bool) -> None:
        super().__init__()
        self.f = preact_branch(in_ch, out_ch, stride, bottleneck=True, preact=not first)
        self.shortcut = (
            nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)
            if stride != 1 or in_ch != out_ch
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.f(x)


def resnet164(num_classes: int = 10, units: int = 18) -> nn.Module:
    """Pre-activation ResNet-164 (He et al. 2016, "Identity Mappings"), 1.7M parameters."""
    layers: list[nn.Module] = [
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
    ]
    in_ch = 16
    for i, width in enumerate((64, 128, 256)):
        for j in range(units):
            layers.append(
                PreActBottleneck(in_ch, width, 2 if i and not j else 1, first=i == j == 0)
            )
            in_ch = width
    layers += [
        nn.BatchNorm2d(in_ch),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(in_ch, num_classes),
    ]
    return nn.Sequential(*layers)


def saved_activation_bytes(model: nn.Module, x: Tensor) -> int:
    params = {p.data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    return sum(seen.values())


def train_step(model: nn.Module, x: Tensor, y: Tensor) -> None:
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()


def time_and_peak(model: nn.Module, x: Tensor, y: Tensor, repeats: int) -> tuple[float, int | None]:
    train_step(model, x, y)  # warm-up
    peak = None
    if x.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        train_step(model, x, y)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    times = []
    for _ in range(repeats):
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_step(model, x, y)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed training steps per model")
    parser.add_argument(
        "--depths",
        type=int,
        nargs="+",
        default=[3, 6, 9],
        help="RevNet units per stage, depth sweep",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    dev = torch.device(args.device)
    x = torch.randn(args.batch_size, 3, args.input_size, args.input_size, device=dev)
    y = torch.randint(0, 10, (args.batch_size,), device=dev)
    mib = 2.0**20
    print(
        f"device={dev} torch={torch.__version__} dtype=float32 memory_format=contiguous "
        f"batch={args.batch_size} input={args.input_size}x{args.input_size}\n"
    )

    rev = convzoo.create_model("revnet164_cifar").to(dev).train()
    res = resnet164().to(dev).train()
    rows = []
    for label, model, saving in [
        ("revnet164_cifar, reversible backward", rev, True),
        ("revnet164_cifar, ordinary autograd", rev, False),
        ("resnet164 (pre-act, non-reversible)", res, None),
    ]:
        if saving is not None:
            model.set_memory_saving(saving)
        act = saved_activation_bytes(model, x)
        step, peak = time_and_peak(model, x, y, args.repeats)
        params = sum(p.numel() for p in model.parameters())
        rows.append((label, params, act, peak, step))
    print(
        "| model | params | saved activations (MiB) | CUDA peak of a step (MiB) | step time (s) |"
    )
    print("|---|---|---|---|---|")
    for label, params, act, peak, step in rows:
        peak_s = f"{peak / mib:.0f}" if peak is not None else "n/a (CPU)"
        print(f"| {label} | {params / 1e6:.3f}M | {act / mib:.1f} | {peak_s} | {step:.2f} |")
    r_act, o_act, n_act = (r[2] for r in rows)
    r_t, o_t = rows[0][4], rows[1][4]
    print(
        f"\nactivation memory: reversible / ordinary = {r_act / o_act:.3f}, "
        f"reversible / resnet164 = {r_act / n_act:.3f}; "
        f"time overhead of the reversible backward = {r_t / o_t:.2f}x\n"
    )

    print(
        "| RevNet-164 units per stage | depth | saved activations, reversible (MiB) | ordinary (MiB) |"
    )
    print("|---|---|---|---|")
    for n in args.depths:
        m = convzoo.create_model("revnet164_cifar", depths=(n, n, n)).to(dev).train()
        rev_b = saved_activation_bytes(m.set_memory_saving(True), x)
        ord_b = saved_activation_bytes(m.set_memory_saving(False), x)
        print(f"| {n} | {2 + 3 * 2 * 3 * n} | {rev_b / mib:.1f} | {ord_b / mib:.1f} |")


if __name__ == "__main__":
    main()
