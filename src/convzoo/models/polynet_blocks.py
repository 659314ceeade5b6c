"""PolyNet building blocks: Inception residual units and the PolyInception modules of Figure 4.

Zhang, Li, Loy & Lin, "PolyNet: A Pursuit of Structural Diversity in Very Deep Networks",
CVPR 2017, arXiv 1611.05725. See ``convzoo.models.polynet`` for the networks.

A PolyInception module is a polynomial of Inception units F, G, H applied to x (Figure 4):

* ``poly`` order 2: x + F(x) + F(F(x)), order 3 adds F(F(F(x))): one unit, weights shared;
* ``mpoly`` order 2: x + F(x) + G(F(x)), order 3 adds H(G(F(x))): distinct units, chained;
* ``way`` order 2: x + F(x) + G(x), order 3 adds H(x): distinct units, in parallel.

Every non-identity path is multiplied by the module's residual scale, the sum goes through a
ReLU, and a unit's output (BatchNorm, no activation) passes a ReLU before the next unit of a
chain reads it, as in the released Very Deep PolyNet. Sharing in ``poly``: the branch convs of F
are always shared; ``share_norm`` / ``share_projection`` decide whether each application also
reuses F's BatchNorms and its final 1x1 projection. Fully shared, a poly-2 module has exactly the
parameters of one F (the paper's definition), but one BatchNorm then sees x, F(x), F(F(x)) in
each training step and its running statistics fit none of them, so eval mode is wrong; the
released Very Deep PolyNet shares only the convs (one BatchNorm set and one projection per
application), which ``polynet`` and ``polynet_cifar`` use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from convzoo.layers.conv import ConvNormAct
from convzoo.layers.drop import DropPath


class Conv(NamedTuple):
    """One conv of a branch: ``kernel`` (an int, or (height, width)) to ``out_channels``.
    Stride-1 convs keep the size, stride-2 convs are "valid". A plain tuple
    ``(kernel, out_channels[, stride])`` is read the same way."""

    kernel: int | tuple[int, int]
    out_channels: int
    stride: int = 1


# Parallel branches, each a sequence of convs.
Branches = tuple[tuple[Conv, ...], ...]
PolyKind = Literal["poly", "mpoly", "way"]
POLY_KINDS: tuple[str, ...] = ("poly", "mpoly", "way")


def _unpack(
    spec: Conv | tuple[int | tuple[int, int], ...],
) -> tuple[tuple[int, int], int, int, tuple[int, int]]:
    kernel, out_ch, stride = Conv(*spec)
    ks = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    padding = (0, 0) if stride > 1 else ((ks[0] - 1) // 2, (ks[1] - 1) // 2)
    return ks, out_ch, stride, padding


class SharedConvNorm(nn.Module):
    """conv -> BatchNorm -> ReLU whose conv serves ``num_norms`` applications, each with its own
    BatchNorm (statistics of F(x) and F(F(x)) differ); ``num_norms=1`` is a plain unit."""

    def __init__(self, in_channels: int, spec: Conv, num_norms: int = 1) -> None:
        super().__init__()
        ks, out_ch, stride, padding = _unpack(spec)
        self.out_channels = out_ch
        self.conv = nn.Conv2d(in_channels, out_ch, ks, stride=stride, padding=padding, bias=False)
        self.norms = nn.ModuleList(nn.BatchNorm2d(out_ch) for _ in range(num_norms))
        self.act = nn.ReLU()

    def forward(self, x: Tensor, use: int = 0) -> Tensor:
        return self.act(self.norms[use % len(self.norms)](self.conv(x)))


class InceptionUnit(nn.Module):
    """Inception-ResNet residual function: parallel conv branches, concatenated, then a 1x1
    projection back to ``channels`` with BatchNorm and no activation (the residual to add).

    ``num_uses`` > 1 makes one unit serve several applications (a ``poly`` module):
    ``forward(x, use)`` picks that application's BatchNorms / projection unless shared.
    """

    def __init__(
        self,
        channels: int,
        branches: Branches,
        num_uses: int = 1,
        *,
        share_norm: bool = True,
        share_projection: bool = True,
    ) -> None:
        super().__init__()
        norms = 1 if share_norm else num_uses
        self.branches = nn.ModuleList()
        concat = 0
        for branch in branches:
            layers, in_ch = [], channels
            for spec in branch:
                layers.append(SharedConvNorm(in_ch, spec, norms))
                in_ch = layers[-1].out_channels
            self.branches.append(nn.ModuleList(layers))
            concat += in_ch
        projections = 1 if share_projection else num_uses
        self.projections = nn.ModuleList(
            ConvNormAct(concat, channels, 1, act_layer=None) for _ in range(projections)
        )

    def forward(self, x: Tensor, use: int = 0) -> Tensor:
        outs = []
        for branch in self.branches:
            y = x
            for layer in branch:
                y = layer(y, use)
            outs.append(y)
        # Channel concat of the branches: (N, sum of branch widths, H, W).
        return self.projections[use % len(self.projections)](torch.cat(outs, 1))


class PolyInception(nn.Module):
    """x + scale * (sum of the ``order`` paths of ``kind``), then ReLU (see the module doc).

    ``drop_path``: each path is dropped for the whole mini-batch with this probability (kept
    paths scaled by 1/(1-p)); paths nobody needs are not computed.
    """

    def __init__(
        self,
        channels: int,
        branches: Branches,
        kind: PolyKind,
        order: int,
        scale: float = 1.0,
        *,
        share_norm: bool = True,
        share_projection: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in POLY_KINDS:
            raise ValueError(f"PolyInception kind must be one of {POLY_KINDS}, got {kind!r}")
        if order < 1:
            raise ValueError(f"PolyInception order must be >= 1, got {order}")
        self.kind, self.order, self.scale = kind, order, scale
        if kind == "poly":
            units = [
                InceptionUnit(
                    channels,
                    branches,
                    order,
                    share_norm=share_norm,
                    share_projection=share_projection,
                )
            ]
        else:
            units = [InceptionUnit(channels, branches) for _ in range(order)]
        self.units = nn.ModuleList(units)
        self.drop_path = DropPath(drop_path, mode="batch")
        self.act = nn.ReLU()

    def _branch(self, i: int, x: Tensor) -> Tensor:
        # The i-th application in a chain (poly: the shared unit's i-th use).
        return self.units[0](x, i) if self.kind == "poly" else self.units[i](x)

    def forward(self, x: Tensor) -> Tensor:
        keep = [not self.drop_path.sample_drop() for _ in range(self.order)]
        factor = self.scale / (1.0 - self.drop_path.p) if self.drop_path.active else self.scale
        out = x
        if self.kind == "way":
            for i in range(self.order):
                if keep[i]:
                    out = out + factor * self._branch(i, x)
        else:
            # Chains: path i needs applications 0..i, so stop after the last kept path.
            needed = max((i for i in range(self.order) if keep[i]), default=-1) + 1
            h = x
            for i in range(needed):
                h = self._branch(i, h if i == 0 else self.act(h))
                if keep[i]:
                    out = out + factor * h
        return self.act(out)


class InceptionReduction(nn.Module):
    """Stride-2 reduction: conv branches ending in a "valid" stride-2 conv, and a 3x3/2 max
    pool of the input, concatenated (Inception-v4 Reduction-A / Reduction-B)."""

    def __init__(self, in_channels: int, branches: Branches) -> None:
        super().__init__()
        self.branches = nn.ModuleList()
        self.out_channels = in_channels
        for branch in branches:
            layers, in_ch = [], in_channels
            strides = [_unpack(spec)[2] for spec in branch]
            if strides[-1:] != [2] or any(st != 1 for st in strides[:-1]):
                # Otherwise the branch would not match the 3x3/2 pool's output size.
                raise ValueError(f"a reduction branch must end in its only stride-2 conv: {branch}")
            for spec in branch:
                ks, out_ch, stride, padding = _unpack(spec)
                layers.append(ConvNormAct(in_ch, out_ch, ks, stride, padding=padding))
                in_ch = out_ch
            self.branches.append(nn.Sequential(*layers))
            self.out_channels += in_ch
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        # Channel concat: (N, in + sum of branch widths, H', W').
        return torch.cat([b(x) for b in self.branches] + [self.pool(x)], 1)


class InceptionV4Stem(nn.Sequential):
    """The Inception-v4 stem (Szegedy et al. 2016, Figure 3) that PolyNet uses: 3 -> 384
    channels, 299/331 px -> 35/37 px (three stride-2 steps, the first convs "valid")."""

    out_channels = 384

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__(
            ConvNormAct(in_channels, 32, 3, 2, padding=0),
            ConvNormAct(32, 32, 3, padding=0),
            ConvNormAct(32, 64, 3),
            _Concat([nn.MaxPool2d(3, stride=2)], [ConvNormAct(64, 96, 3, 2, padding=0)]),
            _Concat(
                [ConvNormAct(160, 64, 1), ConvNormAct(64, 96, 3, padding=0)],
                [
                    ConvNormAct(160, 64, 1),
                    ConvNormAct(64, 64, (7, 1)),
                    ConvNormAct(64, 64, (1, 7)),
                    ConvNormAct(64, 96, 3, padding=0),
                ],
            ),
            _Concat([nn.MaxPool2d(3, stride=2)], [ConvNormAct(192, 192, 3, 2, padding=0)]),
        )

    @staticmethod
    def output_size(size: int) -> int:
        size = (size - 3) // 2 + 1 - 2  # 3x3/2 valid, 3x3 valid, 3x3 same
        size = (size - 3) // 2 + 1 - 2  # reduction 1, then the 3x3 valid convs of both branches
        return (size - 3) // 2 + 1


class _Concat(nn.Module):
    """Runs each layer list on the same input and concatenates the results on channels."""

    def __init__(self, *paths: Sequence[nn.Module]) -> None:
        super().__init__()
        self.paths = nn.ModuleList(nn.Sequential(*p) for p in paths)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([p(x) for p in self.paths], 1)  # (N, sum of path channels, H, W)
