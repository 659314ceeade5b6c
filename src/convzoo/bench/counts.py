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


def _flop_counts(
    model: nn.Module, input_size: int | tuple[int, int], in_channels: int
) -> dict[str, int]:
    """FLOPs of one forward pass on one image, per module path ("Global", "Cls.stages.0", ...)."""
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
    return {key: sum(ops.values()) for key, ops in counter.get_flop_counts().items()}


def count_macs(model: nn.Module, input_size: int | tuple[int, int], in_channels: int = 3) -> int:
    """Multiply-adds of one forward pass on one image, counted on the model's device."""
    return _flop_counts(model, input_size, in_channels).get("Global", 0) // 2


def stage_names(model: nn.Module) -> list[str]:
    """The parts MACs are reported for: ``stem``, ``stages.0`` ... ``stages.N``, ``head`` on a
    convzoo model; the direct children (a ``stages`` container expanded) on any other module."""
    names: list[str] = []
    for child_name, child in model.named_children():
        if child_name == "stages" and isinstance(child, nn.Sequential | nn.ModuleList):
            names += [f"stages.{i}" for i in range(len(child))]
        else:
            names.append(child_name)
    return names


def count_stage_macs(
    model: nn.Module, input_size: int | tuple[int, int], in_channels: int = 3
) -> dict[str, int]:
    """Multiply-adds per part of the network (see ``stage_names``), in forward order of the
    module tree. ``other`` holds what runs outside every part (a functional op in ``forward``),
    so the values always sum to ``count_macs``."""
    flops = _flop_counts(model, input_size, in_channels)
    prefix = type(model).__name__
    out = {name: flops.get(f"{prefix}.{name}", 0) // 2 for name in stage_names(model)}
    other = flops.get("Global", 0) // 2 - sum(out.values())
    if other:
        out["other"] = other
    return out


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
