"""FractalNet with drop-path, and Fractal of FractalNet (FoF).

Larsson, Maire & Shakhnarovich, "FractalNet: Ultra-Deep Neural Networks without Residuals",
ICLR 2017, arXiv 1605.07648. Smith & Topin, "Deep Convolutional Neural Network Design Patterns",
arXiv 1611.00847 (the FoF network of its Figure 1b).

Expansion rule (Section 2): f_1(z) = conv(z), f_{C+1}(z) = join(f_C(f_C(z)), conv(z)), join =
element-wise mean. Consecutive joins merge into one, so a block of C columns is a static graph:
column j (0 = shallowest) holds 2^j units, the deepest column 2^(C-1); a join sits after every
second unit of the deepest column and averages every column that ends there. ``conv`` is
conv3x3 -> BatchNorm -> ReLU (no bias). B blocks, 2x2 max pooling after each; the paper moves
each block's pooling before its last join, i.e. every column is pooled, then averaged (as here).
CIFAR configs of Section 4.1: B=5, channels 64-128-256-512-512, C=3 (20 layers) or C=4 (40).
Dropout per block (0, 10, 20, 30, 40 %) is the option ``block_dropout=FRACTAL_DROPOUT``; the paper
does not place it inside the unit, we put it between conv and BatchNorm as the released
FoF.prototxt does.

Drop-path (Section 3.1), on when ``drop_path_rate > 0`` (off by default):

* local: each join drops each of its inputs with probability ``drop_path_rate`` (paper: 0.15),
  keeping one at random when all were dropped; the mean is over the surviving inputs.
* global: one column is picked for the whole network; every join keeps only that column.
* each training mini-batch is global with probability ``global_ratio`` (paper: 50 %), local
  otherwise; the choice is made once per forward pass, never mixed within a batch.
* a dropped path is not computed: the block is evaluated lazily from its output join backwards,
  so a unit runs only when a kept join input needs it.

Eval modes: the full network (mean joins, nothing dropped), or one column only,
``model.set_eval_column(k)`` / ``eval_column=k`` (``model.deepest_column`` gives the paper's
"deepest column" result); ``None`` restores the full network. Training ignores it.

Parameter count: Table 1 prints 38.6M for the 20-layer network, but the architecture described
(and built here) has 33.7M (count the convs: per block C first-in-column convs plus
2^C - 1 - C others). The authors' own generator builds the same 33.7M: gustavla/fractalnet
``generation/fractalnet.py`` (FILTERS 64-128-256-512-512, COLUMNS 3, REDUCTIONS 5, pooling
before the block's last join) with the units of ``generation/globals.crox`` (3x3 conv with bias,
dropout, BatchNorm without a Scale layer, ReLU; an inner-product classifier) has 33,714,314
parameters, ours 33,724,618 (affine BatchNorm and bias-free convs instead). So 38.6M is not the
released network either; we record both, with ``paper_params_tol_m`` covering the gap. The
40-layer row of Table 1 (22.9M) uses a different channel layout that the paper does not spell
out; ``fractalnet40_cifar`` keeps Section 4.1's 64-128-256-512-512 (76.1M), no paper count.

FoF (``fof_cifar``): the expansion rule applied a second time, with whole fractal blocks as the
units. The graph is read off the authors' released FoF.prototxt (github.com/iPhysicist/
CNNDesignPatterns): three macro columns of C=3 fractal blocks; the deepest is four blocks
64-128-256-512, each pooling 2x; the middle one two blocks (-> 128, -> 512) pooling 4x each; the
shallowest one block (-> 512) pooling 16x; macro joins after the deepest column's second block
(2 inputs, 8x8) and at the end (3 inputs, 2x2). Checked layer by layer against FoF.prototxt
(all 49 convs, their inputs and widths, every pooling and join): the conv graph is identical,
38,484,096 conv parameters counting one bias (here: one BatchNorm shift) per output channel, and
the released network totals 38,504,586 with its classifier. The paper text and its Figure 1b
could not be consulted here, and the repository's README gives no parameter count or accuracy,
so none is recorded. Deviations from the prototxt: its dropout ratios are irregular (0 to 0.3,
different within one block) and are not reproduced (none by default); its classifier is a fully
connected layer over the flattened 2x2x512 map, ours is global average pooling + linear (any
input >= 16 px); its convs have biases and its BatchNorm has no affine scale, ours are bias-free
convs with affine BatchNorm (as FractalNet here). Drop-path: local at every join of both levels
(as in the prototxt); global picks one macro column and one inner column (our extension; the
prototxt has local drop-path only). Eval always runs the full network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from convzoo.layers.conv import ConvNormAct
from convzoo.layers.head import ClassifierHead
from convzoo.layers.helpers import check_probability
from convzoo.models.base import ZooModel
from convzoo.registry import ModelInfo, Paper, Tiny, register_model

PAPER = Paper(
    "FractalNet: Ultra-Deep Neural Networks without Residuals",
    "1605.07648",
    "Larsson, Maire, Shakhnarovich",
    2017,
)
FOF_PAPER = Paper(
    "Deep Convolutional Neural Network Design Patterns", "1611.00847", "Smith, Topin", 2016
)

# Section 4.1: "we fix drop rate per block at (0%, 10%, 20%, 30%, 40%)".
FRACTAL_DROPOUT = (0.0, 0.1, 0.2, 0.3, 0.4)


@dataclass(frozen=True)
class DropPlan:
    """How one forward pass treats the joins: ``column`` set = global sampling of that column,
    ``local`` = per-join sampling with ``p``, neither = full network (every input kept)."""

    column: int | None = None
    local: bool = False
    p: float = 0.0


FULL = DropPlan()


def _sample_kept(columns: list[int], p: float) -> list[int]:
    """Local drop-path: drop each input with probability ``p``, keep one if none survived.

    Drawn on the CPU generator (no device sync; reproducible under ``torch.manual_seed``).
    """
    keep = (torch.rand(len(columns), device="cpu") >= p).tolist()
    if not any(keep):
        keep[int(torch.randint(len(columns), (), device="cpu"))] = True
    return [c for c, k in zip(columns, keep, strict=True) if k]


class FractalBlock(nn.Module):
    """One block of ``num_columns`` columns over ``make_unit(column, index)`` modules.

    ``pool`` (optional) is applied to every column before the last join. ``plan`` (set by the
    model before each forward pass) says which join inputs are kept; ``last_kept`` holds, after
    each forward pass, the kept columns of every join position that was evaluated.
    """

    def __init__(
        self,
        num_columns: int,
        make_unit: Callable[[int, int], nn.Module],
        pool: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if num_columns < 1:
            raise ValueError(f"num_columns must be >= 1, got {num_columns}")
        self.num_columns = num_columns
        self.depth = 2 ** (num_columns - 1)  # units in the deepest column
        self.columns = nn.ModuleList(
            nn.ModuleList(make_unit(j, u) for u in range(2**j)) for j in range(num_columns)
        )
        self.pool = pool if pool is not None else nn.Identity()
        self.plan = FULL
        self.last_kept: dict[int, list[int]] = {}

    def _span(self, column: int) -> int:
        # Deepest-column units covered by one unit of ``column``.
        return self.depth >> column

    def forward(self, x: Tensor) -> Tensor:
        plan = self.plan
        cache: dict[int, Tensor] = {0: x}
        kept_log: dict[int, list[int]] = {}

        def value(pos: int) -> Tensor:
            # The tensor at deepest-column position ``pos``: a join, or (odd pos) the deepest
            # column's unit output. Memoized, and only requested for kept inputs.
            if pos in cache:
                return cache[pos]
            ending = [j for j in range(self.num_columns) if pos % self._span(j) == 0]
            if plan.column is not None:
                if plan.column not in ending:
                    raise RuntimeError("global drop-path reached a join off its column")
                kept = [plan.column]
            elif plan.local and len(ending) > 1:
                kept = _sample_kept(ending, plan.p)
            else:
                kept = ending
            kept_log[pos] = kept
            outs = []
            for j in kept:
                span = self._span(j)
                unit = self.columns[j][pos // span - 1]
                inp = value(pos - span)
                out = unit(inp)
                outs.append(self.pool(out) if pos == self.depth else out)
            out = outs[0] if len(outs) == 1 else sum(outs[1:], outs[0]) / len(outs)
            cache[pos] = out
            return out

        out = value(self.depth)
        self.last_kept = kept_log
        return out


def _conv_block(
    num_columns: int, in_ch: int, out_ch: int, pool: nn.Module, drop_rate: float = 0.0
) -> FractalBlock:
    """A block of conv units, conv3x3 -> BN -> ReLU (with ``drop_rate``: conv -> dropout -> BN ->
    ReLU, as FoF.prototxt places it); each column's first unit maps ``in_ch`` to ``out_ch``."""

    def unit(column: int, index: int) -> nn.Module:
        layers = ConvNormAct(in_ch if index == 0 else out_ch, out_ch, 3)
        if drop_rate > 0:
            layers.insert(1, nn.Dropout(drop_rate))
        return layers

    return FractalBlock(num_columns, unit, pool)


@dataclass(frozen=True)
class FractalNetConfig:
    num_columns: int = 3  # C
    widths: tuple[int, ...] = (64, 128, 256, 512, 512)  # one per block; B = len(widths)
    block_dropout: tuple[float, ...] | None = None  # dropout per block; FRACTAL_DROPOUT
    drop_rate: float = 0.0  # dropout before the classifier (not in the paper)
    drop_path_rate: float = 0.0  # local drop probability per join input (paper: 0.15); 0 = off
    global_ratio: float = 0.5  # share of mini-batches that use global sampling
    eval_column: int | None = None  # None: full network in eval; k: column k only
    num_classes: int = 10
    in_channels: int = 3


@dataclass(frozen=True)
class FoFConfig:
    macro_columns: int = 3  # fractal blocks per macro column: 1, 2, 4
    inner_columns: int = 3  # C of every fractal block
    widths: tuple[int, ...] = (64, 128, 256, 512)  # the deepest macro column's blocks
    drop_path_rate: float = 0.0  # local drop probability at every join (prototxt: 0.15)
    global_ratio: float = 0.5
    drop_rate: float = 0.0  # dropout before the classifier
    num_classes: int = 10
    in_channels: int = 3


class _Fractal(ZooModel):
    """What FractalNet and FoF share: no stem, ``stages`` of fractal blocks, a linear head over
    ``widths[-1]`` channels, and one drop-path plan per forward pass (``begin_pass``) shared by
    every join (Section 3.1: never mixed within a batch)."""

    def __init__(
        self, cfg: FractalNetConfig | FoFConfig, stages: nn.Sequential, min_input_size: int
    ) -> None:
        super().__init__(
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            num_features=cfg.widths[-1],
            min_input_size=min_input_size,
        )
        check_probability("drop_path_rate", cfg.drop_path_rate)
        if not 0.0 <= cfg.global_ratio <= 1.0:
            raise ValueError(f"global_ratio must be in [0, 1], got {cfg.global_ratio}")
        self.drop_path_rate = cfg.drop_path_rate
        self.global_ratio = cfg.global_ratio
        self.stem = nn.Identity()
        self.stages = stages
        self.head = ClassifierHead(cfg.widths[-1], cfg.num_classes, drop_rate=cfg.drop_rate)

    def sample_plan(self, num_columns: int) -> DropPlan:
        """Training with drop-path: global (one of ``num_columns``) with probability
        ``global_ratio``, else local; otherwise the full network. One draw per mini-batch."""
        if not self.training or self.drop_path_rate == 0.0:
            return FULL
        if float(torch.rand((), device="cpu")) < self.global_ratio:
            return DropPlan(column=int(torch.randint(num_columns, (), device="cpu")))
        return DropPlan(local=True, p=self.drop_path_rate)


class FractalNet(_Fractal):
    def __init__(self, cfg: FractalNetConfig) -> None:
        drops = cfg.block_dropout or (0.0,) * len(cfg.widths)
        if len(drops) != len(cfg.widths):
            raise ValueError(f"block_dropout needs {len(cfg.widths)} values, got {len(drops)}")
        ins = (cfg.in_channels, *cfg.widths[:-1])
        blocks = (
            _conv_block(cfg.num_columns, in_ch, width, nn.MaxPool2d(2), p)
            for in_ch, width, p in zip(ins, cfg.widths, drops, strict=True)
        )
        super().__init__(cfg, nn.Sequential(*blocks), min_input_size=2 ** len(cfg.widths))
        self.num_columns = cfg.num_columns
        self.set_eval_column(cfg.eval_column)
        self.last_plan = FULL

    @property
    def deepest_column(self) -> int:
        return self.num_columns - 1

    def set_eval_column(self, column: int | None) -> None:
        """Evaluate only ``column`` (0 = shallowest) in eval mode; ``None``: full network."""
        if column is not None and not 0 <= column < self.num_columns:
            raise ValueError(f"eval column must be in [0, {self.num_columns}), got {column}")
        self.eval_column = column

    def begin_pass(self) -> None:
        """This forward pass's joins: sampled in training, ``eval_column`` (or all) in eval."""
        if self.training:
            plan = self.sample_plan(self.num_columns)
        else:
            plan = DropPlan(column=self.eval_column)
        self.last_plan = plan
        for block in self.stages:
            block.plan = plan


class FoF(_Fractal):
    def __init__(self, cfg: FoFConfig) -> None:
        depth = 2 ** (cfg.macro_columns - 1)
        if len(cfg.widths) != depth:
            raise ValueError(f"widths needs {depth} values (2^(macro_columns-1)), got {cfg.widths}")

        def macro_unit(j: int, u: int) -> nn.Module:
            # Macro column j's unit u stands for ``span`` deepest-column blocks: it maps their
            # input width to their output width and pools as much as they do together.
            span = depth >> j
            start, end = u * span, (u + 1) * span
            in_ch = cfg.in_channels if start == 0 else cfg.widths[start - 1]
            return _conv_block(cfg.inner_columns, in_ch, cfg.widths[end - 1], nn.MaxPool2d(2**span))

        # One stage: the macro columns join only at 8x8 and at the end, and the shallowest one
        # spans the whole network, so the fractal of fractals cannot be cut into a sequence of
        # per-resolution stages.
        stages = nn.Sequential(FractalBlock(cfg.macro_columns, macro_unit))
        super().__init__(cfg, stages, min_input_size=2**depth)
        self.macro_columns = cfg.macro_columns
        self.inner_columns = cfg.inner_columns
        self.last_plan = (FULL, FULL)

    def begin_pass(self) -> None:
        """One plan for the macro joins and one for the joins inside every macro unit."""
        macro = self.sample_plan(self.macro_columns)
        if macro.column is not None:  # global: one inner column too, the same in every block
            inner = DropPlan(column=int(torch.randint(self.inner_columns, (), device="cpu")))
        else:
            inner = macro
        self.last_plan = (macro, inner)
        macro_block = self.stages[0]
        macro_block.plan = macro
        for column in macro_block.columns:
            for block in column:
                block.plan = inner


@dataclass(frozen=True)
class Row:  # a registered FractalNet: config, our exact count, the paper's numbers
    config: FractalNetConfig
    params: int
    table: str
    notes: str
    paper_params_m: float | None = None
    paper_params_tol_m: float | None = None
    paper_accuracy: float | None = None


FRACTALNETS = {
    "fractalnet20_cifar": Row(
        FractalNetConfig(num_columns=3), params=33_724_618,
        table="Section 4.1; Table 1 (20 layers)", paper_params_m=38.6, paper_params_tol_m=4.95,
        paper_accuracy=95.40,
        notes="Table 1 prints 38.6M, but the described architecture (B=5, C=3, 64-128-256-512-512, "
        "3x3 conv-BN-ReLU units) has 33.7M, and so does the authors' generator (gustavla/fractalnet "
        "generation/fractalnet.py: 33,714,314): the paper's count is not reproducible, hence the "
        "4.95M tolerance. Accuracy: C10+ with drop-path and dropout (4.60% error). Train with "
        "drop_path_rate=0.15, block_dropout=FRACTAL_DROPOUT."),
    "fractalnet40_cifar": Row(
        FractalNetConfig(num_columns=4), params=76_106_634,
        table="Section 4.1 (C=4); Table 1 lists a 40-layer net",
        notes="Table 1's 40-layer net (22.9M) uses a channel layout the paper does not give; "
        "this build keeps 64-128-256-512-512, so no paper count is compared."),
}  # fmt: skip

for _name, _row in FRACTALNETS.items():
    register_model(
        _name,
        FractalNet,
        _row.config,
        info=ModelInfo(
            family="fractalnet",
            paper=PAPER,
            table=_row.table,
            dataset="cifar",
            input_size=32,
            num_classes=10,
            params=_row.params,
            paper_params_m=_row.paper_params_m,
            paper_params_tol_m=_row.paper_params_tol_m,
            paper_accuracy=_row.paper_accuracy,
            notes=_row.notes,
        ),
        tiny=Tiny(overrides={"widths": (4, 8), "drop_path_rate": 0.0}, input_size=8),
    )

register_model(
    "fof_cifar",
    FoF,
    FoFConfig(),
    info=ModelInfo(
        family="fractalnet",
        paper=FOF_PAPER,
        table="Figure 1b; the authors' released FoF.prototxt",
        dataset="cifar",
        input_size=32,
        num_classes=10,
        params=38_504_010,
        notes="Conv graph identical to the authors' FoF.prototxt (iPhysicist/CNNDesignPatterns): "
        "38,484,096 conv parameters; the released net has 38,504,586 with its FC over the 2x2x512 "
        "map, ours 38,504,010 with GAP + linear and affine BatchNorm. No paper count is known; "
        "the prototxt's irregular dropout is not reproduced.",
    ),
    tiny=Tiny(overrides={"widths": (4, 4, 8, 8)}, input_size=16),
)
