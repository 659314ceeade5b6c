"""Parameter and MAC counts.

MACs: one multiply-add counts one. ``torch.utils.flop_counter`` counts two FLOPs per multiply-add,
so MACs = FLOPs / 2. Counting runs on the ``meta`` device by default: full-size models cost no
memory and no arithmetic, only shape propagation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convzoo.registry import create_model, model_info


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: int | tuple[int, int], in_channels: int = 3) -> int:
    """Multiply-adds of one forward pass on one image, counted on the model's device."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    device = next(iter(model.parameters()), torch.empty(0)).device
    x = torch.zeros(1, in_channels, h, w, device=device)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def model_counts(name: str, input_size: int | None = None, **overrides: Any) -> dict[str, int]:
    """Full-size params and MACs of a registered model, built on the meta device."""
    info = model_info(name)
    size = input_size or info.input_size
    with torch.device("meta"):
        model = create_model(name, **overrides)
    return {
        "params": count_params(model),
        "macs": count_macs(model, size, in_channels=model.in_channels),
        "input_size": size,
    }
