"""Densely Connected Convolutional Networks.

Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional Networks", CVPR 2017,
arXiv 1608.06993.

Each layer of a dense block reads the concatenation of all earlier feature maps of the block and
adds ``growth_rate`` (k) new ones: BN-ReLU-conv3x3, or with a bottleneck (the "B" of DenseNet-BC)
BN-ReLU-conv1x1(``bn_size`` * k)-BN-ReLU-conv3x3. Transitions between blocks are BN-ReLU-conv1x1-
avgpool2x2; the conv keeps floor(``compression`` * m) of m channels (theta, the "C" of BC).
CIFAR configs: section 3 "Implementation Details" and Table 2 (three blocks of (L - 4) / 3 layers,
or (L - 4) / 6 with bottlenecks; a 3x3 stem of 16 or 2k channels). ImageNet configs: Table 1
(7x7/2 conv of 2k channels + 3x3/2 max pool, four blocks); DenseNet-161 uses k = 48 and a 96-channel
stem as in the authors' released models.

``memory_efficient=True`` recomputes each layer's concatenation + BN + ReLU + first conv in the
backward pass (``torch.utils.checkpoint``) instead of storing it: the memory of a block then grows
linearly, not quadratically, with its depth (Pleiss et al. 2017, arXiv 1707.06990). Outputs,
gradients and BN running statistics are identical to the default path.

Deviations: ``block_dropout`` (dropout after every conv of a layer and of a transition, the paper's
setting for CIFAR without augmentation, section 4.2) is 0 by default; torchvision applies dropout
(its ``drop_rate``) after the 3x3 conv only, so trained-with-dropout behaviour differs, eval is the
same. Convs are initialized as torchvision's DenseNet does (He normal over fan_in); the authors'
Torch code uses fb.resnet.torch's fan_out, which leaves an untrained net in eval mode with outputs
of 1e5 and more (see ``init_weights``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from convzoo.layers.conv import ActLayer, NormLayer
from convzoo.layers.head import ClassifierHead
from convzoo.layers.helpers import check_probability
from convzoo.layers.init import init_weights
from convzoo.layers.preact import NormAct
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper("Densely Connected Convolutional Networks", "1608.06993", "Huang et al.", 2017)


@dataclass(frozen=True)
class DenseNetConfig:
    growth_rate: int = 32  # k
    block_config: tuple[int, ...] = (6, 12, 24, 16)  # layers per dense block
    num_init_features: int = 64  # stem width
    bottleneck: bool = True  # BN-ReLU-conv1x1 before each 3x3 conv (DenseNet-B)
    bn_size: int = 4  # bottleneck width in multiples of k
    compression: float = 0.5  # theta: transitions keep floor(theta * m) channels
    stem: str = "imagenet"  # "imagenet": 7x7/2 conv-BN-ReLU + 3x3/2 max pool; "cifar": 3x3 conv
    block_dropout: float = 0.0  # after every conv of a layer and of a transition (section 4.2)
    drop_rate: float = 0.0  # before the classifier (not in the paper)
    memory_efficient: bool = False
    norm_layer: NormLayer = nn.BatchNorm2d
    act_layer: ActLayer = nn.ReLU
    num_classes: int = 1000
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {self.stem!r}")
        if not 0.0 < self.compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1], got {self.compression}")
        if not self.block_config or min(self.block_config) < 1:
            raise ValueError(f"every dense block needs a layer, got {self.block_config}")
        check_probability("block_dropout", self.block_dropout)


class DenseLayer(nn.Module):
    """``conv1`` reads the concatenated input (a 1x1 bottleneck in DenseNet-B, else the 3x3)."""

    def __init__(self, in_channels: int, cfg: DenseNetConfig) -> None:
        super().__init__()
        k = cfg.growth_rate
        first_out = cfg.bn_size * k if cfg.bottleneck else k
        self.norm1 = cfg.norm_layer(in_channels)
        self.act1 = cfg.act_layer()
        kernel = 1 if cfg.bottleneck else 3
        self.conv1 = nn.Conv2d(in_channels, first_out, kernel, padding=kernel // 2, bias=False)
        self.drop1 = nn.Dropout(cfg.block_dropout)
        self.bottleneck = cfg.bottleneck
        if cfg.bottleneck:
            self.norm2 = cfg.norm_layer(first_out)
            self.act2 = cfg.act_layer()
            self.conv2 = nn.Conv2d(first_out, k, 3, padding=1, bias=False)
            self.drop2 = nn.Dropout(cfg.block_dropout)
        self.memory_efficient = cfg.memory_efficient

    def _first(self, *features: Tensor) -> Tensor:
        x = torch.cat(features, 1)  # (B, sum of channels, H, W): the quadratic-memory tensor
        return self.drop1(self.conv1(self.act1(self.norm1(x))))

    def _first_checkpointed(self, features: list[Tensor]) -> Tensor:
        calls = 0

        def run(*feats: Tensor) -> Tensor:
            nonlocal calls
            calls += 1
            if calls == 1:
                return self._first(*feats)
            # The backward pass re-runs BN in training mode; its batch statistics are those of
            # the first run, but the running averages must not be updated a second time.
            saved = [b.clone() for b in self.norm1.buffers()]
            try:
                return self._first(*feats)
            finally:
                with torch.no_grad():
                    for buf, old in zip(self.norm1.buffers(), saved):
                        buf.copy_(old)

        # Dropout's RNG state is restored for the recomputation (preserve_rng_state default).
        return checkpoint(run, *features, use_reentrant=False)

    def forward(self, features: list[Tensor]) -> Tensor:
        needs_grad = torch.is_grad_enabled() and any(f.requires_grad for f in features)
        if self.memory_efficient and needs_grad:
            out = self._first_checkpointed(features)
        else:
            out = self._first(*features)
        if self.bottleneck:
            out = self.drop2(self.conv2(self.act2(self.norm2(out))))
        return out


class DenseBlock(nn.ModuleList):
    def __init__(self, num_layers: int, in_channels: int, cfg: DenseNetConfig) -> None:
        super().__init__(
            DenseLayer(in_channels + i * cfg.growth_rate, cfg) for i in range(num_layers)
        )
        self.out_channels = in_channels + num_layers * cfg.growth_rate

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self:
            features.append(layer(features))
        return torch.cat(features, 1)  # (B, in + num_layers * k, H, W)


def transition(in_channels: int, out_channels: int, cfg: DenseNetConfig) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            norm=cfg.norm_layer(in_channels),
            act=cfg.act_layer(),
            conv=nn.Conv2d(in_channels, out_channels, 1, bias=False),
            drop=nn.Dropout(cfg.block_dropout),
            pool=nn.AvgPool2d(2, stride=2),
        )
    )


class DenseNet(ZooModel):
    """stem -> stages (stage i > 0 opens with a transition, then a dense block) -> BN-ReLU (neck)
    -> head."""

    def __init__(self, cfg: DenseNetConfig) -> None:
        imagenet = cfg.stem == "imagenet"
        channels = cfg.num_init_features
        stages: list[nn.Module] = []
        for i, num_layers in enumerate(cfg.block_config):
            parts: OrderedDict[str, nn.Module] = OrderedDict()
            if i > 0:
                out = math.floor(cfg.compression * channels)
                parts["transition"] = transition(channels, out, cfg)
                channels = out
            parts["block"] = block = DenseBlock(num_layers, channels, cfg)
            channels = block.out_channels
            stages.append(nn.Sequential(parts))
        # Each transition halves the size; the ImageNet stem divides it by 4. Average pooling has
        # no padding, so smaller input would leave a stage with no pixels.
        total_stride = 2 ** (len(cfg.block_config) - 1) * (4 if imagenet else 1)
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=channels,
            min_input_size=total_stride,
        )
        if imagenet:
            self.stem = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(cfg.in_channels, cfg.num_init_features, 7, 2, 3, bias=False),
                    norm=cfg.norm_layer(cfg.num_init_features),
                    act=cfg.act_layer(),
                    pool=nn.MaxPool2d(3, stride=2, padding=1),
                )
            )
        else:
            # A bare conv: the first dense layer's BN-ReLU follows it.
            self.stem = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(cfg.in_channels, cfg.num_init_features, 3, 1, 1, bias=False)
                )
            )
        self.stages = nn.Sequential(*stages)
        self.neck = NormAct(channels, cfg.norm_layer, cfg.act_layer)
        self.head = ClassifierHead(channels, cfg.num_classes, drop_rate=cfg.drop_rate)
        # torchvision's init (fan_in): a 1x1 bottleneck reads up to ~2000 channels and writes 128,
        # so fan_out would grow the untrained eval activations by that ratio at every layer.
        init_weights(self, mode="fan_in")


def _cifar(depth: int, k: int, bc: bool) -> DenseNetConfig:
    n = (depth - 4) // (6 if bc else 3)
    return DenseNetConfig(
        growth_rate=k,
        block_config=(n, n, n),
        num_init_features=2 * k if bc else 16,
        bottleneck=bc,
        compression=0.5 if bc else 1.0,
        stem="cifar",
        num_classes=10,
    )


@dataclass(frozen=True)
class Row:
    """A row of the paper's table: its numbers (top-1 error in %) and our exact parameter count."""

    config: DenseNetConfig
    params: int
    paper_error: float | None
    paper_params_m: float | None = None


# Table 2: params (M) and C10+ test error (%) (standard augmentation; no dropout).
CIFAR_DENSENETS = {
    "densenet40_k12_cifar": Row(_cifar(40, 12, bc=False), params=1_019_722, paper_error=5.24,
                                paper_params_m=1.0),
    "densenet_bc100_k12_cifar": Row(_cifar(100, 12, bc=True), params=769_162, paper_error=4.51,
                                    paper_params_m=0.8),
    "densenet_bc250_k24_cifar": Row(_cifar(250, 24, bc=True), params=15_324_406,
                                    paper_error=3.62, paper_params_m=15.3),
    "densenet_bc190_k40_cifar": Row(_cifar(190, 40, bc=True), params=25_624_430,
                                    paper_error=3.46, paper_params_m=25.6),
}  # fmt: skip

for _name, _row in CIFAR_DENSENETS.items():
    register_model(
        _name,
        DenseNet,
        _row.config,
        info=ModelInfo(
            family="densenet",
            paper=PAPER,
            table="Section 3 (implementation details); Table 2 (C10+)",
            dataset="cifar",
            input_size=32,
            num_classes=10,
            params=_row.params,
            paper_params_m=_row.paper_params_m,
            paper_accuracy=round(100 - _row.paper_error, 2),
            notes="Paper accuracy is C10+ (standard augmentation); block_dropout=0.2 is the "
            "paper's setting without augmentation.",
        ),
        tiny=Tiny(
            overrides={"growth_rate": 4, "block_config": (2, 2, 2), "num_init_features": 8},
            input_size=16,
        ),
    )


def _imagenet(k: int, blocks: tuple[int, ...], stem: int) -> DenseNetConfig:
    return DenseNetConfig(growth_rate=k, block_config=blocks, num_init_features=stem)


# Table 1 (architectures) and Table 3 (single-crop top-1 error, %); DenseNet-161 (k=48) is the
# authors' released model, not in Table 3.
IMAGENET_DENSENETS = {
    "densenet121": Row(_imagenet(32, (6, 12, 24, 16), 64), params=7_978_856, paper_error=25.02),
    "densenet169": Row(_imagenet(32, (6, 12, 32, 32), 64), params=14_149_480, paper_error=23.80),
    "densenet201": Row(_imagenet(32, (6, 12, 48, 32), 64), params=20_013_928, paper_error=22.58),
    "densenet161": Row(_imagenet(48, (6, 12, 36, 24), 96), params=28_681_000, paper_error=None),
}

for _name, _row in IMAGENET_DENSENETS.items():
    register_model(
        _name,
        DenseNet,
        _row.config,
        info=ModelInfo(
            family="densenet",
            paper=PAPER,
            table="Table 1; Table 3 (single-crop top-1 error)",
            dataset="imagenet",
            input_size=224,
            num_classes=1000,
            params=_row.params,
            paper_accuracy=None if _row.paper_error is None else round(100 - _row.paper_error, 2),
            # The paper gives DenseNet-121's cost only graphically (Figure 3, about 2.9 GFLOPs
            # meaning multiply-adds); our exact count, 2.83G, equals torchvision's.
            paper_macs_g=2.9 if _name == "densenet121" else None,
            paper_macs_tol_g=0.1 if _name == "densenet121" else None,
        ),
        tiny=Tiny(
            overrides={"growth_rate": 4, "block_config": (1, 2, 1, 1), "num_init_features": 8},
            input_size=32,
        ),
    )

__all__ = ["DenseLayer", "DenseNet", "DenseNetConfig"]
