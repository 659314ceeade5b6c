"""Squeeze-and-excitation (Hu et al. 2018, arXiv 1709.01507), in the variants the zoo needs.

MobileNet v3: reduced = make_divisible(C/4), ReLU, hard-sigmoid gate. EfficientNet: reduced from
the block's *input* width, SiLU, sigmoid. NFNet: ratio 0.5, ReLU, sigmoid (the block doubles the
result). The caller chooses ``reduced_channels`` and the two layers; this module only computes
``x * gate(fc2(act(fc1(mean_hw(x)))))`` with 1x1 convs as the fully connected layers.
"""

from __future__ import annotations

from torch import Tensor, nn

from convzoo.layers.conv import ActLayer


class SqueezeExcite(nn.Module):
    def __init__(
        self,
        channels: int,
        reduced_channels: int,
        act_layer: ActLayer = nn.ReLU,
        gate_layer: ActLayer = nn.Sigmoid,
    ) -> None:
        super().__init__()
        if channels < 1 or reduced_channels < 1:
            raise ValueError(
                f"SqueezeExcite needs positive widths, got {channels} -> {reduced_channels}"
            )
        self.fc1 = nn.Conv2d(channels, reduced_channels, 1)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(reduced_channels, channels, 1)
        self.gate = gate_layer()

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        gate: Tensor = self.gate(self.fc2(self.act(self.fc1(s))))
        return x * gate
