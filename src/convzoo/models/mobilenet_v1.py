"""MobileNet v1.

Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", 2017, arXiv 1704.04861.

Table 1 (body architecture): a full 3x3 stride-2 conv, then 13 depthwise-separable layers
(Figure 3: depthwise 3x3 conv-BN-ReLU, pointwise 1x1 conv-BN-ReLU); downsampling is done by
stride-2 depthwise convs, never by pooling; global average pooling and one fully connected layer.
Width multipliers 1.0 / 0.75 / 0.5 / 0.25 are the rows of Table 6 (resolution 224).

Deviations and choices:
* Table 1 prints the second-to-last depthwise layer as "Conv dw / s2" on a 7x7 input; its output
  stays 7x7, so it is stride 1 (as in every released model). We build stride 1.
* Widths are ``make_divisible(c * width_multiplier, 8)``; for the four published multipliers this
  equals ``c * width_multiplier`` exactly.
* The paper's activation is ReLU (Figure 3); TensorFlow-slim and timm (``mobilenetv1_100``) use
  ReLU6. ``act_layer`` defaults to the paper's ReLU; ``convzoo.interop.from_timm`` reads the
  activation off the timm module and builds with ``act_layer=nn.ReLU6`` itself (as does
  ``pretrained=True``), so no override is needed to load timm's weights.
* The paper names no dropout; ``drop_rate`` (before the classifier) defaults to 0.
* Layers are grouped into stages at each stride-2 layer (the grouping of Table 1's resolutions).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from convzoo.layers.conv import ActLayer, ConvNormAct
from convzoo.layers.head import ClassifierHead
from convzoo.layers.helpers import make_divisible
from convzoo.layers.mbconv import DepthwiseSeparable
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper(
    "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
    "1704.04861",
    "Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam",
    2017,
)


@dataclass(frozen=True)
class DSLayer:
    """One depthwise-separable row of Table 1: pointwise output width and depthwise stride."""

    out_channels: int
    stride: int = 1


# Table 1, grouped by output resolution (112, 56, 28, 14, 7 at 224 input).
TABLE1: tuple[tuple[DSLayer, ...], ...] = (
    (DSLayer(out_channels=64),),
    (DSLayer(out_channels=128, stride=2), DSLayer(out_channels=128)),
    (DSLayer(out_channels=256, stride=2), DSLayer(out_channels=256)),
    (DSLayer(out_channels=512, stride=2), *(DSLayer(out_channels=512),) * 5),
    (DSLayer(out_channels=1024, stride=2), DSLayer(out_channels=1024)),
)


@dataclass(frozen=True)
class MobileNetV1Config:
    stages: tuple[tuple[DSLayer, ...], ...] = TABLE1
    stem_channels: int = 32
    width_multiplier: float = 1.0
    act_layer: ActLayer = nn.ReLU
    drop_rate: float = 0.0
    num_classes: int = 1000
    in_channels: int = 3


class MobileNetV1(ZooModel):
    def __init__(self, cfg: MobileNetV1Config) -> None:
        if cfg.width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be > 0, got {cfg.width_multiplier}")

        def width(c: int) -> int:
            return make_divisible(c * cfg.width_multiplier, 8)

        layers = [layer for stage in cfg.stages for layer in stage]
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=width(layers[-1].out_channels),
            min_input_size=2 ** (1 + sum(layer.stride == 2 for layer in layers)),
        )
        in_ch = width(cfg.stem_channels)
        self.stem = ConvNormAct(cfg.in_channels, in_ch, 3, 2, act_layer=cfg.act_layer)
        stages: list[nn.Module] = []
        for stage in cfg.stages:
            blocks: list[nn.Module] = []
            for layer in stage:
                out_ch = width(layer.out_channels)
                blocks.append(
                    DepthwiseSeparable(in_ch, out_ch, 3, layer.stride, act_layer=cfg.act_layer)
                )
                in_ch = out_ch
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(in_ch, cfg.num_classes, drop_rate=cfg.drop_rate)


@dataclass(frozen=True)
class Table6Row:
    """A row of Table 6 (224x224): width multiplier, params (M), Mult-Adds (G), top-1 (%); and
    our exact parameter count."""

    width_multiplier: float
    params_m: float
    macs_g: float
    top1: float
    params: int


TABLE6: dict[str, Table6Row] = {
    "mobilenet_v1": Table6Row(
        width_multiplier=1.0, params_m=4.2, macs_g=0.569, top1=70.6, params=4_231_976
    ),
    "mobilenet_v1_075": Table6Row(
        width_multiplier=0.75, params_m=2.6, macs_g=0.325, top1=68.4, params=2_585_560
    ),
    "mobilenet_v1_050": Table6Row(
        width_multiplier=0.5, params_m=1.3, macs_g=0.149, top1=63.7, params=1_331_592
    ),
    "mobilenet_v1_025": Table6Row(
        width_multiplier=0.25, params_m=0.5, macs_g=0.041, top1=50.6, params=470_072
    ),
}
for _name, _row in TABLE6.items():
    register_model(
        _name,
        MobileNetV1,
        MobileNetV1Config(width_multiplier=_row.width_multiplier),
        info=ModelInfo(
            family="mobilenet",
            paper=PAPER,
            table="Table 1 (architecture), Table 6 (width multiplier)",
            dataset="imagenet",
            input_size=224,
            num_classes=1000,
            params=_row.params,
            paper_params_m=_row.params_m,
            paper_macs_g=_row.macs_g,
            paper_accuracy=_row.top1,
            notes="ReLU as in the paper; timm/TF-slim use ReLU6 (timm conversion sets it).",
        ),
        tiny=Tiny(
            overrides={
                "width_multiplier": 0.125,
                "stages": ((DSLayer(out_channels=16),), (DSLayer(out_channels=32, stride=2),)),
            },
            input_size=16,
        ),
    )
