"""Multi-ResNet: residual blocks with k residual functions.

Abdi & Nahavandi, "Multi-Residual Networks: Improving the Speed and Accuracy of Residual
Networks", arXiv 1609.05672. The multi-residual block is y = x + sum_{i=1..k} f_i(x): k
independent residual functions on one identity path, so a network of n blocks is an ensemble of
(k+1)^n paths instead of 2^n, wider rather than deeper.

Configurations: the CIFAR results table of the authors' repository README (its best errors,
3.73% / 19.45% on CIFAR-10 / -100, are the paper's abstract; the paper's own tables could not be
consulted here): pre-activation bottleneck networks of depth 9n+2 (stages of 64-128-256 output
channels with 4x bottlenecks, a 16-channel stem conv; 200 and 398 layers, k=5) and wide
pre-activation networks of depth 6n+2 (basic 3x3-3x3 functions, widths 16w-32w-64w, w=10;
26 layers, k=2 and k=4). The block follows the authors' Torch code: when a block changes shape,
one BatchNorm-ReLU is shared by the k functions and by the 1x1 projection shortcut; otherwise
every function has its own pre-activation and the shortcut is the identity. The network ends
with BatchNorm-ReLU, global average pooling and a linear classifier. The authors' repository
holds the bottleneck network only; the wide one is built like a Wide ResNet (Zagoruyko &
Komodakis) with k functions per block under the same rule, consistent with the table's "72M".

Authors' material read (masabdi/multi-resnet): ``README.md`` (the table), ``models/multi-resnet.lua``
(the bottleneck network: stride on the first 1x1 conv, the shared pre-activation of a
shape-changing block, bias-free convs; ours builds it exactly, 10,187,354 and 20,388,314
parameters) and ``models/mpreresnet.lua`` (a model-parallel pre-activation ResNet with k basic
functions per block, widths 16-32-64 and no width factor, and by default the parameter-free
zero-padding shortcut). No released code builds the wide rows, so their layout stays our
reconstruction, and nothing in that material yields 154M: mpreresnet's choices (no
pre-activation in the first block, parameter-free shortcuts) only lower the count.

The block is ``convzoo.layers.preact.PreActBlock`` with ``num_branches=k``.

Deviations: none known. ``block_dropout`` adds dropout before the last conv of every function
(between the two convs of a basic one: the Wide ResNet recipe; off by default, the paper does not
say). ``drop_path_rate``
adds stochastic depth over the sum of the k functions (off by default; a dropped block skips all
k functions). Parameter counts: 10.2M and 20.4M match the table; the wide networks have 72.7M
and 145.1M, printed as "72M" (truncated) and "154M" (145.1M with two digits swapped, we
believe: k=4 doubles the functions of k=2, and nothing in the description adds 9M), so those two
rows carry a wider ``paper_params_tol_m`` with the reason in ``notes``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from convzoo.layers.drop import DropPathMode, drop_path_rates
from convzoo.layers.head import ClassifierHead
from convzoo.layers.preact import NormAct, PreActBlock
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper(
    "Multi-Residual Networks: Improving the Speed and Accuracy of Residual Networks",
    "1609.05672",
    "Abdi, Nahavandi",
    2016,
)


@dataclass(frozen=True)
class MultiResNetConfig:
    depth: int = 200
    k: int = 5  # residual functions per block
    bottleneck: bool = True  # depth 9n+2 with 1x1-3x3-1x1 functions, else 6n+2 with 3x3-3x3
    widths: tuple[int, int, int] = (64, 128, 256)  # stage output channels before widen_factor
    widen_factor: int = 1
    stem_width: int = 16
    block_dropout: float = 0.0  # dropout before each function's last conv (WRN-style)
    drop_rate: float = 0.0  # dropout before the classifier
    drop_path_rate: float = 0.0  # stochastic depth over the k-function sum
    drop_path_mode: DropPathMode = "batch"
    num_classes: int = 10
    in_channels: int = 3


class MultiResNet(ZooModel):
    """Bare stem conv -> stages of multi-residual blocks -> BN-ReLU (neck) -> head."""

    def __init__(self, cfg: MultiResNetConfig) -> None:
        per_block = 9 if cfg.bottleneck else 6
        if cfg.depth < per_block + 2 or (cfg.depth - 2) % per_block:
            kind = "bottleneck" if cfg.bottleneck else "basic"
            raise ValueError(f"{kind} Multi-ResNet depth must be {per_block}n+2, got {cfg.depth}")
        if cfg.k < 1:
            raise ValueError(f"k (residual functions per block) must be >= 1, got {cfg.k}")
        n = (cfg.depth - 2) // per_block
        widths = [w * cfg.widen_factor for w in cfg.widths]
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=widths[-1],
            min_input_size=4,
        )
        self.stem = nn.Conv2d(cfg.in_channels, cfg.stem_width, 3, padding=1, bias=False)
        rates = iter(drop_path_rates(cfg.drop_path_rate, 3 * n))
        stages: list[nn.Module] = []
        in_ch = cfg.stem_width
        for i, width in enumerate(widths):
            blocks = []
            for b in range(n):
                blocks.append(
                    PreActBlock(
                        in_ch,
                        width,
                        2 if i > 0 and b == 0 else 1,
                        num_branches=cfg.k,
                        bottleneck=cfg.bottleneck,
                        block_dropout=cfg.block_dropout,
                        drop_path_rate=next(rates),
                        drop_path_mode=cfg.drop_path_mode,
                    )
                )
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.neck = NormAct(in_ch)  # pre-activation nets end with BN-ReLU before pooling
        self.head = ClassifierHead(in_ch, cfg.num_classes, drop_rate=cfg.drop_rate)


@dataclass(frozen=True)
class Row:
    """A row of the CIFAR table: its printed numbers and our exact parameter count."""

    config: MultiResNetConfig
    params: int
    paper_params_m: float  # as printed
    paper_error: float  # CIFAR-10 test error, %
    paper_params_tol_m: float | None = None  # where the printed count cannot be reproduced
    notes: str = (
        "Built as the authors' models/multi-resnet.lua (masabdi/multi-resnet); its README table "
        "prints the parameter count."
    )


_WIDE = MultiResNetConfig(bottleneck=False, widths=(16, 32, 64), widen_factor=10)
# The CIFAR table (authors' README rows of the paper's CIFAR comparison).
CONFIGS = {
    "multiresnet200_k5_cifar": Row(MultiResNetConfig(depth=200, k=5), params=10_187_354,
                                   paper_params_m=10.2, paper_error=4.35),
    "multiresnet398_k5_cifar": Row(MultiResNetConfig(depth=398, k=5), params=20_388_314,
                                   paper_params_m=20.4, paper_error=3.92),
    "multiresnet26_k2_w10_cifar": Row(
        replace(_WIDE, depth=26, k=2), params=72_690_714, paper_params_m=72.0, paper_error=3.96,
        paper_params_tol_m=0.7, notes='The table prints "72M": 72.7M truncated to millions.'),
    "multiresnet26_k4_w10_cifar": Row(
        replace(_WIDE, depth=26, k=4), params=145_113_754, paper_params_m=154.0,
        paper_error=3.73, paper_params_tol_m=9.0,
        notes='The table prints "154M"; the described network has 145.1M (twice the functions '
        "of the k=2 row); we read 154 as 145 with swapped digits. The authors' repository "
        "(masabdi/multi-resnet) has no code for the wide rows to settle it."),
}  # fmt: skip

for _name, _row in CONFIGS.items():
    register_model(
        _name,
        MultiResNet,
        _row.config,
        info=ModelInfo(
            family="multiresnet",
            paper=PAPER,
            table="CIFAR results table (authors' README rows of the paper's comparison)",
            dataset="cifar",
            input_size=32,
            num_classes=10,
            params=_row.params,
            paper_params_m=_row.paper_params_m,
            paper_accuracy=round(100 - _row.paper_error, 2),
            paper_params_tol_m=_row.paper_params_tol_m,
            notes=_row.notes,
        ),
        tiny=Tiny(
            overrides={"depth": 11, "k": 2, "widths": (8, 8, 16)}
            if _row.config.bottleneck
            else {"depth": 8, "k": 2, "widen_factor": 1, "widths": (4, 8, 8)},
            input_size=8,
        ),
    )
