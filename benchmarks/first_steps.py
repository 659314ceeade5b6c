"""The loss over a model's first training steps at a constant learning rate: does it leave chance?

Written for NiN, whose published network stays at ln(num_classes) under the CIFAR table's shared
recipe (BENCHMARKS.md section 5). Trains ``--steps`` steps of SGD (Nesterov momentum 0.9, weight
decay 5e-4 on weights, none on norms and biases) at batch 128 on an image folder (the CIFAR-10
mirror's ``train/`` layout), random crop with 4-pixel padding + horizontal flip, inputs
normalized by CIFAR-10's channel mean and std, and prints the mean loss of every ``--every`` steps.
It reads the folder with torchvision's ``ImageFolder``, not ``convzoo.data`` (the numbers in
BENCHMARKS.md section 5 were measured this way).

    OMP_NUM_THREADS=2 python benchmarks/first_steps.py nin_cifar --data data_local/cifar10 --lr 0.1
    OMP_NUM_THREADS=2 python benchmarks/first_steps.py nin_cifar --data data_local/cifar10 \\
        --lr 0.1 --model-args '{"batch_norm": true}'
    ... --init fan_in      # Kaiming fan-in normal on every conv, zero biases, instead of the model's
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import datasets
from torchvision import transforms as T

from convzoo.registry import create_model

MEAN, STD = (0.491, 0.482, 0.447), (0.247, 0.243, 0.262)  # CIFAR-10 training images


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model")
    p.add_argument("--data", type=Path, required=True, help="folder holding train/CLASS/*.jpg")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--every", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=32, help="side of the random crop")
    p.add_argument("--model-args", default="{}", help="JSON object of model config fields")
    p.add_argument("--init", choices=["model", "fan_in"], default="model")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.steps < 1 or args.every < 1 or args.batch_size < 1 or not args.lr > 0:
        p.error("--steps, --every, --batch-size and --lr must be positive")
    root = args.data / "train" if (args.data / "train").is_dir() else args.data
    if not root.is_dir():
        p.error(f"--data: no such folder: {args.data}")
    try:
        model_args = json.loads(args.model_args)
    except json.JSONDecodeError as err:
        p.error(f"--model-args is not JSON: {err}")
    torch.manual_seed(args.seed)
    size = args.image_size
    tf = T.Compose([T.RandomCrop(size, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(MEAN, STD)])  # fmt: skip
    data = datasets.ImageFolder(str(root), tf)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True)
    model = create_model(args.model, num_classes=len(data.classes), **model_args)
    if args.init == "fan_in":
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    decay = [q for q in model.parameters() if q.ndim > 1]
    rest = [q for q in model.parameters() if q.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": rest}],
                          lr=args.lr, momentum=0.9, nesterov=True)  # fmt: skip
    print(
        f"{args.model} {model_args or ''} init={args.init} lr={args.lr}: chance is "
        f"ln {len(data.classes)} = {math.log(len(data.classes)):.4f}"
    )
    model.train()
    losses: list[float] = []
    start, step = time.perf_counter(), 0
    while step < args.steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            step += 1
            if step % args.every == 0:
                mean = sum(losses[-args.every :]) / args.every
                print(f"step {step} mean loss {mean:.4f} ({time.perf_counter() - start:.0f} s)",
                      flush=True)  # fmt: skip
            if step == args.steps:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
