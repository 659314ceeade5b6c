"""SqueezeNext: 1.0 / 1.5 / 2.0-SqNxt-23 and the 23v5 variants.

Gholami, Kwon, Wu, Tai, Yue, Jin, Zhao & Keutzer, "SqueezeNext: Hardware-Aware Neural Network
Design", CVPR workshops 2018, arXiv 1803.10615. The block is the paper's Figure 1 (right): a
two-stage 1x1 squeeze, the 3x3 conv made separable (3x1 and 1x3), a 1x1 expansion and a
residual shortcut. The network: a 7x7/2 stem conv and 3x3/2 max pool, four stages of blocks
(widths 32 / 64 / 128 / 256 times the width multiplier 1.0 / 1.5 / 2.0), a 1x1 conv of 128
channels, global average pooling, FC. Blocks per stage: (6, 6, 8, 1) for SqNxt-23 and
(2, 4, 14, 1) for the hardware-motivated v5 variant, which moves blocks out of the
high-resolution early stages; 23 = stem + 21 blocks + final conv.

The SqNxt block (out = output width, every conv followed by BN and ReLU):
1x1 (stride s) to out/2, 1x1 to out/4 (the two-stage squeeze), a separable 3x3 as 3x1 and 1x3
convs to out/2, 1x1 expand to out; shortcut = identity, or a 1x1 conv (stride s, BN, ReLU) where
the width or resolution changes; sum; ReLU. Stride 2 sits in the first block of stages 2-4.

Where the paper is silent, the details are those of the authors' Caffe release
(github.com/amirgholami/SqueezeNext, train_val.prototxt of 1.0-SqNxt-23, 2.0-SqNxt-23,
1.0-SqNxt-23v5 and 2.0-SqNxt-23v5): the separable pair alternates order from block to block across
the whole network (3x1 then 1x3 in blocks 1, 3, 5, ...; 1x3 then 3x1 in blocks 2, 4, ...); the
stem (64 channels, 7x7/2, no padding) and the final 1x1 conv (128 channels) are not widened by
the width multiplier (both 2.0x prototxts open with a 64-channel stem and end with the 128-channel
conv ``Convolution111`` before pooling); the first block of every stage has a 1x1 projection,
even in 2.0x where the 64-channel stem already matches stage 1's width (``Convolution2``); the
squeeze widths follow the block's *output* width as above; convs have no bias (BN follows each),
the projection shortcut has BN and ReLU. The release has no 1.5x prototxts; 1.5x follows the
rule that both 2.0x files share (blocks widened, stem and final conv not). pytorchcv's 1.5x /
2.0x counts (1.51M / 2.58M against our 1.41M / 2.36M) come from widening the stem and final
conv, which the 2.0x prototxts do not. The 23v5 release differs from
the 23 release in two more ways, which ``stem_kernel_size`` and ``project_first`` reproduce: a
5x5 stem conv instead of 7x7, and where a block changes width or resolution its 1x1 projection
(stride s, BN, ReLU) comes first and the block then runs as an identity block on the projected
map (in 23 the projection is a parallel shortcut and the block's first 1x1 conv reads the input);
the 5x5 stem (64 channels, stride 2, no padding) is in both 23v5 prototxts, 1.0x and 2.0x.

The four stages are ``stages`` (the first at the stem's resolution), the final 1x1 conv the
``neck``. ``drop_path_rate`` (default 0: neither paper nor release uses it) drops the residual
branches through the shared stochastic-depth schedule.

Deviations: the FC has a bias (the release's has none: 1000 more parameters). The released
Caffe models take 227x227 crops; ``input_size`` says 224 like every ImageNet model here.
pytorchcv's ``sqnxt*`` models are not this network (they widen the stem and final conv, keep one
separable order, add conv biases and build v5 with the 23 stem and shortcuts), so no weight
conversion is offered.
Reference numbers: the paper's results table is not checked yet (see ``ModelInfo.notes``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import Tensor, nn

from convzoo.layers.conv import ConvNormAct
from convzoo.layers.drop import DropPath, DropPathMode, drop_path_rates
from convzoo.layers.head import ClassifierHead
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper(
    "SqueezeNext: Hardware-Aware Neural Network Design",
    "1803.10615",
    "Gholami, Kwon, Wu, Tai, Yue, Jin, Zhao, Keutzer",
    2018,
)


@dataclass(frozen=True)
class SqueezeNextConfig:
    stage_channels: tuple[int, ...] = (32, 64, 128, 256)
    stage_repeats: tuple[int, ...] = (6, 6, 8, 1)
    width_multiplier: float = 1.0
    stem_channels: int = 64
    stem_kernel_size: int = 7
    project_first: bool = False
    final_channels: int = 128
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    drop_path_mode: DropPathMode = "sample"
    num_classes: int = 1000
    in_channels: int = 3


# Section 4 / Figure 3 (23) and Figure 8 (23v5): blocks per stage.
# The v5 stem and projection order are those of the 23v5 release (module docstring).
_DEPTHS: dict[str, SqueezeNextConfig] = {
    "23": SqueezeNextConfig(stage_repeats=(6, 6, 8, 1)),
    "23v5": SqueezeNextConfig(stage_repeats=(2, 4, 14, 1), stem_kernel_size=5, project_first=True),
}
CONFIGS: dict[str, SqueezeNextConfig] = {
    f"{depth}_w{label}": dataclasses.replace(base, width_multiplier=w)
    for depth, base in _DEPTHS.items()
    for label, w in (("1", 1.0), ("1_5", 1.5), ("2", 2.0))
}


class SqNxtBlock(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        vertical_first: bool,
        project_first: bool = False,
        first_in_stage: bool = False,
        drop_path_rate: float = 0.0,
        drop_path_mode: DropPathMode = "sample",
    ) -> None:
        super().__init__()
        if out_channels % 4:
            raise ValueError(f"SqNxt block widths must be multiples of 4, got {out_channels}")
        half, quarter = out_channels // 2, out_channels // 4
        separable = [
            ConvNormAct(quarter, half, (3, 1)),
            ConvNormAct(half, half, (1, 3)),
        ]
        if not vertical_first:
            # Same widths, kernels swapped: 1x3 from out/4 to out/2, then 3x1.
            separable = [ConvNormAct(quarter, half, (1, 3)), ConvNormAct(half, half, (3, 1))]
        # The releases project in the first block of every stage, even where 2.0x's 64-channel
        # stem already has the stage's width.
        changes = stride > 1 or in_channels != out_channels or first_in_stage
        # The 23v5 order: project, then an identity block on the projection.
        self.project = (
            ConvNormAct(in_channels, out_channels, 1, stride)
            if changes and project_first
            else nn.Identity()
        )
        if changes and project_first:
            in_channels, stride = out_channels, 1
        self.branch = nn.Sequential(
            ConvNormAct(in_channels, half, 1, stride),
            ConvNormAct(half, quarter, 1),
            *separable,
            ConvNormAct(half, out_channels, 1),
        )
        self.shortcut = (
            ConvNormAct(in_channels, out_channels, 1, stride)
            if changes and not project_first
            else nn.Identity()
        )
        self.drop_path = DropPath(drop_path_rate, drop_path_mode)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.project(x)
        return self.act(self.drop_path.add_branch(self.shortcut(x), lambda: self.branch(x)))


class SqueezeNext(ZooModel):
    def __init__(self, cfg: SqueezeNextConfig) -> None:
        if len(cfg.stage_channels) != len(cfg.stage_repeats) or min(cfg.stage_repeats) < 1:
            raise ValueError("stage_channels and stage_repeats need one positive entry per stage")
        widths = [int(c * cfg.width_multiplier) for c in cfg.stage_channels]
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=cfg.final_channels,
            # The unpadded k x k /2 stem conv must leave the 3x3/2 ceil-mode pool 2 pixels.
            min_input_size=2 + cfg.stem_kernel_size,
        )
        self.stem = nn.Sequential(
            ConvNormAct(
                cfg.in_channels, cfg.stem_channels, cfg.stem_kernel_size, stride=2, padding=0
            ),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
        )
        rates = iter(drop_path_rates(cfg.drop_path_rate, sum(cfg.stage_repeats)))
        stages: list[nn.Module] = []
        in_ch, index = cfg.stem_channels, 0
        for i, (out_ch, repeats) in enumerate(zip(widths, cfg.stage_repeats, strict=True)):
            blocks = []
            for j in range(repeats):
                stride = 2 if i > 0 and j == 0 else 1
                vertical_first = index % 2 == 0  # 3x1 first in blocks 1, 3, 5, ... (1-based)
                blocks.append(
                    SqNxtBlock(
                        in_ch,
                        out_ch,
                        stride,
                        vertical_first,
                        cfg.project_first,
                        first_in_stage=j == 0,
                        drop_path_rate=next(rates),
                        drop_path_mode=cfg.drop_path_mode,
                    )
                )
                in_ch, index = out_ch, index + 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.neck = ConvNormAct(in_ch, cfg.final_channels, 1)
        self.head = ClassifierHead(cfg.final_channels, cfg.num_classes, drop_rate=cfg.drop_rate)


@dataclass(frozen=True)
class Variant:
    """A network of the paper: its label, top-1 % where recorded, our exact parameter count."""

    label: str
    params: int
    top1: float | None = None


VARIANTS: dict[str, Variant] = {
    "23_w1": Variant(label="1.0-SqNxt-23", params=718_280, top1=59.05),
    "23_w1_5": Variant(label="1.5-SqNxt-23", params=1_407_384),
    "23_w2": Variant(label="2.0-SqNxt-23", params=2_362_728, top1=67.18),
    "23v5_w1": Variant(label="1.0-SqNxt-23v5", params=931_016),
    "23v5_w1_5": Variant(label="1.5-SqNxt-23v5", params=1_890_456),
    "23v5_w2": Variant(label="2.0-SqNxt-23v5", params=3_223_912),
}
_NOTES = (
    "Built as the authors' Caffe release (amirgholami/SqueezeNext train_val.prototxt files; "
    "module docstring): stem (7x7, or 5x5 in 23v5) and final conv are not widened at 1.5x/2.0x, "
    "as both 2.0x prototxts show; the release has no 1.5x file. The paper's results table could "
    "not be consulted when this was written (offline), so its parameter and MAC columns are not "
    "recorded or tested; top-1 is recorded only where a second source agrees (59.05% for "
    "1.0-SqNxt-23, about 3 points above a re-implementation's 56%; 67.18% for 2.0-SqNxt-23)."
)

for _key, _v in VARIANTS.items():
    register_model(
        f"sqnxt{_key}",
        SqueezeNext,
        CONFIGS[_key],
        info=ModelInfo(
            family="squeezenext",
            paper=PAPER,
            table=f"Figure 1 (block) and the {_v.label} network; block details from the Caffe release",
            dataset="imagenet",
            input_size=224,
            num_classes=1000,
            params=_v.params,
            paper_accuracy=_v.top1,
            notes=_NOTES,
        ),
        tiny=Tiny(
            overrides={
                "stage_channels": (8, 8, 16, 16),
                "stage_repeats": (2, 1, 1, 1),
                "stem_channels": 8,
                "final_channels": 16,
            },
            input_size=32,
        ),
    )
