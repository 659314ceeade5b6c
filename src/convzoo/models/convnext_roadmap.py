"""ConvNeXt's modernization roadmap: every step from ResNet-50 to ConvNeXt-T as a model.

Liu, Mao, Wu, Feichtenhofer, Darrell & Xie, "A ConvNet for the 2020s", CVPR 2022, arXiv 2201.03545.
Steps: section 2 and Figure 2 (ImageNet-1K top-1 per step, one decimal, each step trained with
the paper's modernized recipe); GFLOPs (the paper's "FLOPs" are multiply-adds) per step from the
appendix table of detailed roadmap results (its last row is Table 1's ConvNeXt-T). The authors
released only the final model (facebookresearch/ConvNeXt ``models/convnext.py``), so the
intermediate steps are built from the paper's text:

* ``00_resnet50``: ResNet-50 as in torchvision (stride on the 3x3 conv, 4.09 GMACs), the
  paper's starting point with its enhanced recipe (78.8%; 76.1% with the original recipe).
* ``01_stage_ratio``: blocks per stage (3, 4, 6, 3) -> (3, 3, 9, 3).
* ``02_patchify``: stem 7x7/2 conv + max pool -> 4x4/4 conv followed by the norm (no activation).
* ``03_depthwise``: the bottleneck's 3x3 conv becomes depthwise (groups = channels).
* ``04_width96``: stage widths 64 -> 96 (stem and every stage scaled by 1.5).
* ``05_inverted_bottleneck``: 1x1 expand 4x -> depthwise 3x3 (stride here) -> 1x1 project; the
  residual stream is 96/192/384/768 wide; projection shortcuts where the shape changes.
* ``06_move_up_dwconv``: the depthwise conv first (on the narrow stream), then the two 1x1 convs.
* ``07`` .. ``10``: depthwise kernel 5, 7, 9, 11; the roadmap continues with 7.
* ``11_gelu``: ReLU -> GELU.  ``12_fewer_activations``: one GELU per block, between the 1x1 convs
  (none after the residual sum).  ``13_fewer_norms``: one norm per block, after the depthwise conv.
* ``14_bn_to_ln``: every BatchNorm -> LayerNorm over channels.
* ``15_convnext_t``: separate downsampling layers (LayerNorm + 2x2/2 conv between stages, LN after
  the stem and the pooling): exactly ``convnext_tiny`` (this step is built by
  ``models/convnext.py``; tests load ``convnext_tiny``'s weights and compare outputs).

Deviations and choices (the paper does not specify these for the intermediate steps):
* Steps 00-14 have no layer scale; the last step has ConvNeXt-T's (1e-6).
* Stochastic depth 0.1 on every step (the paper's ConvNeXt-T recipe), linear schedule.
* Convs without a following norm have a bias; He initialization as ``models/resnet.py``.
* torch's flop counter counts convs and matmuls only; the paper's BN -> LN step (4.15 -> 4.46 G)
  changes neither and is flat here (the difference is unexplained; BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import Tensor, nn

from convzoo.layers.conv import ActLayer, ConvNormAct, NormLayer
from convzoo.layers.drop import DROP_PATH_MODES, DropPath, DropPathMode, drop_path_rates
from convzoo.layers.head import ClassifierHead
from convzoo.layers.norm import LayerNorm2d
from convzoo.models.base import ZooModel
from convzoo.models.convnext import CONFIGS as CONVNEXT_CONFIGS
from convzoo.models.convnext import PAPER, ConvNeXt
from convzoo.models.resnet import init_weights
from convzoo.registry import ModelInfo, Tiny, get_entry, register_model

STEMS = ("resnet", "patchify")
BLOCKS = ("bottleneck", "inverted", "dw_first")


@dataclass(frozen=True)
class RoadmapConfig:
    depths: tuple[int, ...] = (3, 4, 6, 3)
    # "bottleneck": the 3x3 conv's width (the block outputs ``expansion`` times this);
    # "inverted" / "dw_first": the residual stream's width (the hidden layer is ``expansion`` x).
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem: str = (
        "resnet"  # "resnet": 7x7/2 conv-norm-act + 3x3/2 max pool; "patchify": 4x4/4 conv-norm
    )
    block: str = "bottleneck"  # "bottleneck" | "inverted" | "dw_first" (depthwise conv moved up)
    expansion: int = 4
    depthwise: bool = False  # the kxk conv has one group per channel
    kernel_size: int = 3
    act_layer: ActLayer = nn.ReLU
    fewer_activations: bool = False  # one activation, after the second conv (none after the sum)
    fewer_norms: bool = False  # one norm, after the first conv
    norm_layer: NormLayer = nn.BatchNorm2d
    drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    drop_path_mode: DropPathMode = "sample"
    num_classes: int = 1000
    in_channels: int = 3

    def __post_init__(self) -> None:
        for value, allowed, field in (
            (self.stem, STEMS, "stem"),
            (self.block, BLOCKS, "block"),
            (self.drop_path_mode, DROP_PATH_MODES, "drop_path_mode"),
        ):
            if value not in allowed:
                raise ValueError(f"{field} must be one of {allowed}, got {value!r}")
        if len(self.depths) != len(self.widths) or min(self.depths, default=0) < 1:
            raise ValueError(f"depths {self.depths} and widths {self.widths} must match, >= 1")
        if self.block != "bottleneck" and not self.depthwise:
            raise ValueError(f"block {self.block!r} needs depthwise=True (the roadmap's order)")


class RoadmapBlock(nn.Module):
    """Three convs in the configured order; ``act(shortcut(x) + drop_path(convs(x)))``."""

    def __init__(
        self, in_channels: int, width: int, stride: int, cfg: RoadmapConfig, drop_path: float
    ) -> None:
        super().__init__()
        k, e = cfg.kernel_size, cfg.expansion
        # (in, out, kernel, stride, depthwise?) of the three convs
        if cfg.block == "bottleneck":
            out = width * e
            convs = [
                (in_channels, width, 1, 1, False),
                (width, width, k, stride, cfg.depthwise),
                (width, out, 1, 1, False),
            ]
        elif cfg.block == "inverted":
            out, hidden = width, width * e
            convs = [
                (in_channels, hidden, 1, 1, False),
                (hidden, hidden, k, stride, True),
                (hidden, out, 1, 1, False),
            ]
        else:
            out, hidden = width, width * e
            convs = [
                (in_channels, in_channels, k, stride, True),
                (in_channels, hidden, 1, 1, False),
                (hidden, out, 1, 1, False),
            ]
        layers = []
        for i, (c_in, c_out, kernel, s, dw) in enumerate(convs):
            norm = cfg.norm_layer if (i == 0 or not cfg.fewer_norms) else None
            act = cfg.act_layer if (i == 1 or (i == 0 and not cfg.fewer_activations)) else None
            layers.append(
                ConvNormAct(
                    c_in, c_out, kernel, s, groups=c_in if dw else 1, norm_layer=norm, act_layer=act
                )
            )
        self.convs = nn.Sequential(*layers)
        self.shortcut: nn.Module = (
            nn.Identity()
            if in_channels == out and stride == 1
            else ConvNormAct(in_channels, out, 1, stride, norm_layer=cfg.norm_layer, act_layer=None)
        )
        self.act = nn.Identity() if cfg.fewer_activations else cfg.act_layer()
        self.drop_path = DropPath(drop_path, cfg.drop_path_mode)
        self.out_channels = out

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.drop_path.add_branch(self.shortcut(x), lambda: self.convs(x)))


class RoadmapNet(ZooModel):
    """Steps 00-14 of the roadmap: stem -> four stages of ``RoadmapBlock`` -> pool + linear."""

    def __init__(self, cfg: RoadmapConfig) -> None:
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=cfg.widths[-1] * (cfg.expansion if cfg.block == "bottleneck" else 1),
            min_input_size=4 * 2 ** (len(cfg.depths) - 1),
        )
        stem_width = cfg.widths[0]
        if cfg.stem == "resnet":
            self.stem: nn.Module = nn.Sequential(
                ConvNormAct(
                    cfg.in_channels,
                    stem_width,
                    7,
                    2,
                    norm_layer=cfg.norm_layer,
                    act_layer=cfg.act_layer,
                ),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        else:
            self.stem = ConvNormAct(
                cfg.in_channels,
                stem_width,
                4,
                4,
                padding=0,
                norm_layer=cfg.norm_layer,
                act_layer=None,
            )
        rates = iter(drop_path_rates(cfg.drop_path_rate, sum(cfg.depths)))
        in_ch, stages = stem_width, []
        for i, (depth, width) in enumerate(zip(cfg.depths, cfg.widths, strict=True)):
            blocks = []
            for j in range(depth):
                block = RoadmapBlock(in_ch, width, 2 if i > 0 and j == 0 else 1, cfg, next(rates))
                blocks.append(block)
                in_ch = block.out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(in_ch, cfg.num_classes, drop_rate=cfg.drop_rate)
        init_weights(self)


@dataclass(frozen=True)
class RoadmapStep:
    """One bar of Figure 2: what changes from the previous step, and the paper's numbers."""

    slug: str
    label: str
    changes: dict[str, Any]
    paper_gflops: float  # multiply-adds at 224x224, appendix table
    paper_top1: float  # ImageNet-1K top-1 %, Figure 2
    params: int  # our exact parameter count
    macs_tol_g: float | None = None  # where our count cannot meet the paper's (see notes)
    note: str = ""


_LN_NOTE = (
    "torch's flop counter counts convs and matmuls; this step changes none, yet the paper's "
    "count rises (0.31 G at BN -> LN). Its normalizations touch 2.6M elements, far too few to "
    "explain that; see BENCHMARKS.md."
)
_T_NOTE = (
    "Exactly convnext_tiny. Ours 4.456 G against the paper's 4.49 G (Table 1: 4.5 G): the "
    "paper's counter includes something ours does not, as at BN -> LN."
)
# Cumulative: each step is the previous step's config with ``changes`` applied.
STEPS: tuple[RoadmapStep, ...] = (
    RoadmapStep(
        "resnet50",
        "ResNet-50",
        {},
        4.09,
        78.8,
        25_557_032,
        note="78.8% with the paper's modernized recipe; 76.1% with the original.",
    ),
    RoadmapStep("stage_ratio", "stage ratio", {"depths": (3, 3, 9, 3)}, 4.53, 79.4, 28_628_520),
    RoadmapStep("patchify", '"patchify" stem', {"stem": "patchify"}, 4.42, 79.5, 28_622_184),
    RoadmapStep("depthwise", "depthwise conv", {"depthwise": True}, 2.35, 78.3, 15_722_664),
    RoadmapStep(
        "width96", "width 64 -> 96", {"widths": (96, 192, 384, 768)}, 5.27, 80.5, 33_761_032
    ),
    RoadmapStep(
        "inverted_bottleneck", "inverted bottleneck", {"block": "inverted"}, 4.64, 80.6, 25_851_496
    ),
    RoadmapStep("move_up_dwconv", "move up d3x3", {"block": "dw_first"}, 4.07, 79.9, 25_625_512),
    RoadmapStep("kernel5", "kernel size 5", {"kernel_size": 5}, 4.10, 80.4, 25_720_744),
    RoadmapStep("kernel7", "kernel size 7", {"kernel_size": 7}, 4.15, 80.6, 25_863_592),
    RoadmapStep("kernel9", "kernel size 9", {"kernel_size": 9}, 4.21, 80.6, 26_054_056),
    RoadmapStep("kernel11", "kernel size 11", {"kernel_size": 11}, 4.29, 80.5, 26_292_136),
    RoadmapStep(
        "gelu", "ReLU -> GELU", {"kernel_size": 7, "act_layer": nn.GELU}, 4.15, 80.6, 25_863_592
    ),
    RoadmapStep(
        "fewer_activations",
        "fewer activations",
        {"fewer_activations": True},
        4.15,
        81.3,
        25_863_592,
    ),
    RoadmapStep("fewer_norms", "fewer norms", {"fewer_norms": True}, 4.15, 81.4, 25_830_472),
    RoadmapStep(
        "bn_to_ln",
        "BN -> LN",
        {"norm_layer": LayerNorm2d},
        4.46,
        81.5,
        25_830_472,
        macs_tol_g=0.35,
        note=_LN_NOTE,
    ),
    RoadmapStep(
        "convnext_t",
        "separate d.s. layers",
        {},
        4.49,
        82.0,
        28_589_128,
        macs_tol_g=0.04,
        note=_T_NOTE,
    ),
)


def step_names() -> list[str]:
    return [f"convnext_roadmap_{i:02d}_{s.slug}" for i, s in enumerate(STEPS)]


def _register() -> None:
    cfg = RoadmapConfig()
    last = len(STEPS) - 1
    for i, (name, step) in enumerate(zip(step_names(), STEPS, strict=True)):
        if i == last:
            builder: Any = ConvNeXt
            config: Any = CONVNEXT_CONFIGS["convnext_tiny"]
            tiny = get_entry("convnext_tiny").tiny
        else:
            cfg = replace(cfg, **step.changes)
            builder, config = RoadmapNet, cfg
            tiny = Tiny(overrides={"depths": (1, 1, 1, 1), "widths": (8, 8, 16, 16)}, input_size=32)
        register_model(
            name,
            builder,
            config,
            info=ModelInfo(
                family="convnext_roadmap",
                paper=PAPER,
                table="Section 2 / Figure 2 (top-1); appendix roadmap table (GFLOPs)",
                dataset="imagenet",
                input_size=224,
                num_classes=1000,
                params=step.params or None,
                paper_macs_g=step.paper_gflops,
                paper_macs_tol_g=step.macs_tol_g,
                paper_accuracy=step.paper_top1,
                notes=f"Roadmap step {i}: {step.label}. {step.note}".strip(),
            ),
            tiny=tiny,
        )


_register()

__all__ = ["STEPS", "RoadmapBlock", "RoadmapConfig", "RoadmapNet", "RoadmapStep", "step_names"]
