"""ResNeXt shares torchvision's ResNet module layout (grouped 3x3 convs only change shapes)."""

from convzoo.interop.resnet import TORCHVISION_RULES

__all__ = ["TORCHVISION_RULES"]
