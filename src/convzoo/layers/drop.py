"""Stochastic depth (Huang et al. 2016, arXiv 1603.09382) as one mechanism for every family.

Two modes:

* ``"batch"`` -- the paper's: one Bernoulli draw per block per mini-batch. ``add_branch`` does
  not run a dropped branch at all, which is where the paper's training speed-up comes from.
* ``"sample"`` -- per-sample masks (the "drop path" of FractalNet-era code and timm).

Kept branches are scaled by ``1 / (1 - p)`` during training, so the eval network (nothing dropped,
no scaling) computes the training-time expectation; the paper scales by the survival probability
at test time instead, which is the same function up to that constant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

DropPathMode = Literal["batch", "sample"]
DROP_PATH_MODES: tuple[str, ...] = ("batch", "sample")
DropPathSchedule = Literal["l/L", "(l-1)/L", "(l-1)/(L-1)"]


def drop_path_rates(
    drop_path_rate: float, num_blocks: int, *, schedule: DropPathSchedule = "l/L"
) -> list[float]:
    """Linear decay: block l of L (l = 1..L) drops with ``drop_path_rate`` times ``schedule``.

    ``"l/L"``: Huang et al., survival p_l = 1 - l/L (1 - p_L), i.e. drop = l/L * drop_path_rate.
    ``"(l-1)/L"``: the EfficientNet and NFNet references (block index from 0, over L).
    ``"(l-1)/(L-1)"``: ``linspace(0, drop_path_rate, L)``, the ConvNeXt reference.
    """
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
    if num_blocks < 0:
        raise ValueError(f"num_blocks must be >= 0, got {num_blocks}")
    if schedule == "l/L":
        return [drop_path_rate * (i + 1) / num_blocks for i in range(num_blocks)]
    if schedule == "(l-1)/L":
        return [drop_path_rate * i / num_blocks for i in range(num_blocks)]
    if schedule == "(l-1)/(L-1)":
        return [drop_path_rate * i / max(num_blocks - 1, 1) for i in range(num_blocks)]
    raise ValueError(f"schedule must be one of 'l/L', '(l-1)/L', '(l-1)/(L-1)', got {schedule!r}")


class DropPath(nn.Module):
    """Drops a residual branch with probability ``p`` during training."""

    def __init__(self, p: float = 0.0, mode: DropPathMode = "sample") -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropPath probability must be in [0, 1), got {p}")
        if mode not in DROP_PATH_MODES:
            raise ValueError(f"drop_path_mode must be one of {DROP_PATH_MODES}, got {mode!r}")
        self.p = p
        self.mode = mode

    @property
    def active(self) -> bool:
        return self.training and self.p > 0.0

    def sample_drop(self) -> bool:
        """Batch mode: draw once for this mini-batch. True means "skip the branch".

        Drawn from the CPU generator so that it never synchronizes with an accelerator, and is
        reproducible under ``torch.manual_seed``.
        """
        if not self.active or self.mode != "batch":
            return False
        return bool(torch.rand((), device="cpu") < self.p)

    def add_branch(self, shortcut: Tensor, branch: Callable[[], Tensor]) -> Tensor:
        """``shortcut + drop(branch())``; in batch mode a dropped ``branch`` is never called."""
        if self.sample_drop():
            return shortcut
        return shortcut + self._scale(branch())

    def forward(self, x: Tensor) -> Tensor:
        """Drop an already computed branch (no compute is saved this way)."""
        if self.sample_drop():  # batch mode in training only
            return torch.zeros_like(x)
        return self._scale(x)

    def _scale(self, x: Tensor) -> Tensor:
        if not self.active:
            return x
        keep = 1.0 - self.p
        if self.mode == "batch":
            return x / keep
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p:.4f}, mode={self.mode}"
