"""Optimizers (SGD Nesterov, AdamW), learning-rate schedules with warmup, and the EMA of weights.

Weight decay skips normalization weights and every bias (any parameter with fewer than two
dimensions): decaying a BatchNorm scale towards zero only fights the next layer's scale, and the
ConvNeXt/timm recipes exclude them the same way.

Schedules are per optimizer step (``LambdaLR`` stepped every update), with the epoch boundaries
of the papers converted to steps, so a run resumed mid-epoch continues on the same curve.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from convzoo.train.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def peak_lr(cfg: TrainConfig, world_size: int) -> float:
    if cfg.lr_base_batch is None:
        return cfg.lr
    return cfg.lr * cfg.batch_size * world_size * cfg.accum_steps / cfg.lr_base_batch


def build_optimizer(
    model: nn.Module, cfg: TrainConfig, world_size: int = 1
) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    lr = peak_lr(cfg, world_size)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0)  # fmt: skip
    return torch.optim.AdamW(groups, lr=lr, betas=cfg.betas)


def lr_factor(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The multiplier of the peak lr at optimizer step ``s`` (0-based)."""
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    milestones = [m * steps_per_epoch for m in cfg.milestones]

    def factor(step: int) -> float:
        if step < warmup:
            return cfg.warmup_lr + (1.0 - cfg.warmup_lr) * step / warmup
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "step":
            return cfg.gamma ** sum(step >= m for m in milestones)
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        if cfg.schedule == "cosine":
            return cfg.min_lr + (1.0 - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
        # One-cycle (Smith & Topin 2017) after warmup: linear ramp down to min_lr; the warmup is
        # the rising half (30% of the run when warmup_epochs is 0).
        if warmup == 0:
            rise = max(1, int(0.3 * total))
            if step < rise:
                return 0.04 + 0.96 * step / rise
            t = (step - rise) / max(1, total - rise)
        return cfg.min_lr + (1.0 - cfg.min_lr) * (1.0 - t)

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    steps_per_epoch: int,
    world_size: int = 1,
    start_step: int = 0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """The per-step schedule of ``cfg``, positioned after ``start_step`` optimizer steps.

    The schedule is a function of (cfg, step) only, so a resume rebuilds it from the config it
    resumes with (a new ``--lr``, ``--epochs`` or ``--batch-size`` applies) instead of loading
    the scheduler's saved state.
    """
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"] = peak_lr(cfg, world_size)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor(cfg, steps_per_epoch), last_epoch=start_step - 1
    )


def apply_hyperparameters(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> None:
    """Set ``cfg``'s weight decay and momentum / betas on a (resumed) optimizer's groups; the
    learning rate is the scheduler's (``build_scheduler``)."""
    decay_group = optimizer.param_groups[0]  # param_groups: [decayed, not decayed]
    decay_group["weight_decay"] = cfg.weight_decay
    for group in optimizer.param_groups:
        if isinstance(optimizer, torch.optim.SGD):
            group["momentum"] = cfg.momentum
            group["nesterov"] = cfg.nesterov and cfg.momentum > 0
        else:
            group["betas"] = cfg.betas


class ModelEma(nn.Module):
    """Exponential moving average of weights; buffers (BatchNorm statistics) are copied.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so a short run
    is not dominated by the initial weights (as in TensorFlow's ExponentialMovingAverage).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.num_updates: torch.Tensor
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        n = float(self.num_updates)
        d = min(self.decay, (1.0 + n) / (10.0 + n))
        ema_p: list[torch.Tensor] = list(self.module.parameters())
        src_p: list[torch.Tensor] = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_p, src_p, 1.0 - d)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module(x)
        return out
