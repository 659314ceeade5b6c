"""Normalizer-Free networks: NFNet-F0..F6 and NF-ResNet-50.

Brock, De, Smith & Simonyan, "High-Performance Large-Scale Image Recognition Without
Normalization", ICML 2021, arXiv 2102.06171 (NFNets; configs: Table 1 -- depth pattern, dropout,
train/test resolution -- and section 5, as in the released ``nfnet_params``; numbers: the paper's
ImageNet comparison table of NFNets vs EfficientNets: params, FLOPs, top-1).
Brock, De & Smith, "Characterizing signal propagation to close the performance gap in unnormalized
ResNets", ICLR 2021, arXiv 2101.08692 (NF-ResNets, the block and the signal-propagation rule).

No normalization layer anywhere. Each residual block computes

    h_{i+1} = h_i + alpha * skip_gain * f_i(h_i / beta_i),    beta_i = sqrt(Var(h_i)),

with the expected variance tracked analytically: Var(h_{i+1}) = Var(h_i) + alpha^2, reset to
1 + alpha^2 after a transition block (its shortcut is a conv on the normalized input, so it has unit
variance). Convs are scaled weight-standardized (``convzoo.layers.std_conv``); every activation is
multiplied by gamma = 1 / std(act(z)), z ~ N(0, 1), so a unit-variance input stays unit-variance.
``skip_gain`` is a learnable scalar initialised at 0 (SkipInit), so each block is the identity at
initialization. NFNet blocks: 1x1 -> grouped 3x3 (group width 128, strided) -> grouped 3x3 ->
1x1, squeeze-excite (ratio 0.5) doubled (2 * sigmoid(0) = 1 at init), transition shortcuts
average-pool then 1x1 conv; deep 4-conv stem; final 1x1 conv to 2x the last width and the last
activation (the ``neck``: the blocks are pre-activation).

Deviations from the released JAX code:
- weight-standardization eps: rsqrt(var + 1e-5) / sqrt(N) instead of rsqrt(max(N * var, 1e-4))
  (equal unless a filter is nearly constant; see ``std_conv``).
- GELU is the exact erf form (PyTorch's); ``jax.nn.gelu`` defaults to the tanh approximation.
- stochastic depth: the reference's schedule, block l of L drops with rate * (l - 1) / L
  (deepmind-research ``nfnets/nfnet.py``: ``stochdepth_rate * index / num_blocks``, index from
  0), but kept branches are scaled by 1 / (1 - p), where the reference's ``StochDepth``
  (``nfnets/base.py``, ``scale_by_keep=False``) scales nothing. Reason: with the scaling the
  eval network (nothing dropped) computes the training-time expectation, as in every other family
  here through the one DropPath; without it, a block's branch at eval is 1 / (1 - p) times its
  training mean. Eval outputs, and so released weights, are unaffected: DropPath is off in eval.
- the gamma constants are the reference code's empirical values (``GAMMA``); a test checks them
  against numerical integration.
- nf_resnet50 follows the reference ``NF_ResNet`` (strided 1x1 projection shortcut, TF SAME
  padding, scalar skip gain). timm's nf_resnet50 differs: 2x2 average-pool shortcut, symmetric
  padding, gamma folded into the convs (including the stem), no skip gain. ``shortcut_pool`` and
  ``same_padding`` overrides plus ``convzoo.interop.nfnet`` reproduce it exactly.
NF-ResNet-50's dropout is not given in a form we could verify; it defaults to 0.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from convzoo.layers.conv import ActLayer
from convzoo.layers.drop import DropPath, DropPathMode, drop_path_rates
from convzoo.layers.head import ClassifierHead
from convzoo.layers.squeeze_excite import SqueezeExcite
from convzoo.layers.std_conv import GammaAct, SameMaxPool2d, ScaledStdConv2d
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

NFNET_PAPER = Paper(
    "High-Performance Large-Scale Image Recognition Without Normalization",
    "2102.06171",
    "Brock, De, Smith, Simonyan",
    2021,
)
NFRESNET_PAPER = Paper(
    "Characterizing signal propagation to close the performance gap in unnormalized ResNets",
    "2101.08692",
    "Brock, De, Smith",
    2021,
)


@dataclass(frozen=True)
class NFNetConfig:
    depths: tuple[int, ...] = (1, 2, 6, 3)
    widths: tuple[int, ...] = (256, 512, 1536, 1536)
    stem_widths: tuple[int, ...] = (16, 32, 64, 128)
    stem_strides: tuple[int, ...] = (2, 1, 1, 2)
    stem_kernel_size: int = 3
    stem_pool: bool = False  # NF-ResNet: 3x3 stride-2 max pool after the stem conv
    bottleneck_ratio: float = 0.5  # block width = out_channels * ratio
    group_width: int | None = 128  # channels per group in the 3x3 convs; None = dense
    extra_conv: bool = True  # NFNet's second grouped 3x3 conv
    se_ratio: float | None = 0.5  # squeeze-excite hidden width = out_channels * ratio
    final_conv_mult: float | None = 2.0  # final 1x1 conv width = last width * mult
    alpha: float = 0.2
    activation: str = "gelu"  # a key of GAMMA: gamma belongs to the nonlinearity, so a name
    shortcut_pool: bool = True  # transition shortcut: 2x2 avg pool + 1x1 conv (else strided 1x1)
    same_padding: bool = True  # TF SAME padding as in the reference code
    ws_eps: float = 1e-5
    drop_rate: float = 0.2
    drop_path_rate: float = 0.1
    drop_path_mode: DropPathMode = "sample"
    num_classes: int = 1000
    in_channels: int = 3


def _shortcut(conv: nn.Module, stride: int, pool: bool) -> nn.Sequential:
    """Projection shortcut of a transition block: (2x2 avg pool) -> 1x1 scaled-WS conv."""
    return nn.Sequential(
        OrderedDict(
            pool=nn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False)
            if pool and stride > 1
            else nn.Identity(),
            conv=conv,
        )
    )


class NFBlock(nn.Module):
    """Pre-activation NF bottleneck: h + alpha * skip_gain * f(act(h) * beta)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int,
        alpha: float,
        beta: float,
        cfg: NFNetConfig,
        conv: Callable[..., ScaledStdConv2d],
        drop_path: float,
    ) -> None:
        super().__init__()
        width = int(out_channels * cfg.bottleneck_ratio)
        groups = 1
        if cfg.group_width:
            # The reference rounds the block width down to whole groups.
            groups = max(1, width // cfg.group_width)
            width = groups * cfg.group_width
        self.alpha, self.beta = alpha, beta
        act = partial(GammaAct, cfg.activation)
        self.act1 = act()
        self.downsample: nn.Module | None = None
        if stride > 1 or in_channels != out_channels:
            stride_conv = 1 if cfg.shortcut_pool else stride
            self.downsample = _shortcut(
                conv(in_channels, out_channels, 1, stride=stride_conv), stride, cfg.shortcut_pool
            )
        self.conv1 = conv(in_channels, width, 1)
        self.act2 = act()
        self.conv2 = conv(width, width, 3, stride=stride, groups=groups)
        self.act2b = act() if cfg.extra_conv else None
        self.conv2b = conv(width, width, 3, groups=groups) if cfg.extra_conv else None
        self.act3 = act()
        self.conv3 = conv(width, out_channels, 1)
        self.se = (
            SqueezeExcite(out_channels, max(1, int(out_channels * cfg.se_ratio)))
            if cfg.se_ratio
            else None
        )
        self.drop_path = DropPath(drop_path, cfg.drop_path_mode)
        self.skip_gain = nn.Parameter(torch.zeros(()))

    def residual(self, out: Tensor) -> Tensor:
        out = self.conv2(self.act2(self.conv1(out)))
        if self.conv2b is not None:
            out = self.conv2b(self.act2b(out))
        out = self.conv3(self.act3(out))
        if self.se is not None:
            out = 2.0 * self.se(out)  # 2 * sigmoid(0) = 1: SE keeps the variance at init
        return out * (self.skip_gain * self.alpha)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(x) * self.beta
        shortcut = self.downsample(out) if self.downsample is not None else x
        # In "batch" mode a dropped residual is never computed.
        return self.drop_path.add_branch(shortcut, lambda: self.residual(out))


class NFNet(ZooModel):
    def __init__(self, cfg: NFNetConfig) -> None:
        if len(cfg.depths) != len(cfg.widths) or len(cfg.stem_widths) != len(cfg.stem_strides):
            raise ValueError("depths/widths and stem_widths/stem_strides must have equal lengths")
        if cfg.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {cfg.alpha}")
        final = int(cfg.widths[-1] * cfg.final_conv_mult) if cfg.final_conv_mult else cfg.widths[-1]
        total_stride = 2 ** (sum(s == 2 for s in cfg.stem_strides) + cfg.stem_pool)
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=final,
            min_input_size=total_stride * 2 ** (len(cfg.depths) - 1),
        )
        conv = partial(
            ScaledStdConv2d, eps=cfg.ws_eps, padding="same" if cfg.same_padding else None
        )
        act = partial(GammaAct, cfg.activation)
        self.stem = _stem(cfg, conv, act)
        self.stages = _stages(cfg, conv, cfg.stem_widths[-1])
        # The blocks are pre-activation: the last one's output is activated here, after the
        # final 1x1 conv where there is one.
        neck: OrderedDict[str, nn.Module] = OrderedDict()
        if cfg.final_conv_mult:
            neck["conv"] = conv(cfg.widths[-1], final, 1)
        neck["act"] = act()
        self.neck = nn.Sequential(neck)
        self.head = ClassifierHead(final, cfg.num_classes, drop_rate=cfg.drop_rate)
        self._init_weights()

    def _init_weights(self) -> None:
        if next(self.parameters()).is_meta:
            return  # nothing to initialise on the meta device (and normal_ there is slow)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # fan-in normal, as the reference (WS makes it moot)
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="linear")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if isinstance(self.head.fc, nn.Linear):
            nn.init.normal_(self.head.fc.weight, 0.0, 0.01)
            nn.init.zeros_(self.head.fc.bias)


def _stem(cfg: NFNetConfig, conv: Callable[..., nn.Module], act: ActLayer) -> nn.Sequential:
    stem: OrderedDict[str, nn.Module] = OrderedDict()
    in_ch = cfg.in_channels
    for i, (width, stride) in enumerate(zip(cfg.stem_widths, cfg.stem_strides, strict=True)):
        stem[f"conv{i + 1}"] = conv(in_ch, width, cfg.stem_kernel_size, stride=stride)
        if i < len(cfg.stem_widths) - 1:  # the first block pre-activates the last conv
            stem[f"act{i + 1}"] = act()
        in_ch = width
    if cfg.stem_pool:
        stem["pool"] = SameMaxPool2d() if cfg.same_padding else nn.MaxPool2d(3, 2, padding=1)
    return nn.Sequential(stem)


def _stages(
    cfg: NFNetConfig, conv: Callable[..., ScaledStdConv2d], in_channels: int
) -> nn.Sequential:
    """The residual stages, each block given beta = 1 / sqrt(expected input variance)."""
    rates = iter(drop_path_rates(cfg.drop_path_rate, sum(cfg.depths), schedule="(l-1)/L"))
    stage_strides = (1,) + (2,) * (len(cfg.depths) - 1)
    expected_var, in_ch = 1.0, in_channels
    stages: list[nn.Module] = []
    for depth, width, stride in zip(cfg.depths, cfg.widths, stage_strides, strict=True):
        blocks = []
        for i in range(depth):
            blocks.append(
                NFBlock(
                    in_ch,
                    width,
                    stride=stride if i == 0 else 1,
                    alpha=cfg.alpha,
                    beta=expected_var**-0.5,
                    cfg=cfg,
                    conv=conv,
                    drop_path=next(rates),
                )
            )
            if i == 0:  # the transition shortcut has unit variance again
                expected_var = 1.0
            expected_var += cfg.alpha**2
            in_ch = width
        stages.append(nn.Sequential(*blocks))
    return nn.Sequential(*stages)


@dataclass(frozen=True)
class FVariant:
    """An NFNet-F row: depths (1, 2, 6, 3) * ``depth_multiplier``, resolutions, dropout."""

    depth_multiplier: int
    train_size: int
    test_size: int
    drop_rate: float


@dataclass(frozen=True)
class ImageNetRow:
    """The paper's params (M), FLOPs (G multiply-adds) and top-1 (%); our exact param count."""

    params_m: float
    macs_g: float
    top1: float
    params: int


# NFNet-F variants (2102.06171 Table 1 and the released nfnet_params); widths 256-512-1536-1536.
F_VARIANTS: dict[str, FVariant] = {
    "nfnet_f0": FVariant(depth_multiplier=1, train_size=192, test_size=256, drop_rate=0.2),
    "nfnet_f1": FVariant(depth_multiplier=2, train_size=224, test_size=320, drop_rate=0.3),
    "nfnet_f2": FVariant(depth_multiplier=3, train_size=256, test_size=352, drop_rate=0.4),
    "nfnet_f3": FVariant(depth_multiplier=4, train_size=320, test_size=416, drop_rate=0.4),
    "nfnet_f4": FVariant(depth_multiplier=5, train_size=384, test_size=512, drop_rate=0.5),
    "nfnet_f5": FVariant(depth_multiplier=6, train_size=416, test_size=544, drop_rate=0.5),
    "nfnet_f6": FVariant(depth_multiplier=7, train_size=448, test_size=576, drop_rate=0.5),
}
# The paper's ImageNet comparison table (F6 top-1 is with SAM). Its FLOPs count multiply-adds at
# the *test* resolution (the reference count_flops; ours at 256x256: F0 12.384G; at 192x192 only
# 6.98G).
IMAGENET: dict[str, ImageNetRow] = {
    "nfnet_f0": ImageNetRow(params_m=71.5, macs_g=12.38, top1=83.6, params=71_489_284),
    "nfnet_f1": ImageNetRow(params_m=132.6, macs_g=35.54, top1=84.7, params=132_634_256),
    "nfnet_f2": ImageNetRow(params_m=193.8, macs_g=62.59, top1=85.1, params=193_779_228),
    "nfnet_f3": ImageNetRow(params_m=254.9, macs_g=114.76, top1=85.7, params=254_924_200),
    "nfnet_f4": ImageNetRow(params_m=316.1, macs_g=215.24, top1=85.9, params=316_069_172),
    "nfnet_f5": ImageNetRow(params_m=377.2, macs_g=289.76, top1=86.0, params=377_214_144),
    "nfnet_f6": ImageNetRow(params_m=438.4, macs_g=377.28, top1=86.5, params=438_359_116),
}
CONFIGS: dict[str, NFNetConfig] = {
    name: NFNetConfig(
        depths=tuple(d * v.depth_multiplier for d in (1, 2, 6, 3)), drop_rate=v.drop_rate
    )
    for name, v in F_VARIANTS.items()
}
# NF-ResNet-50 (2101.08692 section 5 / the reference NF_ResNet): pre-activation ResNet-50
# bottlenecks, 7x7 stem + max pool, ReLU, no SE, no final conv.
CONFIGS["nf_resnet50"] = NFNetConfig(
    depths=(3, 4, 6, 3),
    widths=(256, 512, 1024, 2048),
    stem_widths=(64,),
    stem_strides=(2,),
    stem_kernel_size=7,
    stem_pool=True,
    bottleneck_ratio=0.25,
    group_width=None,
    extra_conv=False,
    se_ratio=None,
    final_conv_mult=None,
    activation="relu",
    shortcut_pool=False,
    drop_rate=0.0,
)
_TINY_NFNET = Tiny(
    overrides={
        "depths": (1, 1, 1, 1),
        "widths": (16, 16, 32, 32),
        "stem_widths": (4, 8),
        "stem_strides": (2, 2),
        "group_width": 8,
        "drop_rate": 0.0,
        "drop_path_rate": 0.0,
    },
    input_size=32,
)

_DROP_NOTE = (
    "Stochastic depth: the reference's schedule (l-1)/L; kept branches scaled by 1/(1-p), which "
    "the reference does not do (module docstring)."
)
for _name, _v in F_VARIANTS.items():
    register_model(
        _name,
        NFNet,
        CONFIGS[_name],
        info=ModelInfo(
            family="nfnet",
            paper=NFNET_PAPER,
            table="Table 1 / released nfnet_params (config); ImageNet table (params, FLOPs, top-1)",
            dataset="imagenet",
            input_size=_v.test_size,
            num_classes=1000,
            params=IMAGENET[_name].params,
            paper_params_m=IMAGENET[_name].params_m,
            paper_macs_g=IMAGENET[_name].macs_g,
            paper_accuracy=IMAGENET[_name].top1,
            notes=f"Trained at {_v.train_size}x{_v.train_size}; input_size is the test resolution, where the "
            "paper's FLOPs and accuracy are measured. "
            + _DROP_NOTE
            + (" Top-1 with SAM." if _name == "nfnet_f6" else ""),
        ),
        tiny=_TINY_NFNET,
    )

register_model(
    "nf_resnet50",
    NFNet,
    CONFIGS["nf_resnet50"],
    info=ModelInfo(
        family="nfnet",
        paper=NFRESNET_PAPER,
        table="Section 5 / reference NF_ResNet('ResNet50'): depths 3-4-6-3, widths 256-2048",
        dataset="imagenet",
        input_size=224,
        num_classes=1000,
        params=25_557_048,  # our build's exact count
        notes="timm's nf_resnet50 is shortcut_pool=True, same_padding=False (module docstring); "
        "from_timm / pretrained=True read both off the timm module. " + _DROP_NOTE,
    ),
    tiny=Tiny(
        overrides={
            "depths": (1, 1, 1, 1),
            "widths": (16, 16, 32, 32),
            "stem_widths": (8,),
            "drop_path_rate": 0.0,
        },
        input_size=32,
    ),
)
