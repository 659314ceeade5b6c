"""Wide Residual Networks.

Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016, arXiv 1605.07146.

CIFAR WRN-d-k (Table 1): a 3x3 stem conv of 16 channels, then three stages of (d - 4) / 6
pre-activation basic blocks (BN-ReLU-conv3x3-BN-ReLU-conv3x3) of 16k, 32k and 64k channels, then
BN-ReLU (``neck``), global average pooling and a linear classifier. ``block_dropout`` is the
paper's dropout between the two convs of a block (section 2.4, "WRN-28-10-dropout"); it is 0 by
default. Where a block changes width or stride, the shortcut is a 1x1 conv applied to the
pre-activated input, as in the authors' code (``convzoo.layers.preact.PreActBlock``). Parameter counts and CIFAR-10 errors: Table 4 (v4, mean/std preprocessing).

ImageNet WRN-50-2 (section 3, "WRN-50-2-bottleneck": ResNet-50 with the bottleneck's inner 1x1 and
3x3 convs twice as wide) and its depth-101 sibling are ``convzoo.models.resnet.ResNet`` with
``base_width=128``; WRN-101-2 is not in the paper (torchvision's variant).

Deviations: stochastic depth (``drop_path_rate``, ``drop_path_mode``) is available on every block,
as on every ResNet in convzoo; it is off by default and not part of the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from convzoo.layers.conv import ActLayer, NormLayer
from convzoo.layers.drop import DropPathMode, drop_path_rates
from convzoo.layers.head import ClassifierHead
from convzoo.layers.helpers import check_probability
from convzoo.layers.init import init_weights
from convzoo.layers.preact import NormAct, PreActBlock
from convzoo.models.base import ZooModel
from convzoo.models.resnet import ResNetConfig, Variant, register_table
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper("Wide Residual Networks", "1605.07146", "Zagoruyko, Komodakis", 2016)


@dataclass(frozen=True)
class WideResNetConfig:
    depth: int = 28  # 6N + 4: N blocks per stage
    widen_factor: int = 10  # k
    widths: tuple[int, ...] = (16, 32, 64)  # stage widths before widening
    stem_width: int = 16
    block_dropout: float = 0.0  # dropout between the two convs of each block (section 2.4)
    drop_rate: float = 0.0  # dropout before the classifier (not in the paper)
    drop_path_rate: float = 0.0
    drop_path_mode: DropPathMode = "batch"
    norm_layer: NormLayer = nn.BatchNorm2d
    act_layer: ActLayer = nn.ReLU
    num_classes: int = 10
    in_channels: int = 3

    def __post_init__(self) -> None:
        if (self.depth - 4) % 6 or self.depth < 10:
            raise ValueError(f"WRN depth must be 6N + 4 with N >= 1, got {self.depth}")
        if self.widen_factor < 1:
            raise ValueError(f"widen_factor must be >= 1, got {self.widen_factor}")
        check_probability("block_dropout", self.block_dropout)

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 4) // 6


class WideResNet(ZooModel):
    """Bare 3x3 stem conv -> stages of pre-activation blocks -> BN-ReLU (neck) -> head."""

    def __init__(self, cfg: WideResNetConfig) -> None:
        widths = [w * cfg.widen_factor for w in cfg.widths]
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=widths[-1],
            min_input_size=2 ** (len(widths) - 1),
        )
        # A bare conv: the first block's BN-ReLU pre-activates it.
        self.stem = nn.Conv2d(cfg.in_channels, cfg.stem_width, 3, padding=1, bias=False)
        n = cfg.blocks_per_stage
        rates = iter(drop_path_rates(cfg.drop_path_rate, n * len(widths)))
        in_ch = cfg.stem_width
        stages = []
        for i, width in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(
                    PreActBlock(
                        in_ch,
                        width,
                        2 if i > 0 and j == 0 else 1,
                        block_dropout=cfg.block_dropout,
                        drop_path_rate=next(rates),
                        drop_path_mode=cfg.drop_path_mode,
                        norm_layer=cfg.norm_layer,
                        act_layer=cfg.act_layer,
                    )
                )
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.neck = NormAct(in_ch, cfg.norm_layer, cfg.act_layer)
        self.head = ClassifierHead(in_ch, cfg.num_classes, drop_rate=cfg.drop_rate)
        init_weights(self)


@dataclass(frozen=True)
class CifarRow:
    """A row of Table 4 (arXiv v4): the paper's params and CIFAR-10 error, our exact count."""

    config: WideResNetConfig
    params: int
    paper_params_m: float
    paper_error: float


CIFAR_WRNS = {
    "wrn16_8_cifar": CifarRow(WideResNetConfig(depth=16, widen_factor=8), params=10_961_370,
                              paper_params_m=11.0, paper_error=4.27),
    "wrn28_10_cifar": CifarRow(WideResNetConfig(depth=28, widen_factor=10), params=36_479_194,
                               paper_params_m=36.5, paper_error=4.00),
    "wrn40_4_cifar": CifarRow(WideResNetConfig(depth=40, widen_factor=4), params=8_949_210,
                              paper_params_m=8.9, paper_error=4.53),
}  # fmt: skip

for _name, _row in CIFAR_WRNS.items():
    register_model(
        _name,
        WideResNet,
        _row.config,
        info=ModelInfo(
            family="wide_resnet",
            paper=PAPER,
            table="Table 1 (structure); Table 4 (params, CIFAR-10 error)",
            dataset="cifar",
            input_size=32,
            num_classes=10,
            params=_row.params,
            paper_params_m=_row.paper_params_m,
            paper_accuracy=round(100 - _row.paper_error, 2),
            notes="block_dropout=0.3 gives the paper's dropout variant (section 2.4).",
        ),
        tiny=Tiny(overrides={"depth": 10, "widen_factor": 1, "widths": (4, 8, 16)}, input_size=16),
    )

# Section 3 (ImageNet): WRN-50-2-bottleneck, 68.9M params, 21.9% top-1 error (single crop):
# ResNet-50 with base_width=128 (the bottleneck's inner convs twice as wide).
_V15 = "ResNet v1.5 layout (stride on the 3x3 conv) as torchvision."
_WIDE = ResNetConfig(block="bottleneck", base_width=128)
IMAGENET_WRNS = {
    "wide_resnet50_2": Variant(replace(_WIDE, layers=(3, 4, 6, 3)), 68_883_240,
                               "Section 3, ImageNet (WRN-50-2-bottleneck)", paper_params_m=68.9,
                               paper_error=21.9, notes=_V15),
    "wide_resnet101_2": Variant(replace(_WIDE, layers=(3, 4, 23, 3)), 126_886_696,
                                "Section 3, ImageNet (WRN-50-2-bottleneck)",
                                notes=_V15 + " Depth 101 is not in the paper (torchvision's "
                                "variant)."),
}  # fmt: skip
register_table(
    "wide_resnet",
    PAPER,
    IMAGENET_WRNS,
    {"layers": (1, 1, 1, 1), "widths": (4, 8, 16, 32), "stem_width": 8},
)

__all__ = ["WideResNet", "WideResNetConfig"]
