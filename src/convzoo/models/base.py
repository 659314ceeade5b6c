"""The surface every convzoo model shares: stem -> stages -> head, with input checks.

A family subclasses ``ZooModel``, sets ``stem``, ``stages`` and ``head`` (a ``ClassifierHead`` or
anything with ``forward(x, pre_logits)`` and ``reset(num_classes)``) and calls ``super().__init__``
with its channel and class counts. Families whose features are not ``stages(stem(x))`` override
``forward_features`` and call ``self.check_input(x)`` first.
"""

from __future__ import annotations

from torch import Tensor, nn


class ZooModel(nn.Module):
    stem: nn.Module
    stages: nn.Module
    head: nn.Module

    def __init__(
        self, *, in_channels: int, num_classes: int, num_features: int, min_input_size: int
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.num_features = num_features
        # Smallest height/width for which every downsampling step still has a pixel to work on.
        self.min_input_size = min_input_size

    def check_input(self, x: Tensor) -> None:
        """Reject input the network cannot take, naming the problem (not a deep shape error)."""
        name = getattr(self, "model_name", type(self).__name__)
        if x.ndim != 4:
            raise ValueError(
                f"{name} expects a 4D tensor (batch, channels, height, width), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name} expects {self.in_channels} input channels, got {x.shape[1]} "
                f"(shape {tuple(x.shape)}); build it with in_channels={x.shape[1]}"
            )
        if x.shape[2] < self.min_input_size or x.shape[3] < self.min_input_size:
            raise ValueError(
                f"{name} needs input of at least {self.min_input_size}x{self.min_input_size} "
                f"pixels for its downsampling, got {x.shape[2]}x{x.shape[3]}"
            )

    def forward_features(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.stages(self.stem(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.head.reset(num_classes)
        self.num_classes = num_classes
