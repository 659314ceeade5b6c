"""FBNet-A/B/C and the block-spec format of FBNet's search space.

Wu et al., "FBNet: Hardware-Aware Efficient ConvNet Design via Differentiable Neural Architecture
Search", CVPR 2019, arXiv 1812.03443.

Table 1 (macro-architecture): a 3x3 stride-2 conv to 16, 22 searched layers in 7 stages of
(channels, layers, stride) = (16,1,1) (24,4,2) (32,4,2) (64,4,2) (112,4,1) (184,4,2) (352,1,1),
a 1x1 conv to 1984, pooling and the classifier. Table 2 (the candidates of each searched layer):
the Figure 3 block -- 1x1 conv (expansion e) - ReLU - kxk depthwise - ReLU - 1x1 linear conv,
identity shortcut when stride is 1 and widths agree -- with (k, e) in {3, 5} x {1, 3, 6}, the two
e = 1 blocks with group-2 pointwise convs and a channel shuffle ("g2"), and "skip".
Reference numbers: Table 3 (FBNet-A 4.3M / 249M / 73.0%, B 4.5M / 295M / 74.1%,
C 5.5M / 375M / 74.9%).

The spec format (what the NAS search emits and ``create_model`` consumes): an architecture is a
tuple of stages, a stage a tuple of ``BlockSpec`` (frozen: out_channels, stride, kernel_size,
expand_ratio, groups, skip). ``spec_to_json`` / ``spec_from_json`` round-trip it; build any spec
with ``create_model("fbnet_c", spec=spec_from_json(text))``. ``macro_spec`` turns 22 candidate
names of Table 2 into a spec on Table 1's macro-architecture; FBNet-A/B/C below are written so.

The searched architectures (Figure 4) are those of the authors' release (mobile-vision
``fbnet_modeldef_cls_fbnet.py``). Deviations and choices:
* Expansion-1 blocks keep their first 1x1 conv (Figure 3 draws it for every block; timm's
  ``fbnetc_100`` does the same; mobile-vision drops it when it would not change the width).
* "skip" is the identity; where the layer changes width or stride (never in A/B/C) it is a
  1x1 conv-BN-ReLU, as in the release.
* FBNet-A's last conv is 1504 wide, as released; Table 1 says 1984 for all three, but with 1504
  FBNet-A has Table 3's 4.3M parameters and 249M MACs (ours 249.9M; with 1984: 4.97M, 259M).
* FBNet-B and C built from the released block lists do not reproduce Table 3 (B: 4.86M / 306M
  against 4.5M / 295M; C: 5.57M / 385M against 5.5M / 375M); timm's ``fbnetc_100`` has the same
  count as ours and identical outputs (see tests). We record wider tolerances in the notes.
* No convolution biases (the release adds them); BatchNorm with PyTorch defaults.
* ``drop_path_rate`` (default 0) adds stochastic depth via the shared schedule; not in the paper.
* A spec's stages are the rows of ``stages``, grouped into one stage per resolution (Table 1's
  stages 4-5 and 6-7 share one): ``stages[s][r][b]``. The 1x1 conv before pooling is the ``neck``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

from torch import nn

from convzoo.layers.conv import ActLayer, ConvNormAct, NormLayer
from convzoo.layers.drop import DropPathMode
from convzoo.layers.head import ClassifierHead
from convzoo.layers.mbconv import InvertedResidual, PlannedBlock, resolution_stages
from convzoo.layers.shuffle import ChannelShuffle
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper(
    "FBNet: Hardware-Aware Efficient ConvNet Design via Differentiable Neural Architecture Search",
    "1812.03443",
    "Wu, Dai, Zhang, Wang, Sun, Wu, Tian, Vajda, Jia, Keutzer",
    2019,
)

# Table 2: the candidate blocks of every searched layer.
CANDIDATES: tuple[str, ...] = (
    "k3_e1",
    "k3_e1_g2",
    "k3_e3",
    "k3_e6",
    "k5_e1",
    "k5_e1_g2",
    "k5_e3",
    "k5_e6",
    "skip",
)


@dataclass(frozen=True)
class BlockSpec:
    """One searched layer: an inverted-residual block, or ``skip``."""

    out_channels: int
    stride: int = 1
    kernel_size: int = 3
    expand_ratio: int = 1
    groups: int = 1  # groups of both 1x1 convs (2: Table 2's "g2" blocks, with a shuffle)
    skip: bool = False

    def __post_init__(self) -> None:
        if self.out_channels < 1 or self.stride not in (1, 2):
            raise ValueError(f"bad out_channels/stride in {self}")
        if self.kernel_size not in (3, 5) or self.expand_ratio not in (1, 3, 6):
            raise ValueError(f"kernel_size must be 3|5 and expand_ratio 1|3|6, got {self}")
        if self.groups not in (1, 2):
            raise ValueError(f"groups must be 1 or 2, got {self}")

    @property
    def candidate(self) -> str:
        """The Table 2 name of this block ("k5_e6", "k3_e1_g2", "skip")."""
        if self.skip:
            return "skip"
        return f"k{self.kernel_size}_e{self.expand_ratio}" + ("_g2" if self.groups == 2 else "")

    @classmethod
    def from_candidate(cls, candidate: str, out_channels: int, stride: int = 1) -> BlockSpec:
        if candidate not in CANDIDATES:
            raise ValueError(f"unknown candidate {candidate!r}; Table 2 has {CANDIDATES}")
        if candidate == "skip":
            return cls(out_channels=out_channels, stride=stride, skip=True)
        k, e, *g = candidate.split("_")
        return cls(
            out_channels=out_channels,
            stride=stride,
            kernel_size=int(k[1:]),
            expand_ratio=int(e[1:]),
            groups=2 if g else 1,
        )


ArchSpec = tuple[tuple[BlockSpec, ...], ...]


@dataclass(frozen=True)
class MacroStage:
    """A row of Table 1: output channels, number of searched layers, stride of the first."""

    out_channels: int
    layers: int
    stride: int


# Table 1: the seven searched stages.
MACRO: tuple[MacroStage, ...] = (
    MacroStage(out_channels=16, layers=1, stride=1),
    MacroStage(out_channels=24, layers=4, stride=2),
    MacroStage(out_channels=32, layers=4, stride=2),
    MacroStage(out_channels=64, layers=4, stride=2),
    MacroStage(out_channels=112, layers=4, stride=1),
    MacroStage(out_channels=184, layers=4, stride=2),
    MacroStage(out_channels=352, layers=1, stride=1),
)


def macro_spec(
    candidates: Sequence[Sequence[str]], macro: Sequence[MacroStage] = MACRO
) -> ArchSpec:
    """A spec from one candidate name per layer, stage by stage, on ``macro``'s widths/strides."""
    if [len(s) for s in candidates] != [m.layers for m in macro]:
        raise ValueError(
            f"need {[m.layers for m in macro]} candidates per stage, got {[len(s) for s in candidates]}"
        )
    return tuple(
        tuple(
            BlockSpec.from_candidate(
                name, out_channels=m.out_channels, stride=m.stride if i == 0 else 1
            )
            for i, name in enumerate(stage)
        )
        for stage, m in zip(candidates, macro)
    )


def spec_to_json(spec: ArchSpec, indent: int | None = None) -> str:
    return json.dumps({"stages": [[asdict(b) for b in stage] for stage in spec]}, indent=indent)


def spec_from_json(text: str) -> ArchSpec:
    """Inverse of ``spec_to_json``; unknown or invalid fields raise."""
    data = json.loads(text)
    if not isinstance(data, dict) or set(data) != {"stages"}:
        raise ValueError('an FBNet spec is a JSON object {"stages": [[block, ...], ...]}')
    return tuple(tuple(BlockSpec(**block) for block in stage) for stage in data["stages"])


# Figure 4, as released: one Table 2 candidate per searched layer, stage by stage.
FBNET_A = macro_spec(
    (
        ("skip",),
        ("k3_e3", "k3_e1", "skip", "skip"),
        ("k5_e6", "k3_e3", "k5_e1", "k3_e3"),
        ("k5_e6", "k5_e3", "k5_e1_g2", "k5_e6"),
        ("k3_e6", "k5_e1_g2", "k5_e3", "k3_e1_g2"),
        ("k5_e6", "k5_e6", "k5_e3", "k5_e6"),
        ("k5_e6",),
    )
)
FBNET_B = macro_spec(
    (
        ("k3_e1",),
        ("k3_e6", "k5_e1", "k3_e1", "k3_e1"),
        ("k5_e6", "k5_e3", "k3_e6", "k5_e6"),
        ("k5_e6", "k5_e6", "skip", "k5_e3"),
        ("k5_e6", "k3_e1", "k5_e1", "k5_e3"),
        ("k5_e6", "k5_e1", "k5_e6", "k5_e6"),
        ("k3_e6",),
    )
)
FBNET_C = macro_spec(
    (
        ("k3_e1",),
        ("k3_e6", "skip", "k3_e1", "k3_e1"),
        ("k5_e6", "k5_e3", "k5_e6", "k3_e6"),
        ("k5_e6", "k5_e3", "k5_e6", "k5_e6"),
        ("k5_e6", "k5_e6", "k5_e6", "k5_e3"),
        ("k5_e6", "k5_e6", "k5_e6", "k5_e6"),
        ("k3_e6",),
    )
)


@dataclass(frozen=True)
class FBNetConfig:
    spec: ArchSpec | str = FBNET_C  # or the path of a JSON spec (what the search writes)
    stem_channels: int = 16
    stem_stride: int = 2  # 1 for CIFAR-sized searched networks
    head_channels: int = 1984
    act_layer: ActLayer = nn.ReLU
    norm_layer: NormLayer = nn.BatchNorm2d
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    drop_path_mode: DropPathMode = "sample"
    num_classes: int = 1000
    in_channels: int = 3


def build_block(
    spec: BlockSpec,
    in_channels: int,
    *,
    act_layer: ActLayer = nn.ReLU,
    norm_layer: NormLayer = nn.BatchNorm2d,
    drop_path_rate: float = 0.0,
    drop_path_mode: DropPathMode = "sample",
) -> nn.Module:
    """The module of one searched layer (also used by the supernet of the search)."""
    if spec.skip:
        if in_channels == spec.out_channels and spec.stride == 1:
            return nn.Identity()
        return ConvNormAct(
            in_channels,
            spec.out_channels,
            1,
            spec.stride,
            norm_layer=norm_layer,
            act_layer=act_layer,
        )
    return InvertedResidual(
        in_channels,
        spec.out_channels,
        mid_channels=in_channels * spec.expand_ratio,
        kernel_size=spec.kernel_size,
        stride=spec.stride,
        pw_groups=spec.groups,
        force_expand=True,
        shuffle_layer=ChannelShuffle,
        norm_layer=norm_layer,
        act_layer=act_layer,
        drop_path_rate=drop_path_rate,
        drop_path_mode=drop_path_mode,
    )


def load_spec(spec: ArchSpec | str | os.PathLike) -> ArchSpec:
    """A spec as given, or read from a JSON file written by ``spec_to_json``."""
    if not isinstance(spec, (str, os.PathLike)):
        return spec
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"FBNet spec file {path} does not exist")
    try:
        return spec_from_json(path.read_text())
    except (ValueError, TypeError) as err:
        raise ValueError(f"FBNet spec file {path} is not a valid spec: {err}") from None


class FBNet(ZooModel):
    def __init__(self, cfg: FBNetConfig) -> None:
        cfg = replace(cfg, spec=load_spec(cfg.spec))
        blocks = [b for stage in cfg.spec for b in stage]
        if not blocks:
            raise ValueError("an FBNet spec needs at least one block")
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=cfg.head_channels,
            min_input_size=cfg.stem_stride * 2 ** sum(b.stride == 2 for b in blocks),
        )
        conv = partial(ConvNormAct, norm_layer=cfg.norm_layer, act_layer=cfg.act_layer)
        self.stem = conv(cfg.in_channels, cfg.stem_channels, 3, cfg.stem_stride)
        rows = [
            [
                PlannedBlock(b.out_channels, b.stride, partial(_build, spec=b, cfg=cfg))
                for b in stage
            ]
            for stage in cfg.spec
        ]
        self.stages = resolution_stages(rows, cfg.stem_channels, drop_path_rate=cfg.drop_path_rate)
        self.neck = conv(blocks[-1].out_channels, cfg.head_channels, 1)
        self.head = ClassifierHead(cfg.head_channels, cfg.num_classes, drop_rate=cfg.drop_rate)


def _build(
    in_channels: int, stride: int, drop_path_rate: float, *, spec: BlockSpec, cfg: FBNetConfig
) -> nn.Module:
    """``build_block`` in the builder's signature; ``spec`` carries the stride already."""
    return build_block(
        spec,
        in_channels,
        act_layer=cfg.act_layer,
        norm_layer=cfg.norm_layer,
        drop_path_rate=drop_path_rate,
        drop_path_mode=cfg.drop_path_mode,
    )


_TINY_SPEC = (
    (BlockSpec(out_channels=8, skip=True), BlockSpec(out_channels=8, kernel_size=5)),
    (
        BlockSpec(out_channels=16, stride=2, expand_ratio=3),
        BlockSpec(out_channels=16, groups=2),
        BlockSpec(out_channels=24, skip=True),
    ),
)


@dataclass(frozen=True)
class Table3Row:
    """A row of Table 3 beside our build: its last-conv width, exact count and tolerances."""

    spec: ArchSpec
    params_m: float
    macs_g: float
    top1: float
    head_channels: int
    params: int
    params_tol_m: float | None = None
    macs_tol_g: float | None = None


# Table 3 (params M, MACs G, top-1 %); the tolerances are explained in the module docstring.
TABLE3: dict[str, Table3Row] = {
    "fbnet_a": Table3Row(
        spec=FBNET_A,
        params_m=4.3,
        macs_g=0.249,
        top1=73.0,
        head_channels=1504,
        params=4_321_464,
        macs_tol_g=0.001,
    ),
    "fbnet_b": Table3Row(
        spec=FBNET_B,
        params_m=4.5,
        macs_g=0.295,
        top1=74.1,
        head_channels=1984,
        params=4_863_288,
        params_tol_m=0.4,
        macs_tol_g=0.012,
    ),
    "fbnet_c": Table3Row(
        spec=FBNET_C,
        params_m=5.5,
        macs_g=0.375,
        top1=74.9,
        head_channels=1984,
        params=5_572_200,
        params_tol_m=0.08,
        macs_tol_g=0.011,
    ),
}
for _name, _row in TABLE3.items():
    register_model(
        _name,
        FBNet,
        FBNetConfig(spec=_row.spec, head_channels=_row.head_channels),
        info=ModelInfo(
            family="fbnet",
            paper=PAPER,
            table="Table 1 (macro-architecture), Figure 4 (searched blocks), Table 3",
            dataset="imagenet",
            input_size=224,
            num_classes=1000,
            params=_row.params,
            paper_params_m=_row.params_m,
            paper_params_tol_m=_row.params_tol_m,
            paper_macs_g=_row.macs_g,
            paper_macs_tol_g=_row.macs_tol_g,
            paper_accuracy=_row.top1,
            notes="Last conv 1504 wide as released (Table 1: 1984); then Table 3's 4.3M and 249M "
            "hold (ours 4.32M, 249.9M MACs)."
            if _row.head_channels == 1504
            else "Released architecture; Table 3's numbers are not reproducible from it "
            "(see the module docstring).",
        ),
        tiny=Tiny(
            overrides={"spec": _TINY_SPEC, "stem_channels": 8, "head_channels": 32}, input_size=16
        ),
    )
