"""Folding inference-mode BatchNorm into the convolution that feeds it.

In eval mode ``bn(conv(x))`` is one affine map per channel after the conv, so it can be merged into
the conv's weight and bias: ``w' = w * g / sqrt(v + eps)``, ``b' = (b - m) * g / sqrt(v + eps) + beta``.
That removes one memory pass per BatchNorm at inference.

Which pairs to fold is found by running the model once on the ``meta`` device (no arithmetic) and
watching tensors: a ``BatchNorm2d`` folds into a ``Conv2d`` when its input IS that conv's output
and nothing else reads that output (a pre-activation block that also adds the raw conv output
elsewhere is left alone). This finds ``nn.Sequential(conv, bn, act)`` as well as
``self.bn1(self.conv1(x))`` written in a ``forward``, without tracing the model's Python.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

__all__ = ["find_conv_bn_pairs", "fold_batchnorm"]


class _UseCounter(TorchFunctionMode):
    """Counts, per watched tensor, the calls that read it and produce a tensor (``x.dim()`` and
    ``x.shape`` are not uses of the values)."""

    def __init__(self) -> None:
        super().__init__()
        self.watched: dict[int, Tensor] = {}  # id -> tensor; holding it keeps the id unique
        self.uses: dict[int, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        out = func(*args, **(kwargs or {}))
        if any(isinstance(o, Tensor) for o in tree_flatten(out)[0]):
            for a in tree_flatten((args, kwargs or {}))[0]:
                if isinstance(a, Tensor) and id(a) in self.watched:
                    self.uses[id(a)] += 1
        return out


def find_conv_bn_pairs(model: nn.Module, example_input: Tensor) -> list[tuple[str, str]]:
    """``(conv_name, bn_name)`` pairs of ``model`` that ``fold_batchnorm`` would merge."""
    probe = copy.deepcopy(model).to("meta").eval()
    x = example_input.to("meta")
    conv_of: dict[int, str] = {}  # id(conv output) -> conv name
    calls: dict[str, int] = {}
    bn_input: dict[str, int] = {}  # bn name -> id of the conv output it read
    counter = _UseCounter()
    hooks = []

    def on_conv(name: str):
        def hook(_m: nn.Module, _inp: Any, out: Tensor) -> None:
            calls[name] = calls.get(name, 0) + 1
            conv_of[id(out)] = name
            counter.watched[id(out)] = out
            counter.uses[id(out)] = 0

        return hook

    def on_bn(name: str):
        def hook(_m: nn.Module, inp: tuple[Tensor, ...]) -> None:
            calls[name] = calls.get(name, 0) + 1
            # Resolve now: conv outputs are held alive, so a matching id is that very tensor.
            if id(inp[0]) in conv_of:
                bn_input[name] = id(inp[0])

        return hook

    for name, m in probe.named_modules():
        if type(m) is nn.Conv2d:
            hooks.append(m.register_forward_hook(on_conv(name)))
        elif type(m) is nn.BatchNorm2d and m.track_running_stats:
            hooks.append(m.register_forward_pre_hook(on_bn(name)))
    try:
        with counter, torch.no_grad():
            probe(x)
    finally:
        for h in hooks:
            h.remove()
    pairs = []
    for bn_name, tid in bn_input.items():
        conv_name = conv_of[tid]
        # A module called twice (shared weights) would fold twice or into a second use: skip it.
        if calls[conv_name] != 1 or calls[bn_name] != 1:
            continue
        if counter.uses[tid] == 1:  # the BatchNorm is the only reader of the conv output
            pairs.append((conv_name, bn_name))
    return pairs


def fold_batchnorm(model: nn.Module, example_input: Tensor | None = None) -> nn.Module:
    """An eval-mode copy of ``model`` with every foldable ``BatchNorm2d`` merged into its conv and
    replaced by ``nn.Identity``. Outputs equal the original's in eval mode up to float rounding.

    ``example_input`` only gives shapes (it is run on the meta device); by default a 1-image input
    of ``model.in_channels`` x ``max(model.min_input_size, 32)`` pixels.
    """
    if example_input is None:
        size = max(int(getattr(model, "min_input_size", 1)), 32)
        example_input = torch.zeros(1, int(getattr(model, "in_channels", 3)), size, size)
    pairs = find_conv_bn_pairs(model, example_input)
    folded = copy.deepcopy(model).eval()
    for conv_name, bn_name in pairs:
        conv = folded.get_submodule(conv_name)
        bn = folded.get_submodule(bn_name)
        weight, bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        )
        conv.weight, conv.bias = weight, bias
        parent_name, _, attr = bn_name.rpartition(".")
        setattr(folded.get_submodule(parent_name), attr, nn.Identity())
    return folded
