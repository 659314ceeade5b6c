"""FBNet's supernet: a fixed macro-architecture whose every searched layer mixes Table 2's blocks.

Wu et al., "FBNet: Hardware-Aware Efficient ConvNet Design via Differentiable Neural Architecture
Search", CVPR 2019, arXiv 1812.03443, section 3.

Layer l holds one module per candidate (Table 2, built by ``convzoo.models.fbnet.build_block``,
the very function that builds the searched networks, so an emitted spec has exactly the chosen
candidates' parameters). Its output is ``sum_i m_{l,i} * block_{l,i}(x)`` with the mask
``m_l = GumbelSoftmax(theta_l, temperature)`` (Eq. 6-7): soft during the search, one-hot as the
temperature falls. ``sample_spec`` returns the most likely architecture (argmax theta per layer)
in the block-spec format of ``convzoo.models.fbnet``.

Two macro-architectures: ``PAPER_SUPERNET`` is Table 1 (224x224 input, 22 searched layers);
``CIFAR_SUPERNET`` keeps Table 1's widths with fewer layers per stage (12) and a stride-1 stem so
that 32x32 input ends at 4x4, for searching on CIFAR-10 (our choice; the paper searches on
ImageNet-100 only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convzoo.layers.conv import ConvNormAct
from convzoo.layers.head import ClassifierHead
from convzoo.layers.helpers import make_divisible
from convzoo.models.fbnet import CANDIDATES, MACRO, ArchSpec, BlockSpec, MacroStage, build_block


@dataclass(frozen=True)
class SupernetConfig:
    macro: tuple[MacroStage, ...]
    stem_channels: int = 16
    stem_stride: int = 2
    head_channels: int = 1984
    input_size: int = 224
    num_classes: int = 1000
    in_channels: int = 3
    width_multiplier: float = 1.0  # scales every width (rounded to 8), to search cheaply
    candidates: tuple[str, ...] = CANDIDATES

    def __post_init__(self) -> None:
        unknown = set(self.candidates) - set(CANDIDATES)
        if unknown or not self.candidates:
            raise ValueError(
                f"candidates must be a non-empty subset of {CANDIDATES}, got {unknown}"
            )

    def width(self, channels: int) -> int:
        return make_divisible(channels * self.width_multiplier, 8)

    @property
    def layers(self) -> list[tuple[int, int]]:
        """(out_channels, stride) of each searched layer, in order."""
        return [
            (self.width(m.out_channels), m.stride if i == 0 else 1)
            for m in self.macro
            for i in range(m.layers)
        ]


PAPER_SUPERNET = SupernetConfig(macro=MACRO)
CIFAR_SUPERNET = SupernetConfig(
    macro=(
        MacroStage(out_channels=16, layers=1, stride=1),
        MacroStage(out_channels=24, layers=2, stride=1),
        MacroStage(out_channels=32, layers=2, stride=2),
        MacroStage(out_channels=64, layers=2, stride=2),
        MacroStage(out_channels=112, layers=2, stride=1),
        MacroStage(out_channels=184, layers=2, stride=2),
        MacroStage(out_channels=352, layers=1, stride=1),
    ),
    stem_stride=1,
    head_channels=1024,
    input_size=32,
    num_classes=10,
)
SUPERNETS = {"imagenet": PAPER_SUPERNET, "cifar": CIFAR_SUPERNET}


class MixedLayer(nn.Module):
    """One searched layer: every candidate block, mixed by a weight vector."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, candidates: tuple[str, ...]
    ):
        super().__init__()
        self.in_channels = in_channels
        self.specs = [BlockSpec.from_candidate(c, out_channels, stride) for c in candidates]
        self.ops = nn.ModuleList(build_block(s, in_channels) for s in self.specs)

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        # weights: (K,), one per candidate, summing to 1.
        return sum(w * op(x) for w, op in zip(weights, self.ops))


class FBNetSupernet(nn.Module):
    def __init__(self, cfg: SupernetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        stem = cfg.width(cfg.stem_channels)
        self.stem = ConvNormAct(cfg.in_channels, stem, 3, cfg.stem_stride)
        layers, in_ch = [], stem
        for out_ch, stride in cfg.layers:
            layers.append(MixedLayer(in_ch, out_ch, stride, cfg.candidates))
            in_ch = out_ch
        self.layers = nn.ModuleList(layers)
        self.conv_head = ConvNormAct(in_ch, cfg.head_channels, 1)
        self.head = ClassifierHead(cfg.head_channels, cfg.num_classes)
        # theta: (L, K) architecture logits; zeros = uniform over candidates (section 3.3).
        self.theta = nn.Parameter(torch.zeros(len(layers), len(cfg.candidates)))
        self.temperature = 5.0

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n != "theta"]

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.theta]

    def mixing_weights(self) -> Tensor:
        """(L, K) Gumbel-softmax masks at the current temperature; rows sum to 1."""
        return F.gumbel_softmax(self.theta, tau=self.temperature, hard=False, dim=-1)

    def forward(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        weights = self.mixing_weights() if weights is None else weights
        x = self.stem(x)
        for layer, w in zip(self.layers, weights):
            x = layer(x, w)
        return self.head(self.conv_head(x))

    def layer_input_shapes(self) -> list[tuple[int, int, int]]:
        """(channels, height, width) entering each searched layer at ``cfg.input_size``."""
        size = -(-self.cfg.input_size // self.cfg.stem_stride)
        shapes = []
        for layer, (_, stride) in zip(self.layers, self.cfg.layers):
            shapes.append((layer.in_channels, size, size))
            size = -(-size // stride)
        return shapes

    def sample_spec(self) -> ArchSpec:
        """The most likely architecture: argmax theta at every layer, grouped into stages."""
        choice = self.theta.argmax(dim=-1).tolist()
        specs = [layer.specs[k] for layer, k in zip(self.layers, choice)]
        stages, i = [], 0
        for m in self.cfg.macro:
            stages.append(tuple(specs[i : i + m.layers]))
            i += m.layers
        return tuple(stages)

    def model_args(self, spec: ArchSpec) -> dict:
        """``create_model("fbnet_c", **model_args)`` overrides that build ``spec`` on this macro."""
        return {
            "spec": spec,
            "stem_channels": self.cfg.width(self.cfg.stem_channels),
            "stem_stride": self.cfg.stem_stride,
            "head_channels": self.cfg.head_channels,
            "num_classes": self.cfg.num_classes,
        }
