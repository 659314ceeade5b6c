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

from dataclasses import dataclass

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


# --- He et al. 2016, section 4.2: CIFAR-10 ResNets of depth 6n+2 (n = 3, 5, 7, 9, 18, 200) ------
# depth: (paper params M, CIFAR-10 test error % -- both Table 6 --, our exact parameter count)
_CIFAR_RESNETS = {
    20: (0.27, 8.75, 269_722),
    32: (0.46, 7.51, 464_154),
    44: (0.66, 7.17, 658_586),
    56: (0.85, 6.97, 853_018),
    110: (1.7, 6.43, 1_727_962),
    1202: (19.4, 7.93, 19_421_274),
}

for _depth, (_paper_m, _err, _params) in _CIFAR_RESNETS.items():
    _n = (_depth - 2) // 6
    register_model(
        f"resnet{_depth}_cifar",
        ResNet,
        ResNetConfig(
            layers=(_n, _n, _n),
            widths=(16, 32, 64),
            stem="cifar",
            stem_width=16,
            shortcut="pad",
            num_classes=10,
        ),
        info=ModelInfo(
            family="resnet",
            paper=RESNET_PAPER,
            table="Section 4.2 (6n+2 layers, option A shortcuts); Table 6",
            dataset="cifar",
            input_size=32,
            num_classes=10,
            params=_params,
            paper_params_m=_paper_m,
            paper_accuracy=round(100 - _err, 2),
            notes="Stochastic depth (Huang et al. 2016): drop_path_rate=0.5 on resnet110_cifar.",
        ),
        # Few blocks per stage, so that even ResNet-1202 tests in milliseconds.
        tiny=Tiny(
            overrides={"layers": (2, 1, 1), "widths": (4, 8, 16), "stem_width": 4}, input_size=16
        ),
    )

# --- He et al. 2016, Table 1: ImageNet ResNets (option B projection shortcuts) ----------------
# name: (block, layers, GMACs of Table 1, top-1 % from 10-crop error of Table 2 (18) / Table 3,
#        our exact parameter count)
_IMAGENET_RESNETS: dict[str, tuple[str, tuple[int, ...], float, float, int]] = {
    "resnet18": ("basic", (2, 2, 2, 2), 1.8, 100 - 27.88, 11_689_512),
    "resnet34": ("basic", (3, 4, 6, 3), 3.6, 100 - 24.52, 21_797_672),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 3.8, 100 - 22.85, 25_557_032),
    "resnet101": ("bottleneck", (3, 4, 23, 3), 7.6, 100 - 21.75, 44_549_160),
    "resnet152": ("bottleneck", (3, 8, 36, 3), 11.3, 100 - 21.43, 60_192_808),
}
_V15_NOTE = (
    "Stride on the bottleneck's 3x3 conv (torchvision layout, 4.1 GMACs for ResNet-50 as in "
    "ResNeXt Table 1); stride_in_1x1=True gives He et al.'s layout and their Table 1 MACs. "
)
_TINY_IMAGENET = {"layers": (1, 1, 1, 1), "widths": (4, 8, 16, 32), "stem_width": 8}

for _name, (_block, _layers, _macs, _acc, _params) in _IMAGENET_RESNETS.items():
    _bottleneck = _block == "bottleneck"
    register_model(
        _name,
        ResNet,
        ResNetConfig(block=_block, layers=_layers),
        info=ModelInfo(
            family="resnet",
            paper=RESNET_PAPER,
            table="Table 1; accuracy Table 2 (ResNet-18) / Table 3 (10-crop)",
            dataset="imagenet",
            input_size=224,
            num_classes=1000,
            params=_params,
            paper_macs_g=_macs,
            # Table 1 rounds loosely (3.66 is printed 3.6, 3.86 as 3.8); ResNet v1.5 also costs
            # more than the paper's layout (see notes). tests/test_resnet.py checks that layout.
            paper_macs_tol_g=0.35 if _bottleneck else 0.1,
            paper_accuracy=round(_acc, 2),
            notes=(_V15_NOTE if _bottleneck else "")
            + "Paper accuracy is 10-crop"
            + ("; option B shortcuts as in Table 3's ResNet-34 B." if _name == "resnet34" else "."),
        ),
        tiny=Tiny(overrides=_TINY_IMAGENET, input_size=32),
    )

# --- Xie et al. 2017: ResNeXt. ImageNet: Table 1 / Table 3 / Table 4; CIFAR: Table 7 ----------
_R29 = {"layers": (3, 3, 3), "widths": (64, 128, 256), "stem": "cifar", "num_classes": 10}
_R101 = {"layers": (3, 4, 23, 3)}
_C7 = "Section 5.3; Table 7 (CIFAR-10 test error)"
# name: (config, paper params M, paper GMACs, paper top-1 %, our exact params, table)
# fmt: off
_RESNEXTS: dict[str, tuple[ResNetConfig, float | None, float | None, float | None, int, str]] = {
    "resnext29_8x64d_cifar": (
        ResNetConfig(block="bottleneck", cardinality=8, **_R29), 34.4, None, 100 - 3.65,
        34_426_698, _C7),
    "resnext29_16x64d_cifar": (
        ResNetConfig(block="bottleneck", cardinality=16, **_R29), 68.1, None, 100 - 3.58,
        68_155_210, _C7),
    "resnext50_32x4d": (
        ResNetConfig(block="bottleneck", layers=(3, 4, 6, 3), cardinality=32, base_width=4),
        25.0, 4.2, 100 - 22.2, 25_028_904, "Table 1; Table 3 (224 single crop)"),
    "resnext101_32x8d": (
        ResNetConfig(block="bottleneck", cardinality=32, base_width=8, **_R101),
        None, None, None, 88_791_336, "Table 1 template at depth 101, 32x8d (not in the paper)"),
    "resnext101_64x4d": (
        ResNetConfig(block="bottleneck", cardinality=64, base_width=4, **_R101),
        None, None, 100 - 20.4, 83_455_272, "Table 1 template, depth 101; Table 4 (224 crop)"),
}
# fmt: on

for _name, (_cfg, _pm, _pg, _acc, _params, _table) in _RESNEXTS.items():
    _cifar = _cfg.stem == "cifar"
    register_model(
        _name,
        ResNet,
        _cfg,
        info=ModelInfo(
            family="resnext",
            paper=RESNEXT_PAPER,
            table=_table,
            dataset="cifar" if _cifar else "imagenet",
            input_size=32 if _cifar else 224,
            num_classes=_cfg.num_classes,
            params=_params,
            paper_params_m=_pm,
            paper_macs_g=_pg,
            paper_accuracy=None if _acc is None else round(_acc, 2),
            # The paper counts conv and fc weights only; BN adds 0.06M/0.10M to ResNeXt-29.
            paper_params_tol_m=0.06 if _cifar else None,
            notes="Paper parameter counts exclude BatchNorm (ours: 34.37M / 68.05M without it)."
            if _cifar
            else "",
        ),
        tiny=Tiny(
            overrides={
                "layers": (1, 1, 1) if _cifar else (1, 1, 1, 1),
                "widths": (4, 8, 16) if _cifar else (4, 8, 16, 32),
                "stem_width": 8,
                "cardinality": 2,
                "base_width": 64,
            },
            input_size=16 if _cifar else 32,
        ),
    )

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "ResNetConfig", "residual_blocks"]
