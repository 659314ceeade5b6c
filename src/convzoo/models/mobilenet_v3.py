"""MobileNet v3 Large and Small.

Howard et al., "Searching for MobileNetV3", ICCV 2019, arXiv 1905.02244.

Table 1 (Large) and Table 2 (Small): a 3x3 stride-2 conv with h-swish, a list of "bneck"
blocks (MobileNet v2 inverted residuals with the expanded width ``exp size`` given directly,
optional squeeze-and-excitation after the depthwise conv, ReLU or h-swish), then the efficient
last stage of section 5.3: 1x1 conv to 960 (576), global pooling, a 1x1 conv without BN to 1280
(1024) with h-swish, and the classifier. Reference numbers: Table 3 (Large 1.0: 75.2%, 219M
MAdds, 5.4M parameters; Small 1.0: 67.4%, 56M, 2.5M).

SE (section 5.2): squeeze to ``make_divisible(exp / 4, 8)`` channels, ReLU, hard-sigmoid gate.
h-swish(x) = x ReLU6(x + 3) / 6 and h-sigmoid(x) = ReLU6(x + 3) / 6 are exactly torch's
``nn.Hardswish`` and ``nn.Hardsigmoid``.

Deviations and choices:
* Built as released (TF-slim / torchvision ``mobilenet_v3_large`` / ``_small``; outputs identical
  to torchvision's, see tests). Large has 5,483,032 parameters where Table 3 prints 5.4M
  (tolerance 0.09M, the paper's figure is not reproducible from its own Table 1).
* Table 2 marks the last 1x1 conv (576) of Small with SE; the released models have no SE there,
  and neither do we.
* BatchNorm eps 1e-3 and momentum 0.01 (TensorFlow's 0.99 decay), as in the reference.
* The 1x1 convs after pooling are linear layers (identical on a 1x1 map); dropout 0.2 before the
  classifier as released.
* Blocks are grouped into one stage per resolution, a new one at each stride-2 block (the
  stride-1 first block of Large is a stage at the stem's resolution). The 1x1 conv before pooling
  is the ``neck``. ``drop_path_rate`` (default 0) adds stochastic depth; the paper does not use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from torch import Tensor, nn

from convzoo.layers.conv import ActLayer, ConvNormAct, NormLayer
from convzoo.layers.drop import DropPathMode
from convzoo.layers.head import LinearHead
from convzoo.layers.helpers import check_probability, make_divisible
from convzoo.layers.mbconv import TF_BATCHNORM, InvertedResidual, PlannedBlock, resolution_stages
from convzoo.layers.squeeze_excite import SqueezeExcite
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper(
    "Searching for MobileNetV3",
    "1905.02244",
    "Howard, Sandler, Chu, Chen, Chen, Tan, Wang, Zhu, Pang, Vasudevan, Le, Adam",
    2019,
)
RE, HS = nn.ReLU, nn.Hardswish


@dataclass(frozen=True)
class Bneck:
    """One bneck row of Tables 1/2: kernel, exp size, #out, SE, NL, s."""

    kernel_size: int
    mid_channels: int
    out_channels: int
    se: bool
    act_layer: ActLayer
    stride: int


# Table 1 (Large), one bneck row per block: kernel, exp size, #out, SE, NL, s.
LARGE: tuple[Bneck, ...] = (
    Bneck(kernel_size=3, mid_channels=16, out_channels=16, se=False, act_layer=RE, stride=1),
    Bneck(kernel_size=3, mid_channels=64, out_channels=24, se=False, act_layer=RE, stride=2),
    Bneck(kernel_size=3, mid_channels=72, out_channels=24, se=False, act_layer=RE, stride=1),
    Bneck(kernel_size=5, mid_channels=72, out_channels=40, se=True, act_layer=RE, stride=2),
    Bneck(kernel_size=5, mid_channels=120, out_channels=40, se=True, act_layer=RE, stride=1),
    Bneck(kernel_size=5, mid_channels=120, out_channels=40, se=True, act_layer=RE, stride=1),
    Bneck(kernel_size=3, mid_channels=240, out_channels=80, se=False, act_layer=HS, stride=2),
    Bneck(kernel_size=3, mid_channels=200, out_channels=80, se=False, act_layer=HS, stride=1),
    Bneck(kernel_size=3, mid_channels=184, out_channels=80, se=False, act_layer=HS, stride=1),
    Bneck(kernel_size=3, mid_channels=184, out_channels=80, se=False, act_layer=HS, stride=1),
    Bneck(kernel_size=3, mid_channels=480, out_channels=112, se=True, act_layer=HS, stride=1),
    Bneck(kernel_size=3, mid_channels=672, out_channels=112, se=True, act_layer=HS, stride=1),
    Bneck(kernel_size=5, mid_channels=672, out_channels=160, se=True, act_layer=HS, stride=2),
    Bneck(kernel_size=5, mid_channels=960, out_channels=160, se=True, act_layer=HS, stride=1),
    Bneck(kernel_size=5, mid_channels=960, out_channels=160, se=True, act_layer=HS, stride=1),
)
# Table 2 (Small).
SMALL: tuple[Bneck, ...] = (
    Bneck(kernel_size=3, mid_channels=16, out_channels=16, se=True, act_layer=RE, stride=2),
    Bneck(kernel_size=3, mid_channels=72, out_channels=24, se=False, act_layer=RE, stride=2),
    Bneck(kernel_size=3, mid_channels=88, out_channels=24, se=False, act_layer=RE, stride=1),
    Bneck(kernel_size=5, mid_channels=96, out_channels=40, se=True, act_layer=HS, stride=2),
    Bneck(kernel_size=5, mid_channels=240, out_channels=40, se=True, act_layer=HS, stride=1),
    Bneck(kernel_size=5, mid_channels=240, out_channels=40, se=True, act_layer=HS, stride=1),
    Bneck(kernel_size=5, mid_channels=120, out_channels=48, se=True, act_layer=HS, stride=1),
    Bneck(kernel_size=5, mid_channels=144, out_channels=48, se=True, act_layer=HS, stride=1),
    Bneck(kernel_size=5, mid_channels=288, out_channels=96, se=True, act_layer=HS, stride=2),
    Bneck(kernel_size=5, mid_channels=576, out_channels=96, se=True, act_layer=HS, stride=1),
    Bneck(kernel_size=5, mid_channels=576, out_channels=96, se=True, act_layer=HS, stride=1),
)


@dataclass(frozen=True)
class MobileNetV3Config:
    blocks: tuple[Bneck, ...] = LARGE
    stem_channels: int = 16
    last_conv_channels: int = 960  # the 1x1 conv before pooling
    head_hidden_channels: int = 1280  # the 1x1 conv (linear) after pooling
    width_multiplier: float = 1.0
    norm_layer: NormLayer = TF_BATCHNORM
    drop_rate: float = 0.2
    drop_path_rate: float = 0.0
    drop_path_mode: DropPathMode = "sample"
    num_classes: int = 1000
    in_channels: int = 3


class MobileNetV3Head(LinearHead):
    """Pool -> linear to ``hidden`` -> h-swish -> dropout -> classifier (section 5.3)."""

    def __init__(self, in_features: int, hidden: int, num_classes: int, drop_rate: float) -> None:
        super().__init__(hidden)
        check_probability("drop_rate", drop_rate)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc_hidden = nn.Linear(in_features, hidden)
        self.act = nn.Hardswish()
        self.drop = nn.Dropout(drop_rate)
        self.reset(num_classes)

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.drop(self.act(self.fc_hidden(self.flatten(self.pool(x)))))
        return x if pre_logits else self.fc(x)


class MobileNetV3(ZooModel):
    def __init__(self, cfg: MobileNetV3Config) -> None:
        if cfg.width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be > 0, got {cfg.width_multiplier}")

        def width(c: int) -> int:
            return make_divisible(c * cfg.width_multiplier, 8)

        hidden = width(cfg.head_hidden_channels)
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=hidden,
            min_input_size=2 ** (1 + sum(b.stride == 2 for b in cfg.blocks)),
        )
        self.stem = ConvNormAct(
            cfg.in_channels, width(cfg.stem_channels), 3, 2, norm_layer=cfg.norm_layer, act_layer=HS
        )
        rows = [
            [
                PlannedBlock(
                    width(b.out_channels),
                    b.stride,
                    partial(
                        _bneck,
                        row=b,
                        out_channels=width(b.out_channels),
                        mid_channels=width(b.mid_channels),
                        cfg=cfg,
                    ),
                )
            ]
            for b in cfg.blocks
        ]
        self.stages = resolution_stages(
            rows, width(cfg.stem_channels), drop_path_rate=cfg.drop_path_rate, nest_rows=False
        )
        last = width(cfg.last_conv_channels)
        self.neck = ConvNormAct(
            width(cfg.blocks[-1].out_channels), last, 1, norm_layer=cfg.norm_layer, act_layer=HS
        )
        self.head = MobileNetV3Head(last, hidden, cfg.num_classes, cfg.drop_rate)


def _bneck(
    in_channels: int,
    stride: int,
    drop_path_rate: float,
    *,
    row: Bneck,
    out_channels: int,
    mid_channels: int,
    cfg: MobileNetV3Config,
) -> InvertedResidual:
    return InvertedResidual(
        in_channels,
        out_channels,
        mid_channels=mid_channels,
        kernel_size=row.kernel_size,
        stride=stride,
        se_layer=_se if row.se else None,
        norm_layer=cfg.norm_layer,
        act_layer=row.act_layer,
        drop_path_rate=drop_path_rate,
        drop_path_mode=cfg.drop_path_mode,
    )


def _se(channels: int) -> SqueezeExcite:
    """Section 5.2: squeeze to a quarter of the expanded width, ReLU, hard-sigmoid gate."""
    return SqueezeExcite(
        channels, make_divisible(channels / 4, 8), act_layer=nn.ReLU, gate_layer=nn.Hardsigmoid
    )


_TINY_BLOCKS = (
    Bneck(kernel_size=3, mid_channels=16, out_channels=16, se=True, act_layer=RE, stride=2),
    Bneck(kernel_size=3, mid_channels=32, out_channels=24, se=False, act_layer=HS, stride=2),
    Bneck(kernel_size=5, mid_channels=48, out_channels=24, se=True, act_layer=HS, stride=1),
)


@dataclass(frozen=True)
class Table3Row:
    """A row of Table 3 beside our exact parameter count, with tolerances where it is rounded."""

    params_m: float
    madds_g: float
    top1: float
    params: int
    params_tol_m: float | None = None
    madds_tol_g: float | None = None


# Section 5.3's last stage: the 1x1 conv before pooling and the one after it, per model.
CONFIGS: dict[str, MobileNetV3Config] = {
    "mobilenet_v3_large": MobileNetV3Config(
        blocks=LARGE, last_conv_channels=960, head_hidden_channels=1280
    ),
    "mobilenet_v3_small": MobileNetV3Config(
        blocks=SMALL, last_conv_channels=576, head_hidden_channels=1024
    ),
}
# Table 3 (1.0 models). Our MACs count conv and linear multiply-adds only (216.6M / 56.5M);
# Table 3 prints 219M / 56M without saying what else it counts (SE scaling and h-swish
# multiplies would add about that much), hence the MAdds tolerances.
TABLE3: dict[str, Table3Row] = {
    "mobilenet_v3_large": Table3Row(
        params_m=5.4,
        madds_g=0.219,
        top1=75.2,
        params=5_483_032,
        params_tol_m=0.09,
        madds_tol_g=0.003,
    ),
    "mobilenet_v3_small": Table3Row(
        params_m=2.5, madds_g=0.056, top1=67.4, params=2_542_856, madds_tol_g=0.001
    ),
}
for _name, _row in TABLE3.items():
    register_model(
        _name,
        MobileNetV3,
        CONFIGS[_name],
        info=ModelInfo(
            family="mobilenet",
            paper=PAPER,
            table="Table 1 (Large) / Table 2 (Small); Table 3 (ImageNet)",
            dataset="imagenet",
            input_size=224,
            num_classes=1000,
            params=_row.params,
            paper_params_m=_row.params_m,
            paper_params_tol_m=_row.params_tol_m,
            paper_macs_g=_row.madds_g,
            paper_macs_tol_g=_row.madds_tol_g,
            paper_accuracy=_row.top1,
            notes="Built as released (TF-slim, torchvision)."
            + (
                " Table 3 prints 5.4M for 5,483,032 parameters."
                if _row.params_tol_m
                else " Table 2's SE on the last 1x1 conv is not in the release, nor here."
            ),
        ),
        tiny=Tiny(
            overrides={
                "blocks": _TINY_BLOCKS,
                "last_conv_channels": 32,
                "head_hidden_channels": 32,
                "stem_channels": 16,
            },
            input_size=16,
        ),
    )
