"""torchvision's wide_resnet50_2 / wide_resnet101_2 have ResNet's module layout.

The CIFAR WRNs have no torchvision counterpart; loading one reports the mismatched keys.
"""

from convzoo.interop.resnet import TORCHVISION_RULES

__all__ = ["TORCHVISION_RULES"]
