"""Pre-activation residual units (He, Zhang, Ren & Sun, "Identity Mappings in Deep Residual
Networks", ECCV 2016, arXiv 1603.05027): every conv is preceded by norm -> activation, and nothing
follows the addition, so the identity path carries the signal unchanged from block to block.

* ``PreActConv``: norm -> act -> (dropout) -> conv, the unit of every branch here.
* ``preact_branch``: a residual function of such units, basic (3x3, 3x3) or bottleneck
  (1x1, 3x3, 1x1 with a quarter of the output width inside).
* ``PreActBlock``: ``shortcut(x) + sum_i branch_i(x)`` (one branch in a Wide ResNet, k in a
  Multi-ResNet). Where the block changes width or stride, one norm -> act is shared by the branches
  and the 1x1 projection shortcut, which reads the pre-activated input (the rule of the authors'
  Wide ResNet and Multi-ResNet code); elsewhere each branch pre-activates its own input and the
  shortcut is the identity.
* ``NormAct``: the final norm -> act that closes a pre-activation network (a model's ``neck``).

The 3x3 convs come from ``conv3x3`` (a callable), so a family can generate its kernels (HyperNet).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import Tensor, nn

from convzoo.layers.conv import ActLayer, NormLayer
from convzoo.layers.drop import DropPath, DropPathMode
from convzoo.layers.helpers import check_probability

Conv3x3 = Callable[[int, int, int], nn.Module]  # (in_channels, out_channels, stride) -> conv


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Module:
    """A bias-free 3x3 conv with "same" padding."""
    return nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)


class NormAct(nn.Sequential):
    """``norm`` -> ``act``: the BN-ReLU that pre-activates a block or closes the network."""

    def __init__(
        self, channels: int, norm_layer: NormLayer = nn.BatchNorm2d, act_layer: ActLayer = nn.ReLU
    ) -> None:
        super().__init__(OrderedDict(norm=norm_layer(channels), act=act_layer()))


class PreActConv(nn.Module):
    """``norm -> act -> dropout -> conv``; ``preact=False`` leaves the conv alone (its input was
    activated already), ``dropout=0`` leaves the dropout out."""

    def __init__(
        self,
        conv: nn.Module,
        in_channels: int,
        *,
        preact: bool = True,
        dropout: float = 0.0,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        check_probability("block_dropout", dropout)
        self.norm = norm_layer(in_channels) if preact else nn.Identity()
        self.act = act_layer() if preact else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv(self.drop(self.act(self.norm(x))))
        return out


def preact_branch(
    in_channels: int,
    out_channels: int,
    stride: int = 1,
    *,
    bottleneck: bool = False,
    preact: bool = True,
    block_dropout: float = 0.0,
    conv3x3: Conv3x3 = conv3x3,
    norm_layer: NormLayer = nn.BatchNorm2d,
    act_layer: ActLayer = nn.ReLU,
) -> nn.Sequential:
    """A pre-activation residual function; ``stride`` on its first conv, ``block_dropout`` before
    its last (Wide ResNet's dropout between the two 3x3 convs, section 2.4)."""
    if bottleneck:
        mid = out_channels // 4
        convs = [
            (in_channels, nn.Conv2d(in_channels, mid, 1, stride, bias=False)),
            (mid, conv3x3(mid, mid, 1)),
            (mid, nn.Conv2d(mid, out_channels, 1, bias=False)),
        ]
    else:
        convs = [
            (in_channels, conv3x3(in_channels, out_channels, stride)),
            (out_channels, conv3x3(out_channels, out_channels, 1)),
        ]
    units = [
        PreActConv(
            conv,
            ch,
            preact=preact or i > 0,
            dropout=block_dropout if i == len(convs) - 1 else 0.0,
            norm_layer=norm_layer,
            act_layer=act_layer,
        )
        for i, (ch, conv) in enumerate(convs)
    ]
    return nn.Sequential(*units)


class PreActBlock(nn.Module):
    """``shortcut(x) + drop_path(sum of num_branches residual functions)``, nothing after the sum."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        num_branches: int = 1,
        bottleneck: bool = False,
        block_dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        drop_path_mode: DropPathMode = "batch",
        conv3x3: Conv3x3 = conv3x3,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        if num_branches < 1:
            raise ValueError(f"a residual block needs >= 1 branch, got {num_branches}")
        project = stride != 1 or in_channels != out_channels
        self.preact = NormAct(in_channels, norm_layer, act_layer) if project else nn.Identity()
        self.branches = nn.ModuleList(
            preact_branch(
                in_channels,
                out_channels,
                stride,
                bottleneck=bottleneck,
                preact=not project,
                block_dropout=block_dropout,
                conv3x3=conv3x3,
                norm_layer=norm_layer,
                act_layer=act_layer,
            )
            for _ in range(num_branches)
        )
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
            if project
            else nn.Identity()
        )
        self.drop_path = DropPath(drop_path_rate, drop_path_mode)

    def forward(self, x: Tensor) -> Tensor:
        x = self.preact(x)

        def branches() -> Tensor:
            out: Tensor = self.branches[0](x)
            for branch in self.branches[1:]:
                out = out + branch(x)
            return out

        # In "batch" mode a dropped block never runs its branches (stochastic depth's speed-up).
        return self.drop_path.add_branch(self.shortcut(x), branches)
