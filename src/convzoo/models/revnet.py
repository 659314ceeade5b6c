"""RevNet: reversible residual networks trained without storing activations.

Gomez, Ren, Urtasun & Grosse, "The Reversible Residual Network: Backpropagation Without Storing
Activations", NeurIPS 2017, arXiv 1707.04585. Configs: Table 1 (units per stage, channels,
parameters), with the layer details of the authors' released code (revnet-public).

Each unit splits its channels into halves and applies y1 = x1 + F(x2), y2 = x2 + G(y1), where F
and G are pre-activation residual functions (BN-ReLU-conv3x3 twice, or the 1x1-3x3-1x1 bottleneck
whose inner width is a quarter of the half's width: ``convzoo.layers.preact.preact_branch``). The first unit of every stage changes
resolution and/or width: it is not invertible, its shortcuts are the identity downsampled
(average pooling + zero channel padding for basic units, a strided 1x1 projection for bottleneck
units), and its input is kept, as the paper says; the other units of the stage form one
``ReversibleSequence`` (convzoo.layers.reversible) that stores only its output when
``memory_saving`` is on. ``memory_saving=False`` (or ``set_memory_saving``) trains the same module
with ordinary autograd. Table 1 channel lists give the stem width and each stage's full width
(x1 and x2 together); bottleneck stages are 4x the listed width, as in the released code.

Deviations: none in the architecture. The very first unit skips its leading BN-ReLU (its input
just left the stem's BN-ReLU), as in the released code. Reference numbers: CIFAR-10 error
7.24 / 5.76 / 5.17 % (RevNet-38 / 110 / 164, Table 2) and ImageNet top-1 error 23.10 %
(RevNet-104, Table 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convzoo.layers.head import ClassifierHead
from convzoo.layers.preact import NormAct, preact_branch
from convzoo.layers.reversible import ReversibleCoupling, ReversibleSequence, set_memory_saving
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper(
    "The Reversible Residual Network: Backpropagation Without Storing Activations",
    "1707.04585",
    "Gomez, Ren, Urtasun, Grosse",
    2017,
)


@dataclass(frozen=True)
class RevNetConfig:
    depths: tuple[int, ...] = (3, 3, 3)  # units per stage
    # Stem width, then each stage's full width (both halves), as listed in Table 1.
    channels: tuple[int, ...] = (32, 32, 64, 112)
    strides: tuple[int, ...] = (1, 2, 2)
    bottleneck: bool = False
    imagenet_stem: bool = False  # 7x7/2 conv + 3x3/2 max pool instead of a 3x3 conv
    memory_saving: bool = True
    drop_rate: float = 0.0  # dropout before the classifier
    num_classes: int = 10
    in_channels: int = 3


class PoolPadShortcut(nn.Module):
    """Parameter-free shortcut: average-pool by ``stride``, zero-pad channels on both sides."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = (out_ch - in_ch) // 2

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride, self.stride)
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad)) if self.pad else x


class DownsampleCoupling(nn.Module):
    """First unit of a stage: the coupling with downsampled shortcuts (not invertible)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, *, bottleneck: bool, preact: bool):
        super().__init__()
        hi, ho = in_ch // 2, out_ch // 2
        self.f = preact_branch(hi, ho, stride, bottleneck=bottleneck, preact=preact)
        self.g = preact_branch(ho, ho, bottleneck=bottleneck)
        if bottleneck:
            self.shortcut1 = nn.Conv2d(hi, ho, 1, stride=stride, bias=False)
            self.shortcut2 = nn.Conv2d(hi, ho, 1, stride=stride, bias=False)
        else:
            self.shortcut1 = PoolPadShortcut(hi, ho, stride)
            self.shortcut2 = PoolPadShortcut(hi, ho, stride)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = x.chunk(2, dim=1)
        y1 = self.shortcut1(x1) + self.f(x2)
        y2 = self.shortcut2(x2) + self.g(y1)
        return torch.cat([y1, y2], dim=1)


class RevNet(ZooModel):
    def __init__(self, cfg: RevNetConfig) -> None:
        if not len(cfg.depths) == len(cfg.strides) == len(cfg.channels) - 1:
            raise ValueError("depths and strides need one entry per stage, channels one more")
        widths = [cfg.channels[0], *(c * (4 if cfg.bottleneck else 1) for c in cfg.channels[1:])]
        if any(w % 2 for w in widths):
            raise ValueError(f"every width must split into two halves, got {widths}")
        down = 4 if cfg.imagenet_stem else 1
        for s in cfg.strides:
            down *= s
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=widths[-1],
            min_input_size=down,
        )
        if cfg.imagenet_stem:
            self.stem = nn.Sequential(
                nn.Conv2d(cfg.in_channels, widths[0], 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(cfg.in_channels, widths[0], 3, padding=1, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(),
            )
        stages = []
        for i, (depth, stride) in enumerate(zip(cfg.depths, cfg.strides)):
            w_in, w = widths[i], widths[i + 1]
            first = DownsampleCoupling(w_in, w, stride, bottleneck=cfg.bottleneck, preact=i > 0)
            rest = [
                ReversibleCoupling(
                    preact_branch(w // 2, w // 2, bottleneck=cfg.bottleneck),
                    preact_branch(w // 2, w // 2, bottleneck=cfg.bottleneck),
                )
                for _ in range(depth - 1)
            ]
            stages.append(nn.Sequential(first, ReversibleSequence(rest, cfg.memory_saving)))
        self.stages = nn.Sequential(*stages)
        # The reversible state ends the stages; its BN-ReLU belongs to what follows (neck).
        self.neck = NormAct(widths[-1])
        self.head = ClassifierHead(widths[-1], cfg.num_classes, drop_rate=cfg.drop_rate)

    def set_memory_saving(self, enabled: bool) -> RevNet:
        """Same weights, other backward algorithm (see convzoo.layers.reversible)."""
        set_memory_saving(self, enabled)
        return self


# Table 1 (units, channels, params). CIFAR channels: stem, then stage widths; bottleneck
# stages are 4x wider (RevNet-164: 128-256-512), as in the released configs.
CONFIGS: dict[str, RevNetConfig] = {
    "revnet38_cifar": RevNetConfig(depths=(3, 3, 3), channels=(32, 32, 64, 112)),
    "revnet110_cifar": RevNetConfig(depths=(9, 9, 9), channels=(32, 32, 64, 128)),
    "revnet164_cifar": RevNetConfig(depths=(9, 9, 9), channels=(32, 32, 64, 128), bottleneck=True),
    "revnet104": RevNetConfig(
        depths=(2, 2, 11, 2),
        channels=(128, 128, 256, 512, 832),
        strides=(1, 2, 2, 2),
        bottleneck=True,
        imagenet_stem=True,
        num_classes=1000,
    ),
}

_CIFAR_TINY = {"depths": (2, 2, 2), "channels": (8, 8, 16, 16)}
_INFO = {
    "revnet38_cifar": dict(params=464_890, paper_params_m=0.46, paper_accuracy=92.76),
    "revnet110_cifar": dict(params=1_729_194, paper_params_m=1.73, paper_accuracy=94.24),
    "revnet164_cifar": dict(params=1_748_778, paper_params_m=1.75, paper_accuracy=94.83),
    "revnet104": dict(
        params=45_428_072,
        paper_params_m=45.2,
        paper_params_tol_m=0.25,
        paper_accuracy=76.90,
        notes="Our build of the released RevNet-104 config has 45.43M parameters, 0.23M "
        "more than Table 1's 45.2M; we could not find the layer that accounts for the gap.",
    ),
}

for _name, _cfg in CONFIGS.items():
    _imagenet = _cfg.imagenet_stem
    register_model(
        _name,
        RevNet,
        _cfg,
        info=ModelInfo(
            family="revnet",
            paper=PAPER,
            table="Table 1 (architecture, params); Tables 2-3 (error)",
            dataset="imagenet" if _imagenet else "cifar",
            input_size=224 if _imagenet else 32,
            num_classes=_cfg.num_classes,
            **_INFO[_name],
        ),
        tiny=Tiny(
            overrides={"depths": (2, 1, 1, 2), "channels": (8, 4, 4, 8, 8), "num_classes": 10},
            input_size=32,
        )
        if _imagenet
        else Tiny(overrides={**_CIFAR_TINY, "bottleneck": _cfg.bottleneck}, input_size=16),
    )
