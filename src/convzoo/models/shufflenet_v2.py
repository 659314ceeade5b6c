"""ShuffleNet v2 0.5x / 1.0x / 1.5x / 2.0x.

Ma, Zhang, Zheng & Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
Design", ECCV 2018, arXiv 1807.11164. Configs from Table 5 (output channels per stage, repeats
4/8/4, conv5 of 1024 channels, 2048 for 2x), units from Figure 3 (c) and (d):

* basic unit (stride 1): channel split into two halves; one passes through, the other goes
  through 1x1 conv-BN-ReLU, 3x3 depthwise conv-BN, 1x1 conv-BN-ReLU; concat; channel shuffle (2).
* down-sampling unit (stride 2): no split; the left branch is 3x3 depthwise (stride 2)-BN, 1x1
  conv-BN-ReLU, the right branch as above with a stride-2 depthwise conv; concat doubles the
  channels; channel shuffle (2).

Stages 2-4 are ``stages``, conv5 is the ``neck``. The units have no residual branch to drop (the
identity half is concatenated, not added), so there is no ``drop_path_rate``.

Deviations: none in the architecture. The split keeps the first
half and transforms the second, then shuffles after the concat, as torchvision does (the
authors' release instead shuffles by separating even and odd channels at the start of the next
unit, the same network up to a fixed permutation of channels); torchvision weights load
unchanged (parity-tested).
Reference numbers (Table 5): 41 / 146 / 299 / 591 MFLOPs and 1.4 / 2.3 / 3.5 / 7.4M parameters;
the paper's FLOPs are multiply-adds (MACs), as in ShuffleNet v1: our MAC counts are 0.5-1.4%
below them (tested within 1.5%), where 2 FLOPs per multiply-add would double them. Top-1 error (Table 8): 39.7 / 30.6 / 27.4 / 25.1%.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from convzoo.layers.conv import ConvNormAct
from convzoo.layers.head import ClassifierHead
from convzoo.layers.shuffle import channel_shuffle
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper(
    "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
    "1807.11164",
    "Ma, Zhang, Zheng, Sun",
    2018,
)


@dataclass(frozen=True)
class ShuffleNetV2Config:
    stage_channels: tuple[int, ...] = (116, 232, 464)
    stage_repeats: tuple[int, ...] = (4, 8, 4)
    stem_channels: int = 24
    final_channels: int = 1024
    drop_rate: float = 0.0
    num_classes: int = 1000
    in_channels: int = 3


# Table 5: output channels of stages 2-4 and conv5, per width.
CONFIGS: dict[str, ShuffleNetV2Config] = {
    "x0_5": ShuffleNetV2Config(stage_channels=(48, 96, 192)),
    "x1_0": ShuffleNetV2Config(stage_channels=(116, 232, 464)),
    "x1_5": ShuffleNetV2Config(stage_channels=(176, 352, 704)),
    "x2_0": ShuffleNetV2Config(stage_channels=(244, 488, 976), final_channels=2048),
}


def _depthwise(channels: int, stride: int) -> ConvNormAct:
    return ConvNormAct(channels, channels, 3, stride, groups=channels, act_layer=None)


class ShuffleV2Unit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"ShuffleNet v2 units need an even width, got {out_channels}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"a stride-1 unit keeps its width, got {in_channels}->{out_channels}")
        self.stride = stride
        half = out_channels // 2
        # The down-sampling unit feeds the whole input to both branches; the basic one feeds half.
        self.branch1 = (
            nn.Sequential(_depthwise(in_channels, stride), ConvNormAct(in_channels, half, 1))
            if stride > 1
            else nn.Identity()
        )
        self.branch2 = nn.Sequential(
            ConvNormAct(in_channels if stride > 1 else half, half, 1),
            _depthwise(half, stride),
            ConvNormAct(half, half, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)  # channel split: (B, C, H, W) -> 2 x (B, C/2, H, W)
            out = torch.cat([x1, self.branch2(x2)], dim=1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(ZooModel):
    def __init__(self, cfg: ShuffleNetV2Config) -> None:
        if len(cfg.stage_channels) != len(cfg.stage_repeats) or min(cfg.stage_repeats) < 1:
            raise ValueError("stage_channels and stage_repeats need one positive entry per stage")
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=cfg.final_channels,
            # 3x3 convs and pools with padding 1: every stride-2 step maps 1 pixel to 1 pixel.
            min_input_size=1,
        )
        self.stem = nn.Sequential(
            ConvNormAct(cfg.in_channels, cfg.stem_channels, 3, stride=2),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages: list[nn.Module] = []
        in_ch = cfg.stem_channels
        for out_ch, repeats in zip(cfg.stage_channels, cfg.stage_repeats, strict=True):
            units = [ShuffleV2Unit(in_ch, out_ch, 2)]
            units += [ShuffleV2Unit(out_ch, out_ch, 1) for _ in range(repeats - 1)]
            stages.append(nn.Sequential(*units))
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.neck = ConvNormAct(in_ch, cfg.final_channels, 1)  # conv5
        self.head = ClassifierHead(cfg.final_channels, cfg.num_classes, drop_rate=cfg.drop_rate)


@dataclass(frozen=True)
class Table5Row:
    """Table 5's params (M) and MFLOPs (multiply-adds), Table 8's top-1 (100 - error, %), and
    our exact parameter count."""

    params_m: float
    mflops: int
    top1: float
    params: int


TABLE5: dict[str, Table5Row] = {
    "x0_5": Table5Row(params_m=1.4, mflops=41, top1=60.3, params=1_366_792),
    "x1_0": Table5Row(params_m=2.3, mflops=146, top1=69.4, params=2_278_604),
    "x1_5": Table5Row(params_m=3.5, mflops=299, top1=72.6, params=3_503_624),
    "x2_0": Table5Row(params_m=7.4, mflops=591, top1=74.9, params=7_393_996),
}

for _width, _row in TABLE5.items():
    register_model(
        f"shufflenet_v2_{_width}",
        ShuffleNetV2,
        CONFIGS[_width],
        info=ModelInfo(
            family="shufflenet_v2",
            paper=PAPER,
            table="Table 5 (architecture, params, FLOPs = MACs); Table 8 (top-1 error)",
            dataset="imagenet",
            input_size=224,
            num_classes=1000,
            params=_row.params,
            paper_params_m=_row.params_m,
            paper_macs_g=_row.mflops / 1000,
            paper_accuracy=_row.top1,
            paper_macs_tol_g=0.015 * _row.mflops / 1000,
            notes=(
                "Same layers as torchvision shufflenet_v2 (parity-tested). Our conv + linear "
                "MAC count at 224x224 is 0.5-1.4% below Table 5 (40.5 / 144.9 / 295.8 / "
                "583.3M vs 41 / 146 / 299 / 591M); the paper does not say what else it counts, "
                "so MACs are compared within 1.5%."
            ),
        ),
        tiny=Tiny(
            overrides={
                "stage_channels": (8, 16, 32),
                "stage_repeats": (2, 1, 1),
                "stem_channels": 8,
                "final_channels": 32,
            },
            input_size=32,
        ),
    )
