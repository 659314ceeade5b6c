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
* Blocks are grouped into stages at each stride-2 block (the stride-1 first block of Large is its
  own stage). ``drop_path_rate`` (default 0) adds stochastic depth; the paper does not use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from torch import Tensor, nn

from convzoo.layers.conv import ActLayer, ConvNormAct, NormLayer
from convzoo.layers.drop import DropPathMode, drop_path_rates
from convzoo.layers.helpers import make_divisible
from convzoo.layers.mbconv import TF_BATCHNORM, InvertedResidual
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
    """One bneck row of Tables 1/2: kernel, exp size, #out, SE, NL, stride."""

    kernel_size: int
    mid_channels: int
    out_channels: int
    se: bool
    act_layer: ActLayer
    stride: int


def _b(k: int, exp: int, out: int, se: bool, act: ActLayer, s: int) -> Bneck:
    return Bneck(kernel_size=k, mid_channels=exp, out_channels=out, se=se, act_layer=act, stride=s)


# Table 1 (Large): kernel, exp size, #out, SE, NL, s; one tuple per stage.
LARGE: tuple[tuple[Bneck, ...], ...] = (
    (_b(3, 16, 16, False, RE, 1),),
    (_b(3, 64, 24, False, RE, 2), _b(3, 72, 24, False, RE, 1)),
    (_b(5, 72, 40, True, RE, 2), _b(5, 120, 40, True, RE, 1), _b(5, 120, 40, True, RE, 1)),
    (
        _b(3, 240, 80, False, HS, 2),
        _b(3, 200, 80, False, HS, 1),
        _b(3, 184, 80, False, HS, 1),
        _b(3, 184, 80, False, HS, 1),
        _b(3, 480, 112, True, HS, 1),
        _b(3, 672, 112, True, HS, 1),
    ),
    (_b(5, 672, 160, True, HS, 2), _b(5, 960, 160, True, HS, 1), _b(5, 960, 160, True, HS, 1)),
)
# Table 2 (Small).
SMALL: tuple[tuple[Bneck, ...], ...] = (
    (_b(3, 16, 16, True, RE, 2),),
    (_b(3, 72, 24, False, RE, 2), _b(3, 88, 24, False, RE, 1)),
    (
        _b(5, 96, 40, True, HS, 2),
        _b(5, 240, 40, True, HS, 1),
        _b(5, 240, 40, True, HS, 1),
        _b(5, 120, 48, True, HS, 1),
        _b(5, 144, 48, True, HS, 1),
    ),
    (_b(5, 288, 96, True, HS, 2), _b(5, 576, 96, True, HS, 1), _b(5, 576, 96, True, HS, 1)),
)


@dataclass(frozen=True)
class MobileNetV3Config:
    stages: tuple[tuple[Bneck, ...], ...] = LARGE
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


class MobileNetV3Head(nn.Module):
    """Pool -> linear to ``hidden`` -> h-swish -> dropout -> classifier (section 5.3)."""

    def __init__(self, in_features: int, hidden: int, num_classes: int, drop_rate: float) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc_hidden = nn.Linear(in_features, hidden)
        self.act = nn.Hardswish()
        self.drop = nn.Dropout(drop_rate)
        self.hidden = hidden
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.fc = nn.Linear(self.hidden, num_classes) if num_classes else nn.Identity()

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.drop(self.act(self.fc_hidden(self.flatten(self.pool(x)))))
        return x if pre_logits else self.fc(x)


class MobileNetV3(ZooModel):
    def __init__(self, cfg: MobileNetV3Config) -> None:
        if cfg.width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be > 0, got {cfg.width_multiplier}")

        def width(c: int) -> int:
            return make_divisible(c * cfg.width_multiplier, 8)

        rows = [row for stage in cfg.stages for row in stage]
        hidden = width(cfg.head_hidden_channels)
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=hidden,
            min_input_size=2 ** (1 + sum(r.stride == 2 for r in rows)),
        )
        in_ch = width(cfg.stem_channels)
        self.stem = ConvNormAct(
            cfg.in_channels, in_ch, 3, 2, norm_layer=cfg.norm_layer, act_layer=HS
        )
        se = partial(SqueezeExcite, act_layer=nn.ReLU, gate_layer=nn.Hardsigmoid)
        rates = iter(drop_path_rates(cfg.drop_path_rate, len(rows)))
        stages: list[nn.Module] = []
        for stage in cfg.stages:
            blocks: list[nn.Module] = []
            for row in stage:
                out_ch = width(row.out_channels)
                blocks.append(
                    InvertedResidual(
                        in_ch,
                        out_ch,
                        mid_channels=width(row.mid_channels),
                        kernel_size=row.kernel_size,
                        stride=row.stride,
                        se_layer=(lambda c: se(c, make_divisible(c / 4, 8))) if row.se else None,
                        norm_layer=cfg.norm_layer,
                        act_layer=row.act_layer,
                        drop_path_rate=next(rates),
                        drop_path_mode=cfg.drop_path_mode,
                    )
                )
                in_ch = out_ch
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        last = width(cfg.last_conv_channels)
        self.conv_head = ConvNormAct(in_ch, last, 1, norm_layer=cfg.norm_layer, act_layer=HS)
        self.head = MobileNetV3Head(last, hidden, cfg.num_classes, cfg.drop_rate)

    def forward_features(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.conv_head(self.stages(self.stem(x)))


_TINY_STAGES = (
    (_b(3, 16, 16, True, RE, 2),),
    (_b(3, 32, 24, False, HS, 2), _b(5, 48, 24, True, HS, 1)),
)
# Table 3 (params M, MAdds G, top-1 %) beside our exact count. Our MACs count conv and linear
# multiply-adds only (216.6M / 56.5M); Table 3 prints 219M / 56M without saying what else it
# counts (SE scaling and h-swish multiplies would add about that much), hence the MAC tolerances.
for _name, _stages, _last, _hidden, _params, _pm, _macs, _acc, _tol, _macs_tol in (
    ("mobilenet_v3_large", LARGE, 960, 1280, 5_483_032, 5.4, 0.219, 75.2, 0.09, 0.003),
    ("mobilenet_v3_small", SMALL, 576, 1024, 2_542_856, 2.5, 0.056, 67.4, None, 0.001),
):
    register_model(
        _name,
        MobileNetV3,
        MobileNetV3Config(stages=_stages, last_conv_channels=_last, head_hidden_channels=_hidden),
        info=ModelInfo(
            family="mobilenet",
            paper=PAPER,
            table="Table 1 (Large) / Table 2 (Small); Table 3 (ImageNet)",
            dataset="imagenet",
            input_size=224,
            num_classes=1000,
            params=_params,
            paper_params_m=_pm,
            paper_params_tol_m=_tol,
            paper_macs_g=_macs,
            paper_macs_tol_g=_macs_tol,
            paper_accuracy=_acc,
            notes="Built as released (TF-slim, torchvision)."
            + (
                " Table 3 prints 5.4M for 5,483,032 parameters."
                if _tol
                else " Table 2's SE on the last 1x1 conv is not in the release, nor here."
            ),
        ),
        tiny=Tiny(
            overrides={
                "stages": _TINY_STAGES,
                "last_conv_channels": 32,
                "head_hidden_channels": 32,
                "stem_channels": 16,
            },
            input_size=16,
        ),
    )
