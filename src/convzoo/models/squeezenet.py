"""SqueezeNet 1.0 and 1.1, with the simple and complex bypasses of section 6.

Iandola, Han, Moskewicz, Ashraf, Dally & Keutzer, "SqueezeNet: AlexNet-level accuracy with 50x
fewer parameters and <0.5MB model size", arXiv 1602.07360.

SqueezeNet 1.0 is Table 1 (conv1 96 7x7/2, max pools after conv1, fire4 and fire8, Fire modules
fire2-fire9 with the squeeze / expand1x1 / expand3x3 widths listed there, dropout 0.5 before conv10,
conv10 1x1 to the classes, global average pooling; no fully connected layer). SqueezeNet 1.1 is
not in the paper: it is the authors' release (github.com/forresti/SqueezeNet, "SqueezeNet_v1.1"):
conv1 64 3x3/2 and the pools moved earlier (after conv1, fire3 and fire5), 2.4x less computation
at the same accuracy. Section 6 / Figure 2 / Table 3: the simple bypass adds identity shortcuts
around fire3, fire5, fire7 and fire9 (those whose input and output widths agree); the complex
bypass also adds a 1x1 conv shortcut around fire2, fire4, fire6 and fire8. Here both are one rule
-- identity where the widths agree, a 1x1 conv where they differ (complex only) -- which gives
exactly those modules for 1.0 and the analogous ones for 1.1.

Deviations: conv10 lives in ``head`` (a ``ConvClassifierHead``: dropout, conv10, ReLU, global
average pool) so that ``reset_classifier`` works as on every model; ``pre_logits`` returns the
pooled fire9 features. The bypass adds the shortcut after the Fire module's ReLUs, with no ReLU
after the sum, and the complex bypass conv has a bias and no activation: Figure 2 shows only an
addition and the text says nothing more. Table 3 gives model sizes, not parameter counts: the
complex bypass model is 7.7MB there (with 4.8MB for 1.248M parameters, i.e. MiB of float32);
our complex bypass adds 0.341M parameters (1.590M, 6.1MB in those units), so the paper's figure
cannot be reproduced from its description and is not tested.
``drop_path_rate`` (default 0; not in the paper) drops the Fire modules that have a bypass through
the shared stochastic-depth schedule.
Weights are initialised as in the release: conv10 from N(0, 0.01), the other convs He-uniform.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from convzoo.layers.conv import ConvNormAct
from convzoo.layers.drop import DropPath, DropPathMode, drop_path_rates
from convzoo.layers.head import ConvClassifierHead
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper(
    "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
    "1602.07360",
    "Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer",
    2016,
)

Bypass = Literal["none", "simple", "complex"]
BYPASS_MODES: tuple[str, ...] = ("none", "simple", "complex")


@dataclass(frozen=True)
class FireSpec:
    """A Fire module's row of Table 1: s1x1, e1x1 and e3x3 widths."""

    squeeze_channels: int
    expand1x1_channels: int
    expand3x3_channels: int

    @property
    def out_channels(self) -> int:
        return self.expand1x1_channels + self.expand3x3_channels


@dataclass(frozen=True)
class SqueezeNetConfig:
    stem_channels: int = 96
    stem_kernel_size: int = 7
    # Fire modules grouped into stages; a 3x3/2 max pool (ceil mode) follows the stem conv and
    # opens every later stage.
    stages: tuple[tuple[FireSpec, ...], ...] = ()
    bypass: Bypass = "none"
    drop_rate: float = 0.5
    drop_path_rate: float = 0.0
    drop_path_mode: DropPathMode = "sample"
    num_classes: int = 1000
    in_channels: int = 3


# Table 1: fire2 .. fire9.
_FIRE = {
    2: FireSpec(squeeze_channels=16, expand1x1_channels=64, expand3x3_channels=64),
    3: FireSpec(squeeze_channels=16, expand1x1_channels=64, expand3x3_channels=64),
    4: FireSpec(squeeze_channels=32, expand1x1_channels=128, expand3x3_channels=128),
    5: FireSpec(squeeze_channels=32, expand1x1_channels=128, expand3x3_channels=128),
    6: FireSpec(squeeze_channels=48, expand1x1_channels=192, expand3x3_channels=192),
    7: FireSpec(squeeze_channels=48, expand1x1_channels=192, expand3x3_channels=192),
    8: FireSpec(squeeze_channels=64, expand1x1_channels=256, expand3x3_channels=256),
    9: FireSpec(squeeze_channels=64, expand1x1_channels=256, expand3x3_channels=256),
}

# Table 1 (1.0) and the v1.1 release: which Fire modules sit between which max pools.
CONFIGS: dict[str, SqueezeNetConfig] = {
    "1_0": SqueezeNetConfig(
        stem_channels=96,
        stem_kernel_size=7,
        stages=(
            tuple(_FIRE[i] for i in (2, 3, 4)),
            tuple(_FIRE[i] for i in (5, 6, 7, 8)),
            (_FIRE[9],),
        ),
    ),
    "1_1": SqueezeNetConfig(
        stem_channels=64,
        stem_kernel_size=3,
        stages=(
            tuple(_FIRE[i] for i in (2, 3)),
            tuple(_FIRE[i] for i in (4, 5)),
            tuple(_FIRE[i] for i in (6, 7, 8, 9)),
        ),
    ),
}


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)


class Fire(nn.Module):
    """squeeze (1x1, ReLU) -> [expand 1x1 (ReLU) | expand 3x3 (ReLU)] concatenated, + bypass."""

    def __init__(
        self,
        in_channels: int,
        spec: FireSpec,
        bypass: Bypass = "none",
        drop_path_rate: float = 0.0,
        drop_path_mode: DropPathMode = "sample",
    ) -> None:
        super().__init__()
        self.squeeze = ConvNormAct(in_channels, spec.squeeze_channels, 1, norm_layer=None)
        self.expand1x1 = ConvNormAct(
            spec.squeeze_channels, spec.expand1x1_channels, 1, norm_layer=None
        )
        self.expand3x3 = ConvNormAct(
            spec.squeeze_channels, spec.expand3x3_channels, 3, norm_layer=None
        )
        self.out_channels = spec.out_channels
        self.shortcut: nn.Module | None = None
        if bypass != "none" and in_channels == self.out_channels:
            self.shortcut = nn.Identity()
        elif bypass == "complex":
            self.shortcut = nn.Conv2d(in_channels, self.out_channels, 1)
        # With a bypass the Fire module is a residual branch, which stochastic depth may drop.
        self.drop_path = DropPath(
            drop_path_rate if self.shortcut is not None else 0.0, drop_path_mode
        )

    def branch(self, x: Tensor) -> Tensor:
        s = self.squeeze(x)
        return torch.cat([self.expand1x1(s), self.expand3x3(s)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        if self.shortcut is None:
            return self.branch(x)
        return self.drop_path.add_branch(self.shortcut(x), lambda: self.branch(x))


def _min_input_size(stem_kernel_size: int, num_pools: int) -> int:
    """Smallest square input that the stem conv (stride 2, no padding) and the 3x3/2 ceil-mode
    max pools accept. A ceil-mode pool maps n >= 2 pixels to n // 2 (its last window may hang
    over the edge), so the last pool needs 2 pixels and each earlier one twice as many."""
    size = 2**num_pools
    return 2 * (size - 1) + stem_kernel_size  # (n - k) // 2 + 1 >= size


class SqueezeNet(ZooModel):
    def __init__(self, cfg: SqueezeNetConfig) -> None:
        if cfg.bypass not in BYPASS_MODES:
            raise ValueError(f"bypass must be one of {BYPASS_MODES}, got {cfg.bypass!r}")
        if not cfg.stages or not all(cfg.stages):
            raise ValueError("SqueezeNet needs at least one stage and no empty stage")
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=cfg.stages[-1][-1].out_channels,
            min_input_size=_min_input_size(cfg.stem_kernel_size, len(cfg.stages)),
        )
        self.stem = nn.Sequential(
            ConvNormAct(
                cfg.in_channels,
                cfg.stem_channels,
                cfg.stem_kernel_size,
                stride=2,
                padding=0,
                norm_layer=None,
            ),
            _pool(),
        )
        rates = iter(drop_path_rates(cfg.drop_path_rate, sum(len(s) for s in cfg.stages)))
        stages: list[nn.Module] = []
        in_ch = cfg.stem_channels
        for i, fires in enumerate(cfg.stages):
            layers: list[nn.Module] = [_pool()] if i else []
            for spec in fires:
                layers.append(Fire(in_ch, spec, cfg.bypass, next(rates), cfg.drop_path_mode))
                in_ch = spec.out_channels
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = ConvClassifierHead(in_ch, cfg.num_classes, drop_rate=cfg.drop_rate)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is self.head.conv:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


_TINY_FIRE = FireSpec(squeeze_channels=4, expand1x1_channels=8, expand3x3_channels=8)
_TINY_STAGES = (
    (_TINY_FIRE, _TINY_FIRE),
    (_TINY_FIRE,),
    (FireSpec(squeeze_channels=4, expand1x1_channels=12, expand3x3_channels=12),),
)


def _register(
    name: str,
    version: str,
    bypass: Bypass,
    params: int,
    *,
    paper_params_m: float | None,
    paper_accuracy: float | None,
    table: str,
    notes: str,
) -> None:
    register_model(
        name,
        SqueezeNet,
        dataclasses.replace(CONFIGS[version], bypass=bypass),
        info=ModelInfo(
            family="squeezenet",
            paper=PAPER,
            table=table,
            dataset="imagenet",
            input_size=224,
            num_classes=1000,
            params=params,
            paper_params_m=paper_params_m,
            paper_accuracy=paper_accuracy,
            notes=notes,
        ),
        # 48 pixels: the unpadded stem and ceil-mode pools leave the last stage 2x2, so its
        # nominal reduction (16) holds within rounding.
        tiny=Tiny(overrides={"stem_channels": 16, "stages": _TINY_STAGES}, input_size=48),
    )


_SIZE_NOTE = (
    "Table 3 lists model size, not parameters (4.8MB for 1.0 and the simple bypass, 7.7MB for "
    "the complex bypass); see the module docstring."
)
_register(
    "squeezenet1_0",
    "1_0",
    "none",
    1_248_424,
    paper_params_m=1.248424,
    paper_accuracy=57.5,
    table="Table 1 (architecture, 1,248,424 parameters); Table 2 (57.5% top-1)",
    notes="torchvision squeezenet1_0 has the same layers and weights layout (parity-tested).",
)
_register(
    "squeezenet1_1",
    "1_1",
    "none",
    1_235_496,
    paper_params_m=None,
    paper_accuracy=None,
    table="authors' SqueezeNet v1.1 release (github.com/forresti/SqueezeNet), not in the paper",
    notes=(
        "v1.1 is a release, not a paper table: the repo reports 2.4x less computation than "
        "1.0 at the same accuracy. Matches torchvision squeezenet1_1 (parity-tested)."
    ),
)
_register(
    "squeezenet1_0_simple_bypass",
    "1_0",
    "simple",
    1_248_424,
    paper_params_m=1.248424,
    paper_accuracy=60.4,
    table="Section 6, Figure 2 (middle), Table 3 (60.4% top-1)",
    notes="Identity bypasses add no parameters. " + _SIZE_NOTE,
)
_register(
    "squeezenet1_0_complex_bypass",
    "1_0",
    "complex",
    1_589_672,
    paper_params_m=None,
    paper_accuracy=58.8,
    table="Section 6, Figure 2 (right), Table 3 (58.8% top-1)",
    notes=_SIZE_NOTE,
)
