"""Weight conversion from torchvision and timm; export lives in ``convzoo.interop.export``."""

from convzoo.interop.convert import from_timm, from_torchvision

__all__ = ["from_timm", "from_torchvision"]
