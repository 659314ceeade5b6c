"""Weight initialization shared by the convolutional families."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def init_weights(model: nn.Module, mode: Literal["fan_out", "fan_in"] = "fan_out") -> None:
    """He et al.'s initialization (arXiv 1502.01852): convs normal with std sqrt(2 / fan), norm
    layers scale 1 and shift 0; linear layers keep PyTorch's default.

    ``fan_out`` (fb.resnet.torch's and torchvision's ResNet) preserves the gradient's scale through
    the backward pass; ``fan_in`` (torchvision's DenseNet) preserves the activations' scale through
    the forward pass, which a net without normalization at init (eval mode, fresh statistics)
    needs where a conv reads many more channels than it writes (DenseNet's 1x1 bottlenecks).
    """
    for m in model.modules():
        if any(p.is_meta for p in m.parameters(recurse=False)):
            continue  # shape-only builds (counting): random init is meaningless and slow there
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
        elif isinstance(m, _BatchNorm | nn.GroupNorm) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def zero_init_last_norms(norms: Iterable[nn.Module]) -> None:
    """Set the scale of each given norm layer (the last of a residual branch) to zero.

    Goyal et al., "Accurate, Large Minibatch SGD", arXiv 1706.02677, section 5.1: every residual
    block then starts as the identity, so an untrained net of any depth keeps its activations at
    the scale of its input instead of growing with the number of blocks.
    """
    for m in norms:
        weight = getattr(m, "weight", None)
        if isinstance(weight, nn.Parameter) and not weight.is_meta:
            nn.init.zeros_(weight)
