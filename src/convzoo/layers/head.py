"""Classifier heads: what follows the network's ``neck``, ending in the layer that gives the classes.

Every head answers ``forward(x, pre_logits=False)`` and ``reset(num_classes)`` (which replaces only
the class layer, as ``ZooModel.reset_classifier`` needs). A family whose head pools and maps to the
classes through a linear layer ``fc`` subclasses ``LinearHead`` and gets ``reset`` from it.
"""

from __future__ import annotations

from torch import Tensor, nn

from convzoo.layers.conv import ActLayer
from convzoo.layers.helpers import check_probability


def check_num_classes(num_classes: int, minimum: int = 0) -> None:
    if num_classes < minimum:
        raise ValueError(f"num_classes must be >= {minimum}, got {num_classes}")


class LinearHead(nn.Module):
    """A head whose last layer ``fc`` is linear over ``fc_in_features`` (identity for 0 classes).

    Subclasses register their own modules after ``super().__init__`` and then call
    ``self.reset(num_classes)``, so that ``fc`` is created last (as it runs last).
    """

    fc: nn.Module

    def __init__(self, fc_in_features: int) -> None:
        super().__init__()
        self.fc_in_features = fc_in_features

    def reset(self, num_classes: int) -> None:
        check_num_classes(num_classes)
        self.fc = nn.Linear(self.fc_in_features, num_classes) if num_classes else nn.Identity()


class ClassifierHead(LinearHead):
    """Global average pool -> flatten -> dropout -> linear. ``num_classes=0`` gives features."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0) -> None:
        super().__init__(in_features)
        check_probability("drop_rate", drop_rate)
        self.in_features = in_features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.drop = nn.Dropout(drop_rate)
        self.reset(num_classes)

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.drop(self.flatten(self.pool(x)))
        return x if pre_logits else self.fc(x)


class ConvClassifierHead(nn.Module):
    """NiN / SqueezeNet head: dropout -> 1x1 conv to classes -> activation -> global average pool.

    There is no fully connected layer: each class has a feature map whose mean is its logit.
    ``pre_logits`` returns the pooled input features.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        drop_rate: float = 0.0,
        act_layer: ActLayer | None = nn.ReLU,
    ) -> None:
        super().__init__()
        check_probability("drop_rate", drop_rate)
        self.in_features = in_features
        self.act_layer = act_layer
        self.drop = nn.Dropout(drop_rate)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        # No linear layer to fall back on: zero classes would leave no output at all.
        check_num_classes(num_classes, minimum=1)
        self.conv = nn.Conv2d(self.in_features, num_classes, 1)
        self.act = self.act_layer() if self.act_layer is not None else nn.Identity()

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if not pre_logits:
            x = self.act(self.conv(self.drop(x)))
        out: Tensor = self.flatten(self.pool(x))
        return out
