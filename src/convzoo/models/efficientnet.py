"""EfficientNet B0-B7 and compound scaling.

Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019,
arXiv 1905.11946.

B0 is Table 1: a 3x3 stride-2 conv to 32, seven stages of MBConv blocks (MobileNet v2 inverted
residuals with squeeze-and-excitation, SiLU ("swish") activations), a 1x1 conv to 1280, pooling,
dropout and the classifier. SE squeezes to ``max(1, int(block input width * 0.25))``. B1-B7 are
B0 scaled by ``(width, depth)`` coefficients through one rule (``EfficientNet`` applies it):
every width ``make_divisible(c * width, 8)``, every stage's repeats ``ceil(n * depth)``.
Reference numbers: Table 2 (params, FLOPs = multiply-adds, top-1 of the ICML version).

Compound scaling (section 3.3, equation 3): depth ``d = alpha^phi``, width ``w = beta^phi``,
resolution ``r = gamma^phi`` with alpha=1.2, beta=1.1, gamma=1.15 found by grid search at phi=1
under ``alpha * beta^2 * gamma^2 ~ 2``, so MACs grow about ``2^phi``. ``compound_scale`` is that
rule; ``compound_config(phi)`` builds B0 scaled by it.

Decision: the registered ``efficientnet_b1`` .. ``b7`` use the coefficients of the authors'
release (``RELEASED``, from ``efficientnet_builder.efficientnet_params``; also torchvision's and
timm's), because Table 2's parameters, FLOPs and accuracies are those models', and released
weights load only into them. They are *not* ``compound_scale(phi)`` for integer phi: relative to
``compound_scale(phi = n)`` the releases are 8-19% shallower, 9-10% narrower for B1-B3 and
within 5% for B4-B7, with resolutions 7-12% lower for B1-B3 and within 4% for B4-B7; the dropout
rate is exactly the paper's "linearly from 0.2 (B0) to 0.5 (B7)" rounded to one decimal.
``tests/test_efficientnet.py`` pins these differences.

Deviations and choices:
* BatchNorm eps 1e-3, momentum 0.01 (TensorFlow's decay 0.99) as in the reference. torchvision's
  ``efficientnet_b0`` .. ``b4`` use PyTorch's eps 1e-5 (its B5-B7 use 1e-3): to load those, pass
  ``norm_layer=nn.BatchNorm2d``.
* Stochastic depth: the reference's "drop connect" 0.2, per sample, kept branches scaled by
  1 / (1 - p), with the reference's schedule: block l of L drops with 0.2 (l - 1) / L (tensorflow/
  tpu ``models/official/efficientnet/efficientnet_model.py``: ``drop_rate *= float(idx) /
  len(self._blocks)`` with idx from 0, over all blocks; only blocks with a shortcut use it), so
  the first block never drops. Set ``drop_path_rate=0`` to turn it off,
  ``drop_path_mode="batch"`` to skip dropped blocks' compute.
* Table 1's stages 2-8 are the rows of ``stages``, grouped into the five resolutions they run at
  (stages 5-6 and 7-8 share one): ``stages[s][r]`` is a row, ``stages[s][r][b]`` a block. The
  1x1 conv to 1280 is the ``neck``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial

from torch import nn

from convzoo.layers.conv import ActLayer, ConvNormAct, NormLayer
from convzoo.layers.drop import DropPathMode
from convzoo.layers.head import ClassifierHead
from convzoo.layers.helpers import make_divisible
from convzoo.layers.mbconv import TF_BATCHNORM, InvertedResidual, repeated, resolution_stages
from convzoo.layers.squeeze_excite import SqueezeExcite
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper(
    "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
    "1905.11946",
    "Tan, Le",
    2019,
)


@dataclass(frozen=True)
class MBConvStage:
    """A row of Table 1: MBConv expansion, kernel, output channels, layers, first stride."""

    expand_ratio: int
    kernel_size: int
    out_channels: int
    repeats: int
    stride: int


# Table 1 (EfficientNet-B0), stages 2-8.
B0_STAGES: tuple[MBConvStage, ...] = (
    MBConvStage(expand_ratio=1, kernel_size=3, out_channels=16, repeats=1, stride=1),
    MBConvStage(expand_ratio=6, kernel_size=3, out_channels=24, repeats=2, stride=2),
    MBConvStage(expand_ratio=6, kernel_size=5, out_channels=40, repeats=2, stride=2),
    MBConvStage(expand_ratio=6, kernel_size=3, out_channels=80, repeats=3, stride=2),
    MBConvStage(expand_ratio=6, kernel_size=5, out_channels=112, repeats=3, stride=1),
    MBConvStage(expand_ratio=6, kernel_size=5, out_channels=192, repeats=4, stride=2),
    MBConvStage(expand_ratio=6, kernel_size=3, out_channels=320, repeats=1, stride=1),
)


@dataclass(frozen=True)
class EfficientNetConfig:
    stages: tuple[MBConvStage, ...] = B0_STAGES
    stem_channels: int = 32
    head_channels: int = 1280
    width_coefficient: float = 1.0
    depth_coefficient: float = 1.0
    width_divisor: int = 8
    se_ratio: float = 0.25
    act_layer: ActLayer = nn.SiLU
    norm_layer: NormLayer = TF_BATCHNORM
    drop_rate: float = 0.2
    drop_path_rate: float = 0.2
    drop_path_mode: DropPathMode = "sample"
    num_classes: int = 1000
    in_channels: int = 3


@dataclass(frozen=True)
class ScalingCoefficients:
    width: float
    depth: float
    resolution: int
    dropout: float


def compound_scale(
    phi: float,
    alpha: float = 1.2,
    beta: float = 1.1,
    gamma: float = 1.15,
    *,
    base_resolution: int = 224,
    dropout_range: tuple[float, float] = (0.2, 0.5),
    max_phi: float = 7.0,
) -> ScalingCoefficients:
    """Equation 3: depth ``alpha^phi``, width ``beta^phi``, resolution ``base * gamma^phi``.

    The resolution is rounded to whole pixels; dropout rises linearly over ``[0, max_phi]``
    (section 5.2: "from 0.2 for B0 to 0.5 for B7"), rounded to one decimal as released.
    """
    if phi < 0:
        raise ValueError(f"phi must be >= 0, got {phi}")
    low, high = dropout_range
    return ScalingCoefficients(
        width=beta**phi,
        depth=alpha**phi,
        resolution=round(base_resolution * gamma**phi),
        dropout=round(low + (high - low) * min(phi, max_phi) / max_phi, 1),
    )


def compound_config(phi: float, base: EfficientNetConfig | None = None) -> EfficientNetConfig:
    """``base`` (default B0) scaled by ``compound_scale(phi)``; its resolution is
    ``compound_scale(phi).resolution``."""
    c = compound_scale(phi)
    return replace(
        base or EfficientNetConfig(),
        width_coefficient=c.width,
        depth_coefficient=c.depth,
        drop_rate=c.dropout,
    )


def scaled_repeats(repeats: int, depth_coefficient: float) -> int:
    return math.ceil(repeats * depth_coefficient)


class EfficientNet(ZooModel):
    def __init__(self, cfg: EfficientNetConfig) -> None:
        if cfg.width_coefficient <= 0 or cfg.depth_coefficient <= 0:
            raise ValueError(
                f"width/depth coefficients must be > 0, got {cfg.width_coefficient}, "
                f"{cfg.depth_coefficient}"
            )

        def width(c: int) -> int:
            return make_divisible(c * cfg.width_coefficient, cfg.width_divisor)

        head_ch = width(cfg.head_channels)
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=head_ch,
            min_input_size=2 ** (1 + sum(s.stride == 2 for s in cfg.stages)),
        )
        conv = partial(ConvNormAct, norm_layer=cfg.norm_layer, act_layer=cfg.act_layer)
        self.stem = conv(cfg.in_channels, width(cfg.stem_channels), 3, 2)
        rows = [
            repeated(
                partial(_mbconv, row=row, out_channels=width(row.out_channels), cfg=cfg),
                width(row.out_channels),
                row.stride,
                scaled_repeats(row.repeats, cfg.depth_coefficient),
            )
            for row in cfg.stages
        ]
        self.stages = resolution_stages(
            rows,
            width(cfg.stem_channels),
            drop_path_rate=cfg.drop_path_rate,
            drop_path_schedule="(l-1)/L",
        )
        self.neck = conv(width(cfg.stages[-1].out_channels), head_ch, 1)
        self.head = ClassifierHead(head_ch, cfg.num_classes, drop_rate=cfg.drop_rate)


def _mbconv(
    in_channels: int,
    stride: int,
    drop_path_rate: float,
    *,
    row: MBConvStage,
    out_channels: int,
    cfg: EfficientNetConfig,
) -> InvertedResidual:
    # SE width comes from the block's input width, not its expanded width.
    reduced = max(1, int(in_channels * cfg.se_ratio))
    return InvertedResidual(
        in_channels,
        out_channels,
        mid_channels=in_channels * row.expand_ratio,
        kernel_size=row.kernel_size,
        stride=stride,
        se_layer=partial(_se, reduced_channels=reduced, act_layer=cfg.act_layer),
        norm_layer=cfg.norm_layer,
        act_layer=cfg.act_layer,
        drop_path_rate=drop_path_rate,
        drop_path_mode=cfg.drop_path_mode,
    )


def _se(channels: int, *, reduced_channels: int, act_layer: ActLayer) -> SqueezeExcite:
    return SqueezeExcite(channels, reduced_channels, act_layer=act_layer, gate_layer=nn.Sigmoid)


# The authors' release (efficientnet_builder.efficientnet_params): width, depth, resolution,
# dropout per model; see the module docstring for how they relate to compound_scale.
RELEASED: dict[str, ScalingCoefficients] = {
    "efficientnet_b0": ScalingCoefficients(width=1.0, depth=1.0, resolution=224, dropout=0.2),
    "efficientnet_b1": ScalingCoefficients(width=1.0, depth=1.1, resolution=240, dropout=0.2),
    "efficientnet_b2": ScalingCoefficients(width=1.1, depth=1.2, resolution=260, dropout=0.3),
    "efficientnet_b3": ScalingCoefficients(width=1.2, depth=1.4, resolution=300, dropout=0.3),
    "efficientnet_b4": ScalingCoefficients(width=1.4, depth=1.8, resolution=380, dropout=0.4),
    "efficientnet_b5": ScalingCoefficients(width=1.6, depth=2.2, resolution=456, dropout=0.4),
    "efficientnet_b6": ScalingCoefficients(width=1.8, depth=2.6, resolution=528, dropout=0.5),
    "efficientnet_b7": ScalingCoefficients(width=2.0, depth=3.1, resolution=600, dropout=0.5),
}


@dataclass(frozen=True)
class Table2Row:
    """A row of Table 2 beside our build of it, with tolerances where Table 2's rounding cannot be
    met (``note`` says why)."""

    params_m: float
    macs_g: float  # Table 2's "FLOPs" are multiply-adds
    top1: float
    params: int  # our exact parameter count
    params_tol_m: float | None = None
    macs_tol_g: float | None = None
    note: str = ""


# Table 2: params, FLOPs (multiply-adds), top-1 of the ICML version.
TABLE2: dict[str, Table2Row] = {
    "efficientnet_b0": Table2Row(params_m=5.3, macs_g=0.39, top1=77.1, params=5_288_548),
    "efficientnet_b1": Table2Row(
        params_m=7.8,
        macs_g=0.70,
        top1=79.1,
        params=7_794_184,
        macs_tol_g=0.02,
        note=" Table 2's 0.70B FLOPs is 2% under the release at 240px (0.687G MACs).",
    ),
    "efficientnet_b2": Table2Row(
        params_m=9.2,
        macs_g=1.0,
        top1=80.1,
        params=9_109_994,
        params_tol_m=0.1,
        note=" Table 2's 9.2M matches 9,177,562 = parameters + BatchNorm running statistics "
        "(Keras counts both); the parameters alone are 9,109,994.",
    ),
    "efficientnet_b3": Table2Row(params_m=12.0, macs_g=1.8, top1=81.6, params=12_233_232),
    "efficientnet_b4": Table2Row(
        params_m=19.0,
        macs_g=4.2,
        top1=82.9,
        params=19_341_616,
        macs_tol_g=0.2,
        note=" Table 2's 4.2B FLOPs is 4% under the release at 380px (4.394G MACs, as "
        "torchvision reports).",
    ),
    "efficientnet_b5": Table2Row(
        params_m=30.0,
        macs_g=9.9,
        top1=83.6,
        params=30_389_784,
        macs_tol_g=0.4,
        note=" Table 2's 9.9B FLOPs is 4% under the release at 456px (10.266G MACs, as "
        "torchvision reports).",
    ),
    "efficientnet_b6": Table2Row(params_m=43.0, macs_g=19.0, top1=84.0, params=43_040_704),
    "efficientnet_b7": Table2Row(
        params_m=66.0,
        macs_g=37.0,
        top1=84.3,
        params=66_347_960,
        macs_tol_g=0.8,
        note=" Table 2's 37B FLOPs is 2% under the release at 600px (37.746G MACs, as "
        "torchvision reports).",
    ),
}

for _name, _row in TABLE2.items():
    _c = RELEASED[_name]
    register_model(
        _name,
        EfficientNet,
        EfficientNetConfig(
            width_coefficient=_c.width, depth_coefficient=_c.depth, drop_rate=_c.dropout
        ),
        info=ModelInfo(
            family="efficientnet",
            paper=PAPER,
            table="Table 1 (B0) scaled by the released coefficients; Table 2",
            dataset="imagenet",
            input_size=_c.resolution,
            num_classes=1000,
            params=_row.params,
            paper_params_m=_row.params_m,
            paper_params_tol_m=_row.params_tol_m,
            paper_macs_g=_row.macs_g,
            paper_macs_tol_g=_row.macs_tol_g,
            paper_accuracy=_row.top1,
            notes=f"Released coefficients width {_c.width}, depth {_c.depth}, resolution "
            f"{_c.resolution}, dropout {_c.dropout}"
            + (
                ""
                if _name.endswith("b0")
                else f" (compound_scale({_name[-1]}) differs, see module doc)"
            )
            + ". BatchNorm eps 1e-3 and drop-connect schedule 0.2 (l-1)/L as the reference"
            + (
                "; torchvision's weights need norm_layer=nn.BatchNorm2d."
                if _name[-1] in "01234"
                else "."
            )
            + _row.note,
        ),
        tiny=Tiny(
            overrides={
                "stages": B0_STAGES[:2],
                "stem_channels": 8,
                "head_channels": 32,
                "width_coefficient": 1.0,
                "depth_coefficient": 1.0,
                "drop_path_rate": 0.0,
            },
            input_size=16,
        ),
    )
