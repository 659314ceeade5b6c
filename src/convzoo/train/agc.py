"""Adaptive gradient clipping (AGC), Brock, De, Smith & Simonyan 2021, arXiv 2102.06171, section 4.

For every unit i of a parameter (a row of a linear layer, an output filter of a conv), with W_i its
weights and G_i its gradient:

    if ||G_i|| / max(||W_i||, eps) > lambda:   G_i <- lambda * max(||W_i||, eps) / ||G_i|| * G_i

i.e. the gradient is clipped relative to the size of the weights it updates; ``eps`` (1e-3 in the
paper) keeps zero-initialized weights from freezing. The paper does not clip the final linear
layer (section 4.1, "it is beneficial not to clip the final linear layer"): by default
everything under ``model.head`` is left alone.

Units follow the reference code's ``unitwise_norm``: a parameter whose non-singleton shape has one
dimension or none (biases, gains, scalar skip gains, layer scales) is one unit as a whole; any
other parameter has one unit per slice along dim 0 (PyTorch's output dimension).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["adaptive_grad_clip_", "unitwise_norm"]


def unitwise_norm(x: Tensor) -> Tensor:
    """L2 norm per unit, shaped to broadcast against ``x`` (a 0-d tensor for a one-unit ``x``)."""
    if x.squeeze().ndim <= 1:
        norm: Tensor = torch.linalg.vector_norm(x)
        return norm
    dims = tuple(range(1, x.ndim))
    norm = torch.linalg.vector_norm(x, dim=dims, keepdim=True)
    return norm


def _default_exclude(model: nn.Module) -> Callable[[str, nn.Parameter], bool]:
    # Look through DistributedDataParallel (.module) and torch.compile (._orig_mod) wrappers.
    while not hasattr(model, "head") and isinstance(
        inner := getattr(model, "module", getattr(model, "_orig_mod", None)), nn.Module
    ):
        model = inner
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        return lambda name, param: False
    head_ids = {id(p) for p in head.parameters()}
    return lambda name, param: id(param) in head_ids


@torch.no_grad()
def adaptive_grad_clip_(
    model: nn.Module,
    clipping: float = 0.01,
    eps: float = 1e-3,
    exclude: Callable[[str, nn.Parameter], bool] | None = None,
) -> int:
    """Clip ``model``'s gradients in place, unit-wise; return how many units were clipped.

    ``clipping`` is the paper's lambda; ``eps`` bounds the weight norm from below. ``exclude``
    (name, parameter) -> bool names parameters to leave alone; ``None`` means the paper's choice,
    everything under ``model.head`` (also through a DDP ``.module`` or ``torch.compile`` wrapper;
    nothing when the model has no ``head``). A given ``exclude`` replaces that default. Parameters without a gradient are skipped. Call it after
    ``backward()`` and before ``optimizer.step()``; with gradient scaling, after unscaling.
    """
    if clipping <= 0:
        raise ValueError(f"clipping must be > 0, got {clipping}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    skip = exclude if exclude is not None else _default_exclude(model)
    counts: list[Tensor] = []
    for name, param in model.named_parameters():
        if param.grad is None or skip(name, param):
            continue
        grad = param.grad
        max_norm = unitwise_norm(param.detach()).clamp(min=eps) * clipping
        grad_norm = unitwise_norm(grad)
        over = grad_norm > max_norm
        # Units under the threshold keep factor 1; the 1e-6 floor only guards a zero gradient.
        factor = torch.where(over, max_norm / grad_norm.clamp(min=1e-6), torch.ones_like(grad_norm))
        grad.mul_(factor)
        counts.append(over.sum())
    if not counts:
        return 0
    return int(torch.stack(counts).sum().item())
