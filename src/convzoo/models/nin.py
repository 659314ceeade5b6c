"""Network in Network (NiN).

Lin, Chen & Yan, "Network In Network", ICLR 2014, arXiv 1312.4400.

The CIFAR-10 network of section 4.2: three mlpconv layers (a spatial conv followed by two 1x1
convs, i.e. a per-pixel two-layer perceptron), max/avg pooling and dropout between them, and no
fully connected layer: the last mlpconv outputs one map per class and global average pooling turns
each map into a logit (section 3.2). The paper gives no layer table; the widths and kernels below
are those of the authors' released CIFAR-10 model definition, which section 4.2 describes in words
(192-160-96 / 192-192-192 / 192-192-10, kernels 5-5-3, dropout after the first two mlpconvs).

Deviations: none in the architecture. ``batch_norm=True`` adds BatchNorm after every conv, which
the 2014 network predates; it is off by default. The head's 1x1 conv (the last layer of the third
mlpconv) lives in ``head`` so that ``reset_classifier`` works as on every other model.
Reference numbers: 10.41% test error on CIFAR-10 without augmentation, 8.81% with (Table 2).

Training note: the head applies a ReLU to each class map before the global pooling, as the released
definition does. Once every class map is negative the logits are all zero and no gradient passes
that ReLU: without BatchNorm, SGD at lr 0.1 or 0.01 (batch 128) leaves the loss at ln 10 from the
first steps (BENCHMARKS.md section 5, ``benchmarks/first_steps.py``). The authors' Caffe recipe,
as a public port of their model-zoo definition reproduces it (jiecaoyu/pytorch-nin-cifar10,
``original.py``: Gaussian init std 0.05, the last layer at a tenth of the learning rate, whitened
input), is what trains the published network; ``batch_norm=True`` trains under the usual recipes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import NamedTuple

from torch import nn

from convzoo.layers.conv import ConvNormAct
from convzoo.layers.head import ConvClassifierHead
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper("Network In Network", "1312.4400", "Lin, Chen, Yan", 2014)


class MlpConv(NamedTuple):
    """One mlpconv: a ``kernel`` x ``kernel`` conv to ``width`` channels, then 1x1 convs to
    ``mlp1`` and ``mlp2`` channels (a two-layer perceptron at every pixel); a width of 0 leaves
    that 1x1 conv out. A plain tuple ``(kernel, width, mlp1, mlp2)`` is read the same way."""

    kernel: int
    width: int
    mlp1: int
    mlp2: int


@dataclass(frozen=True)
class NiNConfig:
    # The last mlpconv's second 1x1 conv is the classifier (``head``), hence its 0.
    blocks: tuple[MlpConv, ...] = (
        MlpConv(kernel=5, width=192, mlp1=160, mlp2=96),
        MlpConv(kernel=5, width=192, mlp1=192, mlp2=192),
        MlpConv(kernel=3, width=192, mlp1=192, mlp2=0),
    )
    block_dropout: float = 0.5  # after the first two mlpconvs (section 4.2)
    drop_rate: float = 0.0  # before the classifying 1x1 conv (not in the paper)
    batch_norm: bool = False
    num_classes: int = 10
    in_channels: int = 3


class NiN(ZooModel):
    def __init__(self, cfg: NiNConfig) -> None:
        rows = [MlpConv(*row) for row in cfg.blocks]
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=rows[-1].mlp1,
            min_input_size=2 ** (len(rows) - 1),
        )
        norm = nn.BatchNorm2d if cfg.batch_norm else None

        def mlpconv(in_ch: int, row: MlpConv) -> list[nn.Module]:
            widths = [w for w in (row.width, row.mlp1, row.mlp2) if w]
            layers = [ConvNormAct(in_ch, widths[0], row.kernel, norm_layer=norm)]
            layers += [ConvNormAct(a, b, 1, norm_layer=norm) for a, b in itertools.pairwise(widths)]
            return layers

        # The first mlpconv is the stem; pooling + dropout open each later stage.
        self.stem = nn.Sequential(*mlpconv(cfg.in_channels, rows[0]))
        stages: list[nn.Module] = []
        in_ch = self.stem[-1].out_channels
        pools = [nn.MaxPool2d, nn.AvgPool2d, nn.AvgPool2d]
        for i, row in enumerate(rows[1:]):
            pool = pools[min(i, 2)](3, stride=2, padding=1, ceil_mode=True)
            stages.append(nn.Sequential(pool, nn.Dropout(cfg.block_dropout), *mlpconv(in_ch, row)))
            in_ch = stages[-1][-1].out_channels
        self.stages = nn.Sequential(*stages)
        self.head = ConvClassifierHead(in_ch, cfg.num_classes, drop_rate=cfg.drop_rate)


register_model(
    "nin_cifar",
    NiN,
    NiNConfig(),
    info=ModelInfo(
        family="nin",
        paper=PAPER,
        table="Section 4.2 (CIFAR-10 network of the released model definition); Table 2",
        dataset="cifar",
        input_size=32,
        num_classes=10,
        params=966_986,
        paper_accuracy=91.19,
        notes="Paper accuracy is with data augmentation (8.81% error); 89.59% without.",
    ),
    tiny=Tiny(
        overrides={"blocks": (MlpConv(3, 8, 8, 8), MlpConv(3, 8, 8, 8), MlpConv(3, 8, 8, 0))},
        input_size=16,
    ),
)
