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

``resolution_stages`` is the stage builder the four inverted-residual families share: it chains
the rows of a paper's table (each block's input width is the previous block's output), hands out
the stochastic-depth schedule over all blocks, and groups the rows into one stage per resolution,
which is what ``ZooModel.stages`` holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from torch import Tensor, nn

from convzoo.layers.conv import ActLayer, ConvNormAct, NormLayer
from convzoo.layers.drop import DropPath, DropPathMode, DropPathSchedule, drop_path_rates

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


# Builds one block of a stage from its input width, stride and drop-path rate.
BlockBuilder = Callable[[int, int, float], nn.Module]


@dataclass(frozen=True)
class PlannedBlock:
    """One block of a table row, before its input width (the previous block's output) is known."""

    out_channels: int
    stride: int
    build: BlockBuilder


def repeated(
    build: BlockBuilder, out_channels: int, stride: int, repeats: int
) -> list[PlannedBlock]:
    """A row of ``repeats`` blocks of which the first has ``stride`` (Table 2's ``n`` and ``s``)."""
    return [PlannedBlock(out_channels, stride if i == 0 else 1, build) for i in range(repeats)]


def resolution_stages(
    rows: Sequence[Sequence[PlannedBlock]],
    in_channels: int,
    *,
    drop_path_rate: float = 0.0,
    drop_path_schedule: DropPathSchedule = "l/L",
    nest_rows: bool = True,
) -> nn.Sequential:
    """Build ``rows`` in order and group them into one ``nn.Sequential`` per resolution.

    Block l of all L blocks gets drop-path rate ``drop_path_rate`` times ``drop_path_schedule``
    (``layers.drop.drop_path_rates``; ``l / L`` unless a family's reference says otherwise). A row whose first
    block strides opens a new stage; a stride-1 row joins the stage before it (EfficientNet-B0's
    stage 5 runs at stage 4's resolution). With ``nest_rows`` a stage holds each row as an
    ``nn.Sequential`` (``stages[s][r][b]``: the paper's rows stay visible); otherwise it holds
    the blocks themselves (``stages[s][b]``), for tables written block by block.
    """
    if not rows or not all(rows):
        raise ValueError("a stage table needs at least one row and no empty row")
    for row in rows:
        if any(b.stride > 1 for b in row[1:]):
            raise ValueError(
                f"only the first block of a row may change the resolution, got strides "
                f"{[b.stride for b in row]}"
            )
    num_blocks = sum(len(row) for row in rows)
    rates = iter(drop_path_rates(drop_path_rate, num_blocks, schedule=drop_path_schedule))
    stages: list[list[nn.Module]] = []
    in_ch = in_channels
    for row in rows:
        blocks = []
        for plan in row:
            blocks.append(plan.build(in_ch, plan.stride, next(rates)))
            in_ch = plan.out_channels
        if not stages or row[0].stride > 1:
            stages.append([])
        stages[-1].extend([nn.Sequential(*blocks)] if nest_rows else blocks)
    return nn.Sequential(*(nn.Sequential(*stage) for stage in stages))
