"""Normalization layers shared by families: LayerNorm over the channels of an NCHW tensor."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of ``(B, C, H, W)`` input, independently per pixel.

    The ConvNeXt stem and downsampling layers normalize channels-first feature maps; this is
    ``nn.LayerNorm(C)`` applied at every spatial position. Parameters are ``weight`` and ``bias``
    of shape ``(C,)`` as in ``nn.LayerNorm``.
    """

    def __init__(
        self, num_channels: int, eps: float = 1e-6, elementwise_affine: bool = True
    ) -> None:
        super().__init__(num_channels, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"LayerNorm2d expects (B, C, H, W) input, got shape {tuple(x.shape)}")
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C): normalize the last dim
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # back to (B, C, H, W)
