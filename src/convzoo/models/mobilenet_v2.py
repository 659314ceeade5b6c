"""MobileNet v2.

Sandler, Howard, Zhu, Zhmoginov & Chen, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR 2018, arXiv 1801.04381.

Table 2: a 3x3 stride-2 conv to 32 channels, seven sequences of inverted-residual bottlenecks
(Table 1: 1x1 expansion by t, ReLU6, 3x3 depthwise, ReLU6, linear 1x1 projection; identity
shortcut when stride is 1 and widths agree), a 1x1 conv to 1280, global average pooling and the
classifier. A sequence (a row ``t, c, n, s`` of Table 2) is a row of ``stages``; the seven rows
are grouped into the five resolutions they run at (rows 4-5 and 6-7 share one), so
``stages[s][r][b]`` is block b of a row. The 1x1 conv to 1280 is the ``neck``. Reference numbers
are Table 4 (72.0% top-1, 3.4M parameters, 300M multiply-adds).

Deviations and choices:
* The build is the released model (TF-slim / torchvision ``mobilenet_v2``; outputs identical to
  torchvision's, see tests). It has 3,504,872 parameters where Table 4 prints 3.4M; the paper
  does not say what its count leaves out, so the parameter check allows 0.11M.
* t = 1 blocks have no expansion conv (there is nothing to expand), as in the releases.
* Widths under a width multiplier are ``make_divisible(c * w, 8)``; the last conv keeps 1280 for
  w < 1 (section 6.1). Dropout 0.2 before the classifier as in the releases (the paper names none).
* ``drop_path_rate`` (default 0) adds stochastic depth through the shared linear schedule; the
  paper does not use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from torch import nn

from convzoo.layers.conv import ActLayer, ConvNormAct, NormLayer
from convzoo.layers.drop import DropPathMode
from convzoo.layers.head import ClassifierHead
from convzoo.layers.helpers import make_divisible
from convzoo.layers.mbconv import InvertedResidual, repeated, resolution_stages
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper(
    "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
    "1801.04381",
    "Sandler, Howard, Zhu, Zhmoginov, Chen",
    2018,
)


@dataclass(frozen=True)
class BottleneckSequence:
    """A row of Table 2: expansion factor t, output channels c, repeats n, first stride s."""

    expand_ratio: int
    out_channels: int
    repeats: int
    stride: int


# Table 2 (t, c, n, s).
TABLE2: tuple[BottleneckSequence, ...] = (
    BottleneckSequence(expand_ratio=1, out_channels=16, repeats=1, stride=1),
    BottleneckSequence(expand_ratio=6, out_channels=24, repeats=2, stride=2),
    BottleneckSequence(expand_ratio=6, out_channels=32, repeats=3, stride=2),
    BottleneckSequence(expand_ratio=6, out_channels=64, repeats=4, stride=2),
    BottleneckSequence(expand_ratio=6, out_channels=96, repeats=3, stride=1),
    BottleneckSequence(expand_ratio=6, out_channels=160, repeats=3, stride=2),
    BottleneckSequence(expand_ratio=6, out_channels=320, repeats=1, stride=1),
)


@dataclass(frozen=True)
class MobileNetV2Config:
    stages: tuple[BottleneckSequence, ...] = TABLE2
    stem_channels: int = 32
    head_channels: int = 1280
    width_multiplier: float = 1.0
    act_layer: ActLayer = nn.ReLU6
    norm_layer: NormLayer = nn.BatchNorm2d
    drop_rate: float = 0.2
    drop_path_rate: float = 0.0
    drop_path_mode: DropPathMode = "sample"
    num_classes: int = 1000
    in_channels: int = 3


class MobileNetV2(ZooModel):
    def __init__(self, cfg: MobileNetV2Config) -> None:
        if cfg.width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be > 0, got {cfg.width_multiplier}")

        def width(c: float) -> int:
            return make_divisible(c * cfg.width_multiplier, 8)

        head_ch = width(cfg.head_channels) if cfg.width_multiplier > 1.0 else cfg.head_channels
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=head_ch,
            min_input_size=2 ** (1 + sum(s.stride == 2 for s in cfg.stages)),
        )
        conv = partial(ConvNormAct, norm_layer=cfg.norm_layer, act_layer=cfg.act_layer)
        self.stem = conv(cfg.in_channels, width(cfg.stem_channels), 3, 2)
        rows = [
            repeated(
                partial(
                    _bottleneck,
                    expand_ratio=seq.expand_ratio,
                    out_channels=width(seq.out_channels),
                    cfg=cfg,
                ),
                width(seq.out_channels),
                seq.stride,
                seq.repeats,
            )
            for seq in cfg.stages
        ]
        self.stages = resolution_stages(
            rows, width(cfg.stem_channels), drop_path_rate=cfg.drop_path_rate
        )
        self.neck = conv(width(cfg.stages[-1].out_channels), head_ch, 1)
        self.head = ClassifierHead(head_ch, cfg.num_classes, drop_rate=cfg.drop_rate)


def _bottleneck(
    in_channels: int,
    stride: int,
    drop_path_rate: float,
    *,
    expand_ratio: int,
    out_channels: int,
    cfg: MobileNetV2Config,
) -> InvertedResidual:
    return InvertedResidual(
        in_channels,
        out_channels,
        mid_channels=round(in_channels * expand_ratio),
        stride=stride,
        norm_layer=cfg.norm_layer,
        act_layer=cfg.act_layer,
        drop_path_rate=drop_path_rate,
        drop_path_mode=cfg.drop_path_mode,
    )


register_model(
    "mobilenet_v2",
    MobileNetV2,
    MobileNetV2Config(),
    info=ModelInfo(
        family="mobilenet",
        paper=PAPER,
        table="Table 2 (architecture), Table 4 (ImageNet)",
        dataset="imagenet",
        input_size=224,
        num_classes=1000,
        params=3_504_872,
        paper_params_m=3.4,
        paper_params_tol_m=0.11,
        paper_macs_g=0.300,
        paper_accuracy=72.0,
        notes="Built as released (TF-slim, torchvision): 3,504,872 parameters; Table 4 prints "
        "3.4M without saying what it leaves out, hence the 0.11M tolerance.",
    ),
    tiny=Tiny(
        overrides={
            "width_multiplier": 0.25,
            "head_channels": 32,
            "stages": (
                BottleneckSequence(expand_ratio=1, out_channels=16, repeats=1, stride=1),
                BottleneckSequence(expand_ratio=6, out_channels=24, repeats=2, stride=2),
            ),
        },
        input_size=16,
    ),
)
