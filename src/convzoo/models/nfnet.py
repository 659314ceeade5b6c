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
average-pool then 1x1 conv; deep 4-conv stem; final 1x1 conv to 2x the last width.

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
import torch.nn.functional as F
from torch import Tensor, nn

from convzoo.layers.drop import DropPath, DropPathMode, drop_path_rates
from convzoo.layers.head import ClassifierHead
from convzoo.layers.squeeze_excite import SqueezeExcite
from convzoo.layers.std_conv import ScaledStdConv2d, pad_same
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

# gamma = 1 / std(act(z)) for z ~ N(0, 1): the reference code's constants (nfnets/base.py).
GAMMA: dict[str, float] = {
    "relu": 1.7139588594436646,
    "gelu": 1.7015043497085571,
    "silu": 1.7881293296813965,
}
_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "silu": F.silu,
}


class GammaAct(nn.Module):
    """``act(x) * gamma``: the variance-preserving activation of NF networks."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        if activation not in GAMMA:
            raise ValueError(f"activation must be one of {sorted(GAMMA)}, got {activation!r}")
        self.activation = activation
        self.fn = _ACTIVATIONS[activation]
        self.gamma = GAMMA[activation]

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x) * self.gamma

    def extra_repr(self) -> str:
        return f"{self.activation}, gamma={self.gamma:.6f}"


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


class Shortcut(nn.Module):
    """Projection shortcut of a transition block: (avg pool) -> 1x1 scaled-WS conv."""

    def __init__(self, conv: nn.Module, stride: int, pool: bool) -> None:
        super().__init__()
        self.pool = (
            nn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False)
            if pool and stride > 1
            else nn.Identity()
        )
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pool(x))


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
        self.downsample: Shortcut | None = None
        if stride > 1 or in_channels != out_channels:
            stride_conv = 1 if cfg.shortcut_pool else stride
            self.downsample = Shortcut(
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


class SameMaxPool2d(nn.Module):
    """3x3 stride-2 max pool with TF SAME padding (padded with -inf)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(pad_same(x, 3, 2, value=float("-inf")), 3, 2)


class NFNet(ZooModel):
    def __init__(self, cfg: NFNetConfig) -> None:
        if len(cfg.depths) != len(cfg.widths) or len(cfg.stem_widths) != len(cfg.stem_strides):
            raise ValueError("depths/widths and stem_widths/stem_strides must have equal lengths")
        if cfg.alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {cfg.alpha}")
        final = int(cfg.widths[-1] * cfg.final_conv_mult) if cfg.final_conv_mult else cfg.widths[-1]
        stage_strides = (1,) + (2,) * (len(cfg.depths) - 1)
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

        stem: OrderedDict[str, nn.Module] = OrderedDict()
        in_ch = cfg.in_channels
        for i, (width, stride) in enumerate(zip(cfg.stem_widths, cfg.stem_strides, strict=True)):
            stem[f"conv{i + 1}"] = conv(in_ch, width, cfg.stem_kernel_size, stride=stride)
            if i < len(cfg.stem_widths) - 1:  # the first block pre-activates the last conv
                stem[f"act{i + 1}"] = act()
            in_ch = width
        if cfg.stem_pool:
            stem["pool"] = SameMaxPool2d() if cfg.same_padding else nn.MaxPool2d(3, 2, padding=1)
        self.stem = nn.Sequential(stem)

        rates = iter(drop_path_rates(cfg.drop_path_rate, sum(cfg.depths), schedule="(l-1)/L"))
        expected_var = 1.0
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
        self.stages = nn.Sequential(*stages)
        self.final_conv = conv(in_ch, final, 1) if cfg.final_conv_mult else nn.Identity()
        self.final_act = act()
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

    def forward_features(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.final_act(self.final_conv(self.stages(self.stem(x))))


# NFNet-F variants (2102.06171 Table 1 and the released nfnet_params): depths (1, 2, 6, 3) * k,
# widths 256-512-1536-1536; (train, test) resolution and dropout per variant. Params / FLOPs /
# top-1 from the paper's ImageNet comparison table (F6 top-1 is with SAM). The FLOPs column counts multiply-adds at the *test*
# resolution (the reference count_flops; ours at 256x256: F0 12.384G; at 192x192 only 6.98G).
_F_VARIANTS = {
    # name: (k, train, test, drop_rate, params_m, macs_g, top1)
    "nfnet_f0": (1, 192, 256, 0.2, 71.5, 12.38, 83.6),
    "nfnet_f1": (2, 224, 320, 0.3, 132.6, 35.54, 84.7),
    "nfnet_f2": (3, 256, 352, 0.4, 193.8, 62.59, 85.1),
    "nfnet_f3": (4, 320, 416, 0.4, 254.9, 114.76, 85.7),
    "nfnet_f4": (5, 384, 512, 0.5, 316.1, 215.24, 85.9),
    "nfnet_f5": (6, 416, 544, 0.5, 377.2, 289.76, 86.0),
    "nfnet_f6": (7, 448, 576, 0.5, 438.4, 377.28, 86.5),
}
# (train, test) resolution of each variant, for training recipes.
RESOLUTIONS: dict[str, tuple[int, int]] = {n: (v[1], v[2]) for n, v in _F_VARIANTS.items()}
CONFIGS: dict[str, NFNetConfig] = {
    name: NFNetConfig(depths=(k, 2 * k, 6 * k, 3 * k), drop_rate=drop)
    for name, (k, _, _, drop, *_) in _F_VARIANTS.items()
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

# Exact parameter counts of our full-size builds (a generic test keeps them true).
_PARAMS = {
    "nfnet_f0": 71_489_284,
    "nfnet_f1": 132_634_256,
    "nfnet_f2": 193_779_228,
    "nfnet_f3": 254_924_200,
    "nfnet_f4": 316_069_172,
    "nfnet_f5": 377_214_144,
    "nfnet_f6": 438_359_116,
    "nf_resnet50": 25_557_048,
}
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
for _name, (_k, _train, _test, _drop, _p, _macs, _top1) in _F_VARIANTS.items():
    register_model(
        _name,
        NFNet,
        CONFIGS[_name],
        info=ModelInfo(
            family="nfnet",
            paper=NFNET_PAPER,
            table="Table 1 / released nfnet_params (config); ImageNet table (params, FLOPs, top-1)",
            dataset="imagenet",
            input_size=_test,
            num_classes=1000,
            params=_PARAMS[_name],
            paper_params_m=_p,
            paper_macs_g=_macs,
            paper_accuracy=_top1,
            notes=f"Trained at {_train}x{_train}; input_size is the test resolution, where the "
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
        params=_PARAMS["nf_resnet50"],
        notes="timm's nf_resnet50 needs shortcut_pool=True, same_padding=False (module docstring). "
        + _DROP_NOTE,
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
