"""Channel shuffle (Zhang et al., "ShuffleNet", arXiv 1707.01083, section 3.1 and Figure 1).

A stack of group convolutions lets each output group see only its own input group. Shuffling the
channels between two group convs fixes that: with ``g`` groups of ``n`` channels, reshape the
channel axis to ``(g, n)``, transpose it to ``(n, g)`` and flatten it back, so that the next
group conv's every group receives one channel from each previous group. ShuffleNet v1 uses it
with its group count; ShuffleNet v2 with ``groups=2`` after concatenating its two branches.

Channel ``k * n + i`` (group ``k``, position ``i``) lands at ``i * g + k``. Shuffling with ``g``
groups then with ``n = C / g`` groups restores the original order.
"""

from __future__ import annotations

from torch import Tensor, nn


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave the ``groups`` channel groups of ``x`` (B, C, H, W); ``groups`` must divide C."""
    if x.ndim != 4:
        raise ValueError(f"channel_shuffle expects (B, C, H, W), got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if groups < 1 or c % groups:
        raise ValueError(f"groups={groups} must be >= 1 and divide the {c} channels")
    if groups == 1:
        return x
    # (B, g, C/g, H, W) -> (B, C/g, g, H, W) -> (B, C, H, W)
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ChannelShuffle(nn.Module):
    """``channel_shuffle`` as a module, so that it shows in ``print(model)``."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
