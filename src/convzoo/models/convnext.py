"""ConvNeXt.

Liu, Mao, Wu, Feichtenhofer, Darrell & Xie, "A ConvNet for the 2020s", CVPR 2022, arXiv 2201.03545.
Configs: section 3 / Table 1 ("ConvNeXt-T: C = (96, 192, 384, 768), B = (3, 3, 9, 3)", S/B/L/XL
with B = (3, 3, 27, 3)); numbers from Table 1 (ImageNet-1K, 224x224; XL only with ImageNet-22K
pre-training, Table 1 lower half). Stochastic-depth rates from Appendix A.1 (Table 5).

A stem of 4x4 stride-4 conv + LayerNorm ("patchify"); four stages separated by their own
downsampling layers (LayerNorm + 2x2 stride-2 conv); blocks of

    x + drop_path(gamma * Linear(GELU(Linear_4x(LayerNorm(dwconv7x7(x))))))

with layer scale gamma initialised at 1e-6; global average pool, LayerNorm, linear classifier.
The 1x1 convs are ``nn.Linear`` on channels-last tensors (as the paper's code; equivalent).

Stochastic depth follows the paper's code (facebookresearch/ConvNeXt ``models/convnext.py``:
``torch.linspace(0, drop_path_rate, sum(depths))``): block l of L drops with
rate * (l - 1) / (L - 1), per sample, kept branches scaled by 1 / (1 - p) as its timm DropPath
does. Deviations: weights are initialised N(0, 0.02) and
zero biases as in the paper's code (drawn untruncated: its bounds are 100 std away); its
head-init scaling (for fine-tuning) is not applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from convzoo.layers.drop import DropPath, DropPathMode, drop_path_rates
from convzoo.layers.head import LinearHead
from convzoo.layers.helpers import check_probability
from convzoo.layers.norm import LayerNorm2d
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper(
    "A ConvNet for the 2020s", "2201.03545", "Liu, Mao, Wu, Feichtenhofer, Darrell, Xie", 2022
)


@dataclass(frozen=True)
class ConvNeXtConfig:
    depths: tuple[int, ...] = (3, 3, 9, 3)
    widths: tuple[int, ...] = (96, 192, 384, 768)
    kernel_size: int = 7
    mlp_ratio: int = 4
    layer_scale_init: float = 1e-6  # 0 disables layer scale
    norm_eps: float = 1e-6
    drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    drop_path_mode: DropPathMode = "sample"
    num_classes: int = 1000
    in_channels: int = 3


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, cfg: ConvNeXtConfig, drop_path: float) -> None:
        super().__init__()
        k = cfg.kernel_size
        self.dwconv = nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.fc1 = nn.Linear(dim, cfg.mlp_ratio * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(cfg.mlp_ratio * dim, dim)
        self.layer_scale = (
            nn.Parameter(torch.full((dim,), cfg.layer_scale_init))
            if cfg.layer_scale_init > 0
            else None
        )
        self.drop_path = DropPath(drop_path, cfg.drop_path_mode)

    def residual(self, x: Tensor) -> Tensor:
        x = self.dwconv(x).permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C) for the MLP
        x = self.fc2(self.act(self.fc1(self.norm(x))))
        if self.layer_scale is not None:
            x = x * self.layer_scale
        return x.permute(0, 3, 1, 2)  # back to (B, C, H, W)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop_path.add_branch(x, lambda: self.residual(x))


class ConvNeXtStage(nn.Module):
    """Optional downsampling layer (LayerNorm + 2x2 stride-2 conv), then the blocks."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        cfg: ConvNeXtConfig,
        rates: list[float],
        downsample: bool,
    ) -> None:
        super().__init__()
        self.downsample: nn.Module = (
            nn.Sequential(
                LayerNorm2d(in_channels, eps=cfg.norm_eps),
                nn.Conv2d(in_channels, out_channels, 2, stride=2),
            )
            if downsample
            else nn.Identity()
        )
        self.blocks = nn.Sequential(*(ConvNeXtBlock(out_channels, cfg, p) for p in rates))

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


class ConvNeXtHead(LinearHead):
    """Global average pool -> LayerNorm -> dropout -> linear."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float, eps: float) -> None:
        super().__init__(in_features)
        check_probability("drop_rate", drop_rate)
        self.in_features = in_features
        self.norm = nn.LayerNorm(in_features, eps=eps)
        self.drop = nn.Dropout(drop_rate)
        self.reset(num_classes)

    def forward(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.drop(self.norm(x.mean((2, 3))))  # (B, C, H, W) -> (B, C)
        return x if pre_logits else self.fc(x)


class ConvNeXt(ZooModel):
    def __init__(self, cfg: ConvNeXtConfig) -> None:
        if len(cfg.depths) != len(cfg.widths):
            raise ValueError(f"depths {cfg.depths} and widths {cfg.widths} differ in length")
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=cfg.widths[-1],
            min_input_size=4 * 2 ** (len(cfg.depths) - 1),
        )
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, cfg.widths[0], 4, stride=4),
            LayerNorm2d(cfg.widths[0], eps=cfg.norm_eps),
        )
        rates = drop_path_rates(cfg.drop_path_rate, sum(cfg.depths), schedule="(l-1)/(L-1)")
        stages, start, in_ch = [], 0, cfg.widths[0]
        for i, (depth, width) in enumerate(zip(cfg.depths, cfg.widths, strict=True)):
            stage_rates = rates[start : start + depth]
            stages.append(ConvNeXtStage(in_ch, width, cfg, stage_rates, downsample=i > 0))
            start += depth
            in_ch = width
        self.stages = nn.Sequential(*stages)
        self.head = ConvNeXtHead(in_ch, cfg.num_classes, cfg.drop_rate, cfg.norm_eps)
        if next(self.parameters()).is_meta:
            return  # nothing to initialise on the meta device (and init there is slow)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                # The paper's trunc_normal_(std=0.02) truncates at +-2 absolute, i.e. 100 std:
                # the same distribution as a plain normal, which is 5x cheaper to draw.
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)


@dataclass(frozen=True)
class Variant:
    """A ConvNeXt of Table 1: depths B, widths C, the Appendix A.1 drop-path rate; Table 1's
    params (M), FLOPs (G multiply-adds at 224x224) and top-1 (%); our exact parameter count."""

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    drop_path_rate: float
    params_m: float
    macs_g: float
    top1: float
    params: int


# Table 1 / section 3 and Appendix A.1 (ImageNet-1K training; XL's rate is its ImageNet-22K
# pre-training rate). Top-1 on ImageNet-1K at 224 (XL: 22K pre-trained, fine-tuned at 224).
VARIANTS: dict[str, Variant] = {
    "convnext_tiny": Variant(
        depths=(3, 3, 9, 3),
        widths=(96, 192, 384, 768),
        drop_path_rate=0.1,
        params_m=29.0,
        macs_g=4.5,
        top1=82.1,
        params=28_589_128,
    ),
    "convnext_small": Variant(
        depths=(3, 3, 27, 3),
        widths=(96, 192, 384, 768),
        drop_path_rate=0.4,
        params_m=50.0,
        macs_g=8.7,
        top1=83.1,
        params=50_223_688,
    ),
    "convnext_base": Variant(
        depths=(3, 3, 27, 3),
        widths=(128, 256, 512, 1024),
        drop_path_rate=0.5,
        params_m=89.0,
        macs_g=15.4,
        top1=83.8,
        params=88_591_464,
    ),
    "convnext_large": Variant(
        depths=(3, 3, 27, 3),
        widths=(192, 384, 768, 1536),
        drop_path_rate=0.5,
        params_m=198.0,
        macs_g=34.4,
        top1=84.3,
        params=197_767_336,
    ),
    "convnext_xlarge": Variant(
        depths=(3, 3, 27, 3),
        widths=(256, 512, 1024, 2048),
        drop_path_rate=0.2,
        params_m=350.0,
        macs_g=60.9,
        top1=87.0,
        params=350_196_968,
    ),
}
CONFIGS = {
    name: ConvNeXtConfig(depths=v.depths, widths=v.widths, drop_path_rate=v.drop_path_rate)
    for name, v in VARIANTS.items()
}

for _name, _v in VARIANTS.items():
    register_model(
        _name,
        ConvNeXt,
        CONFIGS[_name],
        info=ModelInfo(
            family="convnext",
            paper=PAPER,
            table="Table 1 (section 3 stage widths/depths); Appendix A.1 drop-path rates",
            dataset="imagenet",
            input_size=224,
            num_classes=1000,
            params=_v.params,
            paper_params_m=_v.params_m,
            paper_macs_g=_v.macs_g,
            paper_accuracy=_v.top1,
            notes="Drop-path schedule linspace(0, rate, L) as the reference code. "
            + (
                "Top-1 after ImageNet-22K pre-training (no ImageNet-1K-only result)."
                if _name == "convnext_xlarge"
                else ""
            ),
        ),
        tiny=Tiny(
            overrides={"depths": (1, 1, 1, 1), "widths": (8, 8, 16, 16), "drop_path_rate": 0.0},
            input_size=32,
        ),
    )
