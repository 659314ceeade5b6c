"""Wide Residual Networks.

Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016, arXiv 1605.07146.

CIFAR WRN-d-k (Table 1): a 3x3 stem conv of 16 channels, then three stages of (d - 4) / 6
pre-activation basic blocks (BN-ReLU-conv3x3-BN-ReLU-conv3x3) of 16k, 32k and 64k channels, then
BN-ReLU, global average pooling and a linear classifier. ``drop_rate`` is the paper's dropout
between the two convs of a block (section 2.4, "WRN-28-10-dropout"); it is 0 by default. Where a
block changes width or stride, the shortcut is a 1x1 conv applied to the pre-activated input, as in
the authors' code. Parameter counts and CIFAR-10 errors: Table 4 (v4, mean/std preprocessing).

ImageNet WRN-50-2 (section 3, "WRN-50-2-bottleneck": ResNet-50 with the bottleneck's inner 1x1 and
3x3 convs twice as wide) and its depth-101 sibling are ``convzoo.models.resnet.ResNet`` with
``base_width=128``; WRN-101-2 is not in the paper (torchvision's variant).

Deviations: stochastic depth (``drop_path_rate``, ``drop_path_mode``) is available on every block,
as on every ResNet in convzoo; it is off by default and not part of the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from convzoo.layers.conv import ActLayer, NormLayer
from convzoo.layers.drop import DROP_PATH_MODES, DropPath, drop_path_rates
from convzoo.layers.head import ClassifierHead
from convzoo.models.base import ZooModel
from convzoo.models.resnet import ResidualBlock, ResNet, ResNetConfig, init_weights
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper("Wide Residual Networks", "1605.07146", "Zagoruyko, Komodakis", 2016)


@dataclass(frozen=True)
class WideResNetConfig:
    depth: int = 28  # 6N + 4: N blocks per stage
    widen_factor: int = 10  # k
    widths: tuple[int, ...] = (16, 32, 64)  # stage widths before widening
    stem_width: int = 16
    drop_rate: float = 0.0  # dropout between the two convs of each block
    drop_path_rate: float = 0.0
    drop_path_mode: str = "batch"
    norm_layer: NormLayer = nn.BatchNorm2d
    act_layer: ActLayer = nn.ReLU
    num_classes: int = 10
    in_channels: int = 3

    def __post_init__(self) -> None:
        if (self.depth - 4) % 6 or self.depth < 10:
            raise ValueError(f"WRN depth must be 6N + 4 with N >= 1, got {self.depth}")
        if self.widen_factor < 1:
            raise ValueError(f"widen_factor must be >= 1, got {self.widen_factor}")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {self.drop_rate}")
        if self.drop_path_mode not in DROP_PATH_MODES:
            raise ValueError(f"drop_path_mode must be one of {DROP_PATH_MODES}")

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 4) // 6


class PreActBlock(ResidualBlock):
    """BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3, added to the (projected) input; no final ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        cfg: WideResNetConfig,
        drop_path: DropPath,
    ) -> None:
        super().__init__(drop_path, nn.Identity)  # pre-activation: nothing after the addition
        self.norm1 = cfg.norm_layer(in_channels)
        self.act1 = cfg.act_layer()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.norm2 = cfg.norm_layer(out_channels)
        self.act2 = cfg.act_layer()
        self.drop = nn.Dropout(cfg.drop_rate)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.downsample = None
        if in_channels != out_channels or stride != 1:
            self.downsample = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def _preact(self, x: Tensor) -> Tensor:
        return self.act1(self.norm1(x))

    def _convs(self, x: Tensor) -> Tensor:
        return self.conv2(self.drop(self.act2(self.norm2(self.conv1(x)))))

    def branch(self, x: Tensor) -> Tensor:
        return self._convs(self._preact(x))

    def forward(self, x: Tensor) -> Tensor:
        if self.downsample is None:
            return super().forward(x)
        # The projection reads the pre-activated input, so both paths share it.
        o = self._preact(x)
        return self.drop_path.add_branch(self.downsample(o), lambda: self._convs(o))


class WideResNet(ZooModel):
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
                stride = 2 if i > 0 and j == 0 else 1
                drop = DropPath(next(rates), cfg.drop_path_mode)
                blocks.append(PreActBlock(in_ch, width, stride, cfg=cfg, drop_path=drop))
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.final_norm = cfg.norm_layer(in_ch)
        self.final_act = cfg.act_layer()
        self.head = ClassifierHead(in_ch, cfg.num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.final_act(self.final_norm(self.stages(self.stem(x))))


# Table 4 (arXiv v4): params (M), CIFAR-10 test error (%); our exact counts.
_CIFAR_WRNS = {
    "wrn16_8_cifar": (16, 8, 11.0, 4.27, 10_961_370),
    "wrn28_10_cifar": (28, 10, 36.5, 4.00, 36_479_194),
    "wrn40_4_cifar": (40, 4, 8.9, 4.53, 8_949_210),
}

for _name, (_depth, _k, _pm, _err, _params) in _CIFAR_WRNS.items():
    register_model(
        _name,
        WideResNet,
        WideResNetConfig(depth=_depth, widen_factor=_k),
        info=ModelInfo(
            family="wide_resnet",
            paper=PAPER,
            table="Table 1 (structure); Table 4 (params, CIFAR-10 error)",
            dataset="cifar",
            input_size=32,
            num_classes=10,
            params=_params,
            paper_params_m=_pm,
            paper_accuracy=round(100 - _err, 2),
            notes="drop_rate=0.3 gives the paper's dropout variant (section 2.4).",
        ),
        tiny=Tiny(overrides={"depth": 10, "widen_factor": 1, "widths": (4, 8, 16)}, input_size=16),
    )

# Section 3 (ImageNet): WRN-50-2-bottleneck, 68.9M params, 21.9% top-1 error (single crop).
_IMAGENET_WRNS = {
    "wide_resnet50_2": ((3, 4, 6, 3), 68.9, 100 - 21.9, 68_883_240),
    "wide_resnet101_2": ((3, 4, 23, 3), None, None, 126_886_696),
}

for _name, (_layers, _pm, _acc, _params) in _IMAGENET_WRNS.items():
    register_model(
        _name,
        ResNet,
        ResNetConfig(block="bottleneck", layers=_layers, base_width=128),
        info=ModelInfo(
            family="wide_resnet",
            paper=PAPER,
            table="Section 3, ImageNet (WRN-50-2-bottleneck)",
            dataset="imagenet",
            input_size=224,
            num_classes=1000,
            params=_params,
            paper_params_m=_pm,
            paper_accuracy=None if _acc is None else round(_acc, 2),
            notes="ResNet v1.5 layout (stride on the 3x3 conv) as torchvision."
            + ("" if _pm else " Depth 101 is not in the paper (torchvision's variant)."),
        ),
        tiny=Tiny(
            overrides={"layers": (1, 1, 1, 1), "widths": (4, 8, 16, 32), "stem_width": 8},
            input_size=32,
        ),
    )

__all__ = ["PreActBlock", "WideResNet", "WideResNetConfig"]
