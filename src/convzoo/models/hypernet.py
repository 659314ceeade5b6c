"""Static hypernetworks: a small network generates the 3x3 kernels of a wide residual network.

Ha, Dai & Le, "HyperNetworks", ICLR 2017, arXiv 1609.09106. Section 3.1 and Appendix A.2
(static hypernetwork for deep convolutional networks); numbers from the paper's CIFAR-10
classification table (rows WRN 40-1/40-2 and Hyper WRN 40-1/40-2, "ours").

Every generated kernel is a grid of basic blocks of ``block_size`` x ``block_size`` channels
(16 x 16 in the paper) and ``kernel_size`` x ``kernel_size`` taps. Each block j of each layer has
its own learned embedding z_j (``z_dim`` = 64); one hypernetwork, shared by all generated layers,
maps it to the block with the paper's two-layer linear generator:

    a_i = W_i z_j + B_i             (i = 1..N_in, each a_i of size d = z_dim)
    K_j^i = <W_out, a_i> + B_out    (N_out x f x f per input channel i)

``HyperConv2d`` is that layer: it holds its embeddings, takes the shared ``KernelGenerator``, and
builds its full kernel by concatenating the generated blocks; any conv whose channel counts are
multiples of the block size can be generated. ``hyper_wrn40_2_cifar`` is the pre-activation
WRN-40-2 whose residual-block 3x3 convs are all generated; the stem conv (3 input channels), the
1x1 projection shortcuts, BatchNorm and the classifier are ordinary layers (Appendix A.2).
``hyper=False`` builds the same network with ordinary convs (WRN-40-2, 2.2M parameters).

Deviations / notes: the paper gives no initialisation for the generator; we initialise W_out so
that a block generated from an N(0, 1) embedding has the He-normal scale of a conv with
``block_size`` input channels, and scale each layer's embeddings by sqrt(block_size / in_channels)
so that its whole kernel has the He-normal scale of its own fan-in. The CIFAR-10 table lists 0.097M parameters for Hyper
WRN 40-1 and 0.148M for Hyper WRN 40-2 (against 0.563M / 2.236M for the plain WRNs); our builds
have 0.0978M and 0.1556M, and the plain WRNs 0.5639M and 2.2435M: the excess over the paper
is the same with and without the hypernetwork (~0.8k and ~7.5k), so it lies in the ordinary
WRN layers (the paper does not itemise them), not in the generator or the embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convzoo.layers.drop import DropPathMode, drop_path_rates
from convzoo.layers.head import ClassifierHead
from convzoo.layers.preact import NormAct, PreActBlock, conv3x3
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper("HyperNetworks", "1609.09106", "Ha, Dai, Le", 2016)


class KernelGenerator(nn.Module):
    """The paper's two-layer linear hypernetwork: z (z_dim) -> one (N_out, N_in, f, f) block."""

    def __init__(self, z_dim: int = 64, block_size: int = 16, kernel_size: int = 3) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.block_size = block_size
        self.kernel_size = kernel_size
        n, f = block_size, kernel_size
        self.w_in = nn.Parameter(torch.empty(n * z_dim, z_dim))  # the N_in maps W_i, stacked
        self.b_in = nn.Parameter(torch.zeros(n * z_dim))
        self.w_out = nn.Parameter(torch.empty(n * f * f, z_dim))  # W_out
        self.b_out = nn.Parameter(torch.zeros(n * f * f))
        nn.init.normal_(self.w_in, std=1.0 / math.sqrt(z_dim))
        # Embeddings start ~N(0, 1), so a_i ~ N(0, 1); pick W_out so kernel entries have the
        # He-normal std sqrt(2 / (N_in f^2)) of an ordinary conv.
        nn.init.normal_(self.w_out, std=math.sqrt(2.0 / (n * f * f)) / math.sqrt(z_dim))

    def forward(self, z: Tensor) -> Tensor:
        """``z``: (num_blocks, z_dim) -> kernels (num_blocks, N_out, N_in, f, f)."""
        n, f = self.block_size, self.kernel_size
        a = F.linear(z, self.w_in, self.b_in).view(-1, n, self.z_dim)  # (blocks, N_in, d)
        k = F.linear(a, self.w_out, self.b_out)  # (blocks, N_in, N_out * f * f)
        k = k.view(-1, n, n, f, f)  # (blocks, N_in, N_out, f, f)
        return k.transpose(1, 2)  # (blocks, N_out, N_in, f, f)


class HyperConv2d(nn.Module):
    """A conv whose kernel is generated from per-block embeddings by a shared generator."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        generator: KernelGenerator,
        stride: int = 1,
        padding: int | None = None,
    ) -> None:
        super().__init__()
        b = generator.block_size
        if in_channels % b or out_channels % b:
            raise ValueError(
                f"HyperConv2d channels must be multiples of the block size {b}, "
                f"got {in_channels} -> {out_channels}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride = stride
        self.padding = generator.kernel_size // 2 if padding is None else padding
        self.generator = generator  # shared: the same module object in every layer
        # The generator makes He-normal kernels for N_in = b input channels; the kernel is linear
        # in z, so z's scale sqrt(b / in_channels) gives He-normal kernels for this layer's fan-in.
        z = torch.randn((out_channels // b) * (in_channels // b), generator.z_dim)
        self.z = nn.Parameter(z * math.sqrt(b / in_channels))

    def weight(self) -> Tensor:
        b, f = self.generator.block_size, self.generator.kernel_size
        ob, ib = self.out_channels // b, self.in_channels // b
        blocks = self.generator(self.z)  # (ob * ib, b, b, f, f)
        # Tile the grid of blocks: (ob, ib, b, b, f, f) -> (ob, b, ib, b, f, f) -> kernel.
        w = blocks.view(ob, ib, b, b, f, f).permute(0, 2, 1, 3, 4, 5)
        return w.reshape(self.out_channels, self.in_channels, f, f)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight(), stride=self.stride, padding=self.padding)


@dataclass(frozen=True)
class HyperWRNConfig:
    depth: int = 40
    widen_factor: int = 2
    hyper: bool = True  # False: the same WRN with ordinary convs
    z_dim: int = 64
    block_size: int = 16
    base_width: int = 16
    drop_rate: float = 0.0  # dropout before the classifier
    drop_path_rate: float = 0.0  # stochastic depth (not in the paper; off)
    drop_path_mode: DropPathMode = "batch"
    num_classes: int = 10
    in_channels: int = 3


class HyperWRN(ZooModel):
    """A pre-activation WRN (``convzoo.layers.preact``) whose block 3x3 convs are generated."""

    def __init__(self, cfg: HyperWRNConfig) -> None:
        if (cfg.depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4, got {cfg.depth}")
        n = (cfg.depth - 4) // 6
        widths = [cfg.base_width * (2**i) * cfg.widen_factor for i in range(3)]
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=widths[-1],
            min_input_size=4,
        )
        self.generator = KernelGenerator(cfg.z_dim, cfg.block_size, 3) if cfg.hyper else None

        def conv(i: int, o: int, stride: int) -> nn.Module:
            if self.generator is not None:
                return HyperConv2d(i, o, self.generator, stride=stride)
            return conv3x3(i, o, stride)

        self.stem = nn.Conv2d(cfg.in_channels, cfg.base_width, 3, padding=1, bias=False)
        rates = iter(drop_path_rates(cfg.drop_path_rate, 3 * n))
        stages, in_ch = [], cfg.base_width
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if i and j == 0 else 1
                drop = {"drop_path_rate": next(rates), "drop_path_mode": cfg.drop_path_mode}
                blocks.append(PreActBlock(in_ch, w, stride, conv3x3=conv, **drop))
                in_ch = w
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.neck = NormAct(in_ch)
        self.head = ClassifierHead(in_ch, cfg.num_classes, drop_rate=cfg.drop_rate)


@dataclass(frozen=True)
class TableRow:
    """A Hyper WRN row of the CIFAR-10 table: the WRN-40 width it generates, the paper's params
    (M) and accuracy (%), our exact count, and the tolerance the notes explain."""

    widen_factor: int
    paper_params_m: float
    paper_params_tol_m: float
    paper_accuracy: float
    params: int
    notes: str


TABLE: dict[str, TableRow] = {
    "hyper_wrn40_1_cifar": TableRow(
        widen_factor=1, paper_params_m=0.097, paper_params_tol_m=0.001, paper_accuracy=91.98,
        params=97_770,
        notes="Paper: 0.097M (WRN 40-1: 0.563M); ours 0.0978M (plain: 0.5639M), the same "
        "~0.8k excess in both, so it lies in the WRN skeleton, not the hypernetwork."),
    "hyper_wrn40_2_cifar": TableRow(
        widen_factor=2, paper_params_m=0.148, paper_params_tol_m=0.008, paper_accuracy=92.77,
        params=155_626,
        notes="Paper: 0.148M (WRN 40-2: 2.236M); ours 0.1556M (plain: 2.2435M), the same "
        "~7.5k excess in both, so it lies in the WRN skeleton, not the hypernetwork."),
}  # fmt: skip

for _name, _row in TABLE.items():
    register_model(
        _name,
        HyperWRN,
        HyperWRNConfig(widen_factor=_row.widen_factor),
        info=ModelInfo(
            family="hypernet",
            paper=PAPER,
            table=f"CIFAR-10 classification table (Hyper Residual Network 40-{_row.widen_factor})",
            dataset="cifar",
            input_size=32,
            num_classes=10,
            params=_row.params,
            paper_params_m=_row.paper_params_m,
            paper_params_tol_m=_row.paper_params_tol_m,
            paper_accuracy=_row.paper_accuracy,
            notes=_row.notes,
        ),
        tiny=Tiny(
            overrides={"depth": 10, "block_size": 8, "base_width": 8, "z_dim": 8}, input_size=8
        ),
    )
