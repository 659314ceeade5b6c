"""Classifier heads: global average pooling then a linear layer (or a 1x1 conv, NiN-style)."""

from __future__ import annotations

from torch import Tensor, nn

from convzoo.layers.conv import ActLayer


class ClassifierHead(nn.Module):
    """Global average pool -> flatten -> dropout -> linear. ``num_classes=0`` gives features."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        self.in_features = in_features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = self._make_fc(num_classes)

    def _make_fc(self, num_classes: int) -> nn.Module:
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        return nn.Linear(self.in_features, num_classes) if num_classes else nn.Identity()

    def reset(self, num_classes: int) -> None:
        self.fc = self._make_fc(num_classes)

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
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        self.in_features = in_features
        self.act_layer = act_layer
        self.drop = nn.Dropout(drop_rate)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(
                f"a convolutional head needs num_classes >= 1 (it has no linear layer), got {num_classes}"
            )
        self.conv = nn.Conv2d(self.in_features, num_classes, 1)
        self.act = self.act_layer() if self.act_layer is not None else nn.Identity()

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if pre_logits:
            return self.flatten(self.pool(x))
        return self.flatten(self.pool(self.act(self.conv(self.drop(x)))))
