"""Depthwise-separable and inverted-residual (MBConv) blocks: MobileNet v1/v2/v3, EfficientNet, FBNet.

* ``DepthwiseSeparable`` (MobileNet v1, Howard et al. 2017, arXiv 1704.04861, Fig. 3):
  depthwise kxk conv-BN-act, then pointwise 1x1 conv-BN-act. No residual.
* ``InvertedResidual`` (MobileNet v2, Sandler et al. 2018, arXiv 1801.04381, Fig. 3 / Table 1):
  1x1 expansion conv-BN-act -> depthwise kxk conv-BN-act -> optional squeeze-and-excitation ->
  1x1 *linear* projection conv-BN (no activation), with an identity shortcut when the block keeps
  shape. The same block is EfficientNet's MBConv, MobileNet v3's bneck and FBNet's candidate block.

Both activations are callables. The pointwise convs may be grouped (FBNet's ``g2`` candidates);
grouped pointwise convs are followed by a channel shuffle (``shuffle_layer``) so that information
crosses the groups, as in ShuffleNet. The residual branch is dropped through ``DropPath``: in
"batch" mode a dropped branch is not computed at all.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import Tensor, nn

from convzoo.layers.conv import ActLayer, ConvNormAct, NormLayer
from convzoo.layers.drop import DropPath, DropPathMode

# BatchNorm as the TensorFlow reference models of MobileNet v3 and EfficientNet train it:
# eps 1e-3 and a running-average decay of 0.99 (PyTorch momentum 0.01).
TF_BATCHNORM: NormLayer = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)

# Builds the squeeze-and-excitation module for a block from its expanded (mid) width.
SELayer = Callable[[int], nn.Module]
# Builds a channel shuffle for ``groups`` groups.
ShuffleLayer = Callable[[int], nn.Module]


class DepthwiseSeparable(nn.Module):
    """MobileNet v1 unit: ``conv_dw`` (kxk, groups=in) then ``conv_pw`` (1x1)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv_dw = ConvNormAct(
            in_channels,
            in_channels,
            kernel_size,
            stride,
            groups=in_channels,
            norm_layer=norm_layer,
            act_layer=act_layer,
        )
        self.conv_pw = ConvNormAct(
            in_channels, out_channels, 1, norm_layer=norm_layer, act_layer=act_layer
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv_pw(self.conv_dw(x))
        return out


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (kxk) -> [SE] -> project (1x1, linear) [+ shortcut].

    ``mid_channels`` is the expanded width (callers apply their own rounding of
    ``in_channels * expand_ratio``). The expansion conv is omitted when ``mid_channels ==
    in_channels`` unless ``force_expand`` (FBNet keeps it for expansion 1). ``pw_groups > 1``
    groups both pointwise convs and inserts ``shuffle_layer(pw_groups)`` after the first.
    ``residual`` adds the identity shortcut where the block keeps its shape (stride 1, equal
    widths); shape-changing blocks never have one.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        mid_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        pw_groups: int = 1,
        force_expand: bool = False,
        se_layer: SELayer | None = None,
        shuffle_layer: ShuffleLayer | None = None,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU6,
        residual: bool = True,
        drop_path_rate: float = 0.0,
        drop_path_mode: DropPathMode = "sample",
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        if pw_groups > 1 and shuffle_layer is None:
            raise ValueError("grouped pointwise convs (pw_groups > 1) need a shuffle_layer")
        can_add = stride == 1 and in_channels == out_channels
        if residual and not can_add:
            residual = False  # a shape-changing block has nothing to add its input to
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.has_residual = residual
        self.conv_pw = (
            ConvNormAct(
                in_channels,
                mid_channels,
                1,
                groups=pw_groups,
                norm_layer=norm_layer,
                act_layer=act_layer,
            )
            if force_expand or mid_channels != in_channels
            else None
        )
        self.shuffle = shuffle_layer(pw_groups) if shuffle_layer and pw_groups > 1 else None
        self.conv_dw = ConvNormAct(
            mid_channels,
            mid_channels,
            kernel_size,
            stride,
            groups=mid_channels,
            norm_layer=norm_layer,
            act_layer=act_layer,
        )
        self.se = se_layer(mid_channels) if se_layer is not None else None
        self.conv_pwl = ConvNormAct(
            mid_channels, out_channels, 1, groups=pw_groups, norm_layer=norm_layer, act_layer=None
        )
        self.drop_path = DropPath(drop_path_rate if residual else 0.0, drop_path_mode)

    def branch(self, x: Tensor) -> Tensor:
        if self.conv_pw is not None:
            x = self.conv_pw(x)
        if self.shuffle is not None:
            x = self.shuffle(x)
        x = self.conv_dw(x)
        if self.se is not None:
            x = self.se(x)
        out: Tensor = self.conv_pwl(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        if not self.has_residual:
            return self.branch(x)
        return self.drop_path.add_branch(x, lambda: self.branch(x))
