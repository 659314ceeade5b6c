"""ResNet, ResNet with stochastic depth, and ResNeXt.

* He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, arXiv 1512.03385.
  ImageNet configs: Table 1. CIFAR configs: section 4.2 (6n+2 layers, widths 16/32/64, option A
  identity shortcuts that zero-pad the new channels and subsample by taking every other pixel).
* Huang, Sun, Liu, Sedra & Weinberger, "Deep Networks with Stochastic Depth", ECCV 2016,
  arXiv 1603.09382. Any model here takes ``drop_path_rate`` (p_L of the linear-decay rule, see
  ``convzoo.layers.drop.drop_path_rates``) and ``drop_path_mode``: ``"batch"`` drops a residual
  branch for the whole mini-batch and then does not compute it (the paper's mechanism and speed-up),
  ``"sample"`` draws one decision per sample. The ``_sd`` recipes use p_L = 0.5 (section 4).
* Xie, Girshick, Dollár, Tu & He, "Aggregated Residual Transformations for Deep Neural Networks",
  CVPR 2017, arXiv 1611.05431. ImageNet configs: Table 1 (form (c): a grouped 3x3 conv with
  ``cardinality`` groups). CIFAR ResNeXt-29: section 5.3 (3x3 stem of 64 channels, three stages of
  three bottlenecks with outputs 256/512/1024; group width ``base_width`` doubles per stage).

Deviations (all deliberate, all switchable or harmless at test time):

* ImageNet bottlenecks put the stride on the 3x3 conv ("ResNet v1.5", as fb.resnet.torch, the
  ResNeXt paper and torchvision do; 4.1 GMACs for ResNet-50 as in ResNeXt's Table 1). He et al.
  put it on the first 1x1 conv (3.8 G in their Table 1): ``stride_in_1x1=True`` restores that.
* Stochastic depth scales a kept branch by 1/(1-p) in training instead of scaling by the survival
  probability at test time: the same function up to that constant, and eval needs no rescaling.
* Every residual branch's last BatchNorm starts with scale 0 (``zero_init_last``, timm's default,
  Goyal et al. arXiv 1706.02677 section 5.1), so each block starts as the identity: with He et al.'s
  scale 1 an untrained ResNet-1202 in eval mode overflows to NaN (ResNet-110: logits of 4e8).
  ``zero_init_last=False`` gives He et al.'s (and torchvision's) init.
* ResNeXt-29 uses projection (1x1 conv + BN) shortcuts where the shape changes (the paper does
  not say; with them our conv + fc weights give Table 7's 34.4M / 68.1M, and the paper's counts
  leave out BN). CIFAR ResNets use option A (no parameters), ImageNet ResNets option B.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from convzoo.layers.conv import ActLayer, ConvNormAct, NormLayer
from convzoo.layers.drop import DROP_PATH_MODES, DropPath, DropPathMode, drop_path_rates
from convzoo.layers.head import ClassifierHead
from convzoo.layers.init import init_weights, zero_init_last_norms
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

RESNET_PAPER = Paper(
    "Deep Residual Learning for Image Recognition", "1512.03385", "He et al.", 2016
)
RESNEXT_PAPER = Paper(
    "Aggregated Residual Transformations for Deep Neural Networks", "1611.05431", "Xie et al.", 2017
)

BLOCKS = ("basic", "bottleneck")
STEMS = ("imagenet", "cifar")
SHORTCUTS = ("pad", "conv")


@dataclass(frozen=True)
class ResNetConfig:
    block: str = "basic"  # "basic" (two 3x3 convs) | "bottleneck" (1x1, 3x3, 1x1 with 4x output)
    layers: tuple[int, ...] = (2, 2, 2, 2)  # blocks per stage
    widths: tuple[int, ...] = (64, 128, 256, 512)  # per stage; a bottleneck outputs 4x this
    stem: str = "imagenet"  # "imagenet": 7x7/2 conv + 3x3/2 max pool; "cifar": one 3x3 conv
    stem_width: int = 64
    shortcut: str = "conv"  # where the shape changes: "pad" = option A, "conv" = option B
    cardinality: int = 1  # groups of the bottleneck's 3x3 conv (ResNeXt's C)
    base_width: int = 64  # ResNeXt's d: channels per group at the first stage (width 64 = ResNet)
    stride_in_1x1: bool = False  # He et al.'s original bottleneck (see module docstring)
    drop_rate: float = 0.0  # dropout before the classifier
    drop_path_rate: float = 0.0  # stochastic depth: drop probability p_L of the last block
    drop_path_mode: DropPathMode = "batch"  # "batch" (the paper's, skips compute) | "sample"
    zero_init_last: bool = True  # each branch's last BN starts at scale 0 (timm's default)
    norm_layer: NormLayer = nn.BatchNorm2d
    act_layer: ActLayer = nn.ReLU
    num_classes: int = 1000
    in_channels: int = 3

    def __post_init__(self) -> None:
        for value, allowed, field in (
            (self.block, BLOCKS, "block"),
            (self.stem, STEMS, "stem"),
            (self.shortcut, SHORTCUTS, "shortcut"),
            (self.drop_path_mode, DROP_PATH_MODES, "drop_path_mode"),
        ):
            if value not in allowed:
                raise ValueError(f"{field} must be one of {allowed}, got {value!r}")
        if len(self.layers) != len(self.widths) or not self.layers:
            raise ValueError(f"layers {self.layers} and widths {self.widths} must match in length")
        if min(self.layers) < 1:
            raise ValueError(f"every stage needs at least one block, got layers={self.layers}")
        if self.block == "basic" and (self.cardinality != 1 or self.base_width != 64):
            raise ValueError("cardinality and base_width apply to bottleneck blocks only")


class PadShortcut(nn.Module):
    """Option A: identity on the existing channels, zeros for the new ones; stride by subsampling."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"zero-padding cannot shrink {in_channels} -> {out_channels} channels")
        self.extra = out_channels - in_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # same size as a padded stride-s 3x3 conv
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))  # (B, C + extra, H, W)


def make_shortcut(
    kind: str, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer
) -> nn.Module | None:
    """``None`` (identity) where the shape is kept, else option A or B."""
    if in_channels == out_channels and stride == 1:
        return None
    if kind == "pad":
        return PadShortcut(in_channels, out_channels, stride)
    return ConvNormAct(in_channels, out_channels, 1, stride, norm_layer=norm_layer, act_layer=None)


class ResidualBlock(nn.Module):
    """``act(shortcut(x) + branch(x))``; subclasses define the branch as ``conv1 ... convN``."""

    downsample: nn.Module | None

    def __init__(self, drop_path: DropPath, act_layer: ActLayer) -> None:
        super().__init__()
        self.drop_path = drop_path
        self.act = act_layer()

    def branch(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def last_norm(self) -> nn.Module:
        """The norm layer that ends the branch."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        # In "batch" mode a dropped branch is never called: that is stochastic depth's speed-up.
        return self.act(self.drop_path.add_branch(shortcut, lambda: self.branch(x)))


class BasicBlock(ResidualBlock):
    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int,
        *,
        cfg: ResNetConfig,
        drop_path: DropPath,
    ) -> None:
        super().__init__(drop_path, cfg.act_layer)
        norm = cfg.norm_layer
        self.conv1 = ConvNormAct(
            in_channels, planes, 3, stride, norm_layer=norm, act_layer=cfg.act_layer
        )
        self.conv2 = ConvNormAct(planes, planes, 3, norm_layer=norm, act_layer=None)
        self.downsample = make_shortcut(cfg.shortcut, in_channels, planes, stride, norm)

    def branch(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x))

    @property
    def last_norm(self) -> nn.Module:
        return self.conv2[1]


class Bottleneck(ResidualBlock):
    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int,
        *,
        cfg: ResNetConfig,
        drop_path: DropPath,
    ) -> None:
        super().__init__(drop_path, cfg.act_layer)
        norm, act = cfg.norm_layer, cfg.act_layer
        # ResNeXt's template: C groups of d channels, d scaled with the stage like the ResNet width.
        width = int(planes * cfg.base_width / 64) * cfg.cardinality
        out_channels = planes * self.expansion
        s1, s3 = (stride, 1) if cfg.stride_in_1x1 else (1, stride)
        self.conv1 = ConvNormAct(in_channels, width, 1, s1, norm_layer=norm, act_layer=act)
        self.conv2 = ConvNormAct(
            width, width, 3, s3, groups=cfg.cardinality, norm_layer=norm, act_layer=act
        )
        self.conv3 = ConvNormAct(width, out_channels, 1, norm_layer=norm, act_layer=None)
        self.downsample = make_shortcut(cfg.shortcut, in_channels, out_channels, stride, norm)

    def branch(self, x: Tensor) -> Tensor:
        return self.conv3(self.conv2(self.conv1(x)))

    @property
    def last_norm(self) -> nn.Module:
        return self.conv3[1]


class ResNet(ZooModel):
    """ResNet / ResNeXt / stochastic-depth ResNet: stem -> stages of residual blocks -> head."""

    def __init__(self, cfg: ResNetConfig) -> None:
        block_cls: type[BasicBlock | Bottleneck] = (
            BasicBlock if cfg.block == "basic" else Bottleneck
        )
        imagenet = cfg.stem == "imagenet"
        num_features = cfg.widths[-1] * block_cls.expansion
        # Total stride: every stage after the first halves the size, the ImageNet stem by 4.
        total_stride = 2 ** (len(cfg.widths) - 1) * (4 if imagenet else 1)
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=num_features,
            min_input_size=total_stride,
        )
        norm, act = cfg.norm_layer, cfg.act_layer
        k = 7 if imagenet else 3  # ImageNet: 7x7/2 conv + 3x3/2 max pool; CIFAR: one 3x3 conv
        conv = ConvNormAct(cfg.in_channels, cfg.stem_width, k, 2 if imagenet else 1,
                           norm_layer=norm, act_layer=act)  # fmt: skip
        pool = [nn.MaxPool2d(3, stride=2, padding=1)] if imagenet else []
        self.stem = nn.Sequential(conv, *pool)
        rates = iter(drop_path_rates(cfg.drop_path_rate, sum(cfg.layers)))
        in_ch = cfg.stem_width
        stages: list[nn.Module] = []
        for i, (num_blocks, planes) in enumerate(zip(cfg.layers, cfg.widths)):
            blocks: list[nn.Module] = []
            for j in range(num_blocks):
                stride = 2 if i > 0 and j == 0 else 1
                drop = DropPath(next(rates), cfg.drop_path_mode)
                blocks.append(block_cls(in_ch, planes, stride, cfg=cfg, drop_path=drop))
                in_ch = planes * block_cls.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(num_features, cfg.num_classes, drop_rate=cfg.drop_rate)
        init_weights(self)
        if cfg.zero_init_last:
            zero_init_last_norms(b.last_norm for b in residual_blocks(self))


def residual_blocks(model: nn.Module) -> list[ResidualBlock]:
    """The residual blocks of a model in forward order (for stochastic-depth tools and tests)."""
    return [m for m in model.modules() if isinstance(m, ResidualBlock)]


@dataclass(frozen=True)
class Variant:
    """One row of a paper's table: the config and what the paper prints for it."""

    config: ResNetConfig
    params: int  # our exact parameter count (tests keep it true)
    table: str = ""
    paper_params_m: float | None = None
    paper_macs_g: float | None = None
    paper_error: float | None = None  # top-1 error %, on the config's dataset
    paper_params_tol_m: float | None = None  # where the paper's figure is not reproducible
    paper_macs_tol_g: float | None = None
    notes: str = ""


def _cifar(depth: int) -> ResNetConfig:
    n = (depth - 2) // 6
    return ResNetConfig(layers=(n, n, n), widths=(16, 32, 64), stem="cifar", stem_width=16,
                        shortcut="pad", num_classes=10)  # fmt: skip


def _layers(block: str, *layers: int) -> ResNetConfig:
    return ResNetConfig(block=block, layers=layers)


def register_table(
    family: str, paper: Paper, rows: dict[str, Variant], tiny: dict[str, Any], notes: str = ""
) -> None:
    """Register every row of a table (also used by ``wide_resnet`` for WRN-50-2)."""
    for name, v in rows.items():
        cifar = v.config.stem == "cifar"
        info = ModelInfo(
            family=family,
            paper=paper,
            table=v.table,
            dataset="cifar" if cifar else "imagenet",
            input_size=32 if cifar else 224,
            num_classes=v.config.num_classes,
            params=v.params,
            paper_params_m=v.paper_params_m,
            paper_macs_g=v.paper_macs_g,
            paper_accuracy=None if v.paper_error is None else round(100 - v.paper_error, 2),
            paper_params_tol_m=v.paper_params_tol_m,
            paper_macs_tol_g=v.paper_macs_tol_g,
            notes=v.notes or notes,
        )
        register_model(name, ResNet, v.config, info=info,
                       tiny=Tiny(overrides=tiny, input_size=16 if cifar else 32))  # fmt: skip


# He et al. 2016, section 4.2 (6n+2 layers, option A shortcuts) and Table 6 (params, error).
_T6 = "Section 4.2 (6n+2 layers, option A shortcuts); Table 6"
CIFAR_RESNETS = {
    "resnet20_cifar": Variant(_cifar(20), 269_722, _T6, paper_params_m=0.27, paper_error=8.75),
    "resnet32_cifar": Variant(_cifar(32), 464_154, _T6, paper_params_m=0.46, paper_error=7.51),
    "resnet44_cifar": Variant(_cifar(44), 658_586, _T6, paper_params_m=0.66, paper_error=7.17),
    "resnet56_cifar": Variant(_cifar(56), 853_018, _T6, paper_params_m=0.85, paper_error=6.97),
    "resnet110_cifar": Variant(_cifar(110), 1_727_962, _T6, paper_params_m=1.7, paper_error=6.43),
    "resnet1202_cifar": Variant(_cifar(1202), 19_421_274, _T6, paper_params_m=19.4,
                                paper_error=7.93),
}  # fmt: skip
# Few blocks per stage, so that even ResNet-1202 tests in milliseconds.
register_table("resnet", RESNET_PAPER, CIFAR_RESNETS,
               {"layers": (2, 1, 1), "widths": (4, 8, 16), "stem_width": 4},
               "Stochastic depth (Huang et al. 2016): drop_path_rate=0.5 on resnet110_cifar.")  # fmt: skip

# He et al. 2016, Table 1 (layers, GMACs); top-1 from the 10-crop error of Table 2 (ResNet-18)
# and Table 3. Option B projection shortcuts. Table 1 rounds MACs loosely (3.66 is printed 3.6,
# 3.86 as 3.8), and ResNet v1.5 costs more than the paper's layout (tests/test_resnet.py checks
# that layout), hence the tolerances.
_T1 = "Table 1; accuracy Table 2 (ResNet-18) / Table 3 (10-crop)"
_V15 = (
    "Stride on the bottleneck's 3x3 conv (torchvision layout, 4.1 GMACs for ResNet-50 as in "
    "ResNeXt Table 1); stride_in_1x1=True gives He et al.'s layout and their Table 1 MACs. "
    "Paper accuracy is 10-crop."
)
_B = {"paper_macs_tol_g": 0.1, "notes": "Paper accuracy is 10-crop."}
_BN = {"paper_macs_tol_g": 0.35, "notes": _V15}
IMAGENET_RESNETS = {
    "resnet18": Variant(_layers("basic", 2, 2, 2, 2), 11_689_512, _T1, paper_macs_g=1.8,
                        paper_error=27.88, **_B),
    "resnet34": Variant(_layers("basic", 3, 4, 6, 3), 21_797_672, _T1, paper_macs_g=3.6,
                        paper_error=24.52, paper_macs_tol_g=0.1, notes="Paper accuracy is "
                        "10-crop; option B shortcuts as in Table 3's ResNet-34 B."),
    "resnet50": Variant(_layers("bottleneck", 3, 4, 6, 3), 25_557_032, _T1, paper_macs_g=3.8,
                        paper_error=22.85, **_BN),
    "resnet101": Variant(_layers("bottleneck", 3, 4, 23, 3), 44_549_160, _T1, paper_macs_g=7.6,
                         paper_error=21.75, **_BN),
    "resnet152": Variant(_layers("bottleneck", 3, 8, 36, 3), 60_192_808, _T1, paper_macs_g=11.3,
                         paper_error=21.43, **_BN),
}  # fmt: skip
_TINY_IMAGENET = {"layers": (1, 1, 1, 1), "widths": (4, 8, 16, 32), "stem_width": 8}
register_table("resnet", RESNET_PAPER, IMAGENET_RESNETS, _TINY_IMAGENET)

# Xie et al. 2017: ResNeXt. ImageNet: Table 1 / Table 3 / Table 4; CIFAR: section 5.3, Table 7.
# The paper counts conv and fc weights only; BN adds 0.06M/0.10M to ResNeXt-29.
_R29 = ResNetConfig(block="bottleneck", layers=(3, 3, 3), widths=(64, 128, 256), stem="cifar",
                    num_classes=10)  # fmt: skip
_R101 = _layers("bottleneck", 3, 4, 23, 3)
_C7 = {
    "table": "Section 5.3; Table 7 (CIFAR-10 test error)",
    "paper_params_tol_m": 0.06,
    "notes": "Paper parameter counts exclude BatchNorm (ours: 34.37M / 68.05M without it).",
}
CIFAR_RESNEXTS = {
    "resnext29_8x64d_cifar": Variant(replace(_R29, cardinality=8), 34_426_698,
                                     paper_params_m=34.4, paper_error=3.65, **_C7),
    "resnext29_16x64d_cifar": Variant(replace(_R29, cardinality=16), 68_155_210,
                                      paper_params_m=68.1, paper_error=3.58, **_C7),
}  # fmt: skip
IMAGENET_RESNEXTS = {
    "resnext50_32x4d": Variant(replace(_layers("bottleneck", 3, 4, 6, 3), cardinality=32,
                                       base_width=4), 25_028_904,
                               "Table 1; Table 3 (224 single crop)", paper_params_m=25.0,
                               paper_macs_g=4.2, paper_error=22.2),
    "resnext101_32x8d": Variant(replace(_R101, cardinality=32, base_width=8), 88_791_336,
                                "Table 1 template at depth 101, 32x8d (not in the paper)"),
    "resnext101_64x4d": Variant(replace(_R101, cardinality=64, base_width=4), 83_455_272,
                                "Table 1 template, depth 101; Table 4 (224 crop)",
                                paper_error=20.4),
}  # fmt: skip
_TINY_X = {"stem_width": 8, "cardinality": 2, "base_width": 64}
register_table("resnext", RESNEXT_PAPER, CIFAR_RESNEXTS,
               {"layers": (1, 1, 1), "widths": (4, 8, 16), **_TINY_X})  # fmt: skip
register_table("resnext", RESNEXT_PAPER, IMAGENET_RESNEXTS, {**_TINY_IMAGENET, **_TINY_X})

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "ResNetConfig", "Variant", "residual_blocks"]
