"""PolyNet: stages of PolyInception modules.

Zhang, Li, Loy & Lin, "PolyNet: A Pursuit of Structural Diversity in Very Deep Networks",
CVPR 2017, arXiv 1611.05725. The modules (poly-2/3, mpoly-2/3, 2-way/3-way of Figure 4) are in
``convzoo.models.polynet_blocks``.

``polynet`` is the Very Deep PolyNet of Section 6: the Inception-v4 stem (384 channels), stage A
of 10 2-way Inception-ResNet-A modules (384 ch, 35x35 at 299 px), Reduction-A (-> 1152), stage B
of 10 x (poly-3, 2-way) Inception-ResNet-B modules, Reduction-B (-> 2048), stage C of 5 x
(poly-3, 2-way) Inception-ResNet-C modules, global average pooling, dropout 0.2, linear. Branch
widths are Inception-ResNet-v2's. The facts that Section 6 leaves open were read from the
released model (Cadene's pretrainedmodels port, 331 px input): the residual scale of module i of
the 40 decreases linearly from 1 to 0.7, and the poly-3 modules share the convs of F between
applications but keep a BatchNorm set and a final 1x1 projection per application. Our build
has exactly that model's 95,366,600 parameters, and with its weights mapped one to one computes
the same outputs: at most 2e-6 apart on features of magnitude ~2.5 (float32, random weights,
measured over three seeds at 75 and 107 px with 1 and 2 threads); ``tests/test_polynet.py`` checks
it against ``pretrainedmodels`` 0.7.4 (a test dependency) to 1e-5. The paper prints no parameter
count; its single-crop validation result is 18.71% top-1 error (the Very Deep PolyNet row of its
results; also the authors' release README).

``polynet_cifar`` (ours; the paper has no CIFAR model): the same modules at CIFAR scale, a 3x3
stem of 64 channels, stage A (poly-2, 2-way) at 64 ch, Reduction-A -> 256, stage B (poly-3,
mpoly-2, 2-way) at 256 ch, Reduction-B -> 480, stage C (poly-3, 2-way) at 480 ch; branch widths
are Inception-ResNet-v2's divided by 4 to 8, 1,302,762 parameters. Its poly modules share F as the
released Very Deep PolyNet does: the branch convs are shared, each application has its own
BatchNorm set and 1x1 projection. Until 2026-12-03 they shared F completely, as the paper words it
(a poly-2 module has the parameters of one F; 1,137,146 parameters), and that build cannot be
evaluated: one BatchNorm normalizes x, F(x) and F(F(x)), whose statistics differ, so its running
averages fit none of them. Measured on a 3-epoch CIFAR-10 checkpoint of that build (seed 0 of
``benchmarks/cifar_table.py``, 68.3% train accuracy): 25.98% on the 5k held-out split in eval
mode, 62.46% with batch statistics, 62.1-63.2% with the same weights given per-application
running statistics (re-estimated on 40 training batches, two draws) against 24.9-25.3% for shared
ones re-estimated the same way (``benchmarks/bn_statistics.py``, BENCHMARKS.md section 5).
``share_norm=True`` still builds the paper's literal form, for training-mode use.

Deviations: ``drop_path_rate`` (off by default) drops PolyInception paths per mini-batch with
the linear schedule of ``drop_path_rates``, our stand-in for the paper's stochastic paths whose
exact schedule Section 6 does not give. The paper's "initialization by insertion" is a training
procedure and not modelled here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from torch import nn

from convzoo.layers.conv import ConvNormAct
from convzoo.layers.drop import drop_path_rates
from convzoo.layers.head import ClassifierHead
from convzoo.models.base import ZooModel
from convzoo.models.polynet_blocks import (
    Branches,
    Conv,
    InceptionReduction,
    InceptionV4Stem,
    PolyInception,
    PolyKind,
)
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper(
    "PolyNet: A Pursuit of Structural Diversity in Very Deep Networks",
    "1611.05725",
    "Zhang, Li, Loy, Lin",
    2017,
)


class PolyModule(NamedTuple):
    """One PolyInception module of a stage: ``kind`` (poly, mpoly, way) and ``order`` (2 or 3),
    e.g. ``PolyModule("poly", 3)``; a plain tuple ``(kind, order)`` is read the same way."""

    kind: PolyKind
    order: int


# Inception-ResNet-v2 residual functions (Szegedy et al. 2016, Figures 16, 17, 19): A at 384
# channels, B at 1152, C at 2048; Reduction-A (k, l, m, n) = (256, 256, 384, 384) and
# Reduction-B of Figure 18. One line per branch, in the released model's order (it fixes the
# channel order of the concatenation); Conv(kernel, out_channels[, stride]).
BLOCK_A: Branches = (
    (Conv(1, 32), Conv(3, 48), Conv(3, 64)),
    (Conv(1, 32), Conv(3, 32)),
    (Conv(1, 32),),
)
BLOCK_B: Branches = (
    (Conv(1, 128), Conv((1, 7), 160), Conv((7, 1), 192)),
    (Conv(1, 192),),
)
BLOCK_C: Branches = (
    (Conv(1, 192), Conv((1, 3), 224), Conv((3, 1), 256)),
    (Conv(1, 192),),
)
REDUCTION_A: Branches = (
    (Conv(1, 256), Conv(3, 256), Conv(3, 384, stride=2)),
    (Conv(3, 384, stride=2),),
)
REDUCTION_B: Branches = (
    (Conv(1, 256), Conv(3, 256), Conv(3, 256, stride=2)),
    (Conv(1, 256), Conv(3, 256, stride=2)),
    (Conv(1, 256), Conv(3, 384, stride=2)),
)


@dataclass(frozen=True)
class PolyNetConfig:
    stem_width: int | None = None  # None: Inception-v4 stem (384 ch); else one 3x3 conv
    block_a: Branches = BLOCK_A
    block_b: Branches = BLOCK_B
    block_c: Branches = BLOCK_C
    reduction_a: Branches = REDUCTION_A
    reduction_b: Branches = REDUCTION_B
    stage_a: tuple[PolyModule, ...] = (PolyModule("way", 2),) * 10
    stage_b: tuple[PolyModule, ...] = (PolyModule("poly", 3), PolyModule("way", 2)) * 10
    stage_c: tuple[PolyModule, ...] = (PolyModule("poly", 3), PolyModule("way", 2)) * 5
    residual_scale: tuple[float, float] = (1.0, 0.7)  # first and last module, linear between
    # poly modules: one BatchNorm set for all applications of F (its running statistics then mix
    # the applications' and eval mode is wrong: see the module doc)
    share_norm: bool = False
    share_projection: bool = False  # poly modules: one final 1x1 projection for all
    drop_rate: float = 0.2  # before the classifier
    drop_path_rate: float = 0.0
    num_classes: int = 1000
    in_channels: int = 3


def _min_input_size(stem_size: Callable[[int], int]) -> int:
    """Smallest input that leaves a pixel after the stem and the two 3x3/2 "valid" reductions."""

    def output_size(size: int) -> int:
        size = stem_size(size)
        for _ in range(2):
            size = (size - 3) // 2 + 1
        return size

    return next(s for s in range(1, 4096) if output_size(s) >= 1)


class PolyNet(ZooModel):
    def __init__(self, cfg: PolyNetConfig) -> None:
        if cfg.stem_width is None:
            stem: nn.Module = InceptionV4Stem(cfg.in_channels)
            channels, stem_size = InceptionV4Stem.out_channels, InceptionV4Stem.output_size
        else:
            stem = ConvNormAct(cfg.in_channels, cfg.stem_width, 3)
            channels = cfg.stem_width

            def stem_size(size: int) -> int:
                return size  # one 3x3 "same" conv

        specs = [*cfg.stage_a, *cfg.stage_b, *cfg.stage_c]
        n = len(specs)
        first, last = cfg.residual_scale
        scales = iter([first + (last - first) * i / max(n - 1, 1) for i in range(n)])
        drops = iter(drop_path_rates(cfg.drop_path_rate, n))

        def stage(mods: tuple[PolyModule, ...], channels: int, branches: Branches) -> nn.Sequential:
            return nn.Sequential(
                *(
                    PolyInception(
                        channels,
                        branches,
                        kind,
                        order,
                        next(scales),
                        share_norm=cfg.share_norm,
                        share_projection=cfg.share_projection,
                        drop_path=next(drops),
                    )
                    for kind, order in mods
                )
            )

        # One stage per resolution: stages B and C open with the reduction that halves the size.
        stages: list[nn.Module] = [stage(cfg.stage_a, channels, cfg.block_a)]
        for mods, reduction_branches, branches in (
            (cfg.stage_b, cfg.reduction_a, cfg.block_b),
            (cfg.stage_c, cfg.reduction_b, cfg.block_c),
        ):
            reduction = InceptionReduction(channels, reduction_branches)
            channels = reduction.out_channels
            blocks = stage(mods, channels, branches)
            stages.append(nn.Sequential(OrderedDict(reduction=reduction, blocks=blocks)))

        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=channels,
            min_input_size=_min_input_size(stem_size),
        )
        self.stem = stem
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(channels, cfg.num_classes, drop_rate=cfg.drop_rate)


# The tiny test builds of both models: every branch shape of the full ones at width 4-8.
_TINY_BLOCK_A: Branches = ((Conv(1, 4),), (Conv(1, 4), Conv(3, 4)))
_TINY_BLOCK_B: Branches = ((Conv(1, 4),), (Conv(1, 4), Conv((1, 7), 4), Conv((7, 1), 4)))
_TINY_BLOCK_C: Branches = ((Conv(1, 4),), (Conv(1, 4), Conv((1, 3), 4), Conv((3, 1), 4)))
_TINY_REDUCTION: Branches = ((Conv(3, 8, stride=2),),)

register_model(
    "polynet",
    PolyNet,
    PolyNetConfig(),
    info=ModelInfo(
        family="polynet",
        paper=PAPER,
        table="Section 6 (Very Deep PolyNet, 10-20-10 mix); the released model",
        dataset="imagenet",
        input_size=331,
        num_classes=1000,
        params=95_366_600,
        paper_accuracy=81.29,
        notes="Accuracy: single-crop top-1 (18.71% error). Parameter count equals the released "
        "model's (the paper prints none); outputs match Cadene's pretrainedmodels port with the "
        "same weights to 2e-6 (checked in the test suite to 1e-5).",
    ),
    tiny=Tiny(
        overrides={
            "block_a": _TINY_BLOCK_A,
            "block_b": _TINY_BLOCK_B,
            "block_c": _TINY_BLOCK_C,
            "reduction_a": _TINY_REDUCTION,
            "reduction_b": _TINY_REDUCTION,
            "stage_a": (PolyModule("way", 2),),
            "stage_b": (PolyModule("poly", 3),),
            "stage_c": (PolyModule("poly", 3), PolyModule("way", 2)),
        },
        # 139 px: the smallest input whose valid-padded reductions stay within 1.5x of the nominal
        # strides (75 px, the smallest accepted, leaves stage B 3 px wide, 1/25 of the input).
        input_size=139,
    ),
)

register_model(
    "polynet_cifar",
    PolyNet,
    PolyNetConfig(
        stem_width=64,
        block_a=(
            (Conv(1, 16),),
            (Conv(1, 16), Conv(3, 16)),
            (Conv(1, 16), Conv(3, 24), Conv(3, 32)),
        ),
        block_b=(
            (Conv(1, 48),),
            (Conv(1, 32), Conv((1, 7), 40), Conv((7, 1), 48)),
        ),
        block_c=(
            (Conv(1, 48),),
            (Conv(1, 48), Conv((1, 3), 56), Conv((3, 1), 64)),
        ),
        reduction_a=(
            (Conv(1, 64), Conv(3, 64), Conv(3, 96, stride=2)),
            (Conv(3, 96, stride=2),),
        ),
        reduction_b=(
            (Conv(1, 64), Conv(3, 64), Conv(3, 64, stride=2)),
            (Conv(1, 64), Conv(3, 64, stride=2)),
            (Conv(1, 64), Conv(3, 96, stride=2)),
        ),
        stage_a=(PolyModule("poly", 2), PolyModule("way", 2)),
        stage_b=(PolyModule("poly", 3), PolyModule("mpoly", 2), PolyModule("way", 2)),
        stage_c=(PolyModule("poly", 3), PolyModule("way", 2)),
        # The released model's sharing (convs of F shared, a BatchNorm set and a projection per
        # application), not one F's parameters: see the module doc for why.
        drop_rate=0.0,
        num_classes=10,
    ),
    info=ModelInfo(
        family="polynet",
        paper=PAPER,
        table="none (our CIFAR network of the paper's modules)",
        dataset="cifar",
        input_size=32,
        num_classes=10,
        params=1_302_762,
        notes="Not in the paper: a small network of the same PolyInception modules. Poly modules share "
        "F's convs with a BatchNorm set and projection per application, as the released model "
        "does: a fully shared F mixes the applications' BatchNorm statistics (eval 26% where "
        "batch statistics give 62%, measured).",
    ),
    tiny=Tiny(
        overrides={
            "stem_width": 8,
            "block_a": _TINY_BLOCK_A,
            "block_b": _TINY_BLOCK_B,
            "block_c": _TINY_BLOCK_C,
            "reduction_a": _TINY_REDUCTION,
            "reduction_b": _TINY_REDUCTION,
        },
        input_size=16,
    ),
)
