"""torchrun + DistributedDataParallel: process-group setup, model wrapping, metric reduction.

``torchrun --nproc_per_node=N -m convzoo train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; the
backend is NCCL when training on CUDA and gloo on the CPU. Rank 0 alone logs and checkpoints.

Stochastic depth in "batch" mode skips whole blocks, so the set of parameters that get a gradient
changes from step to step. DDP then needs ``find_unused_parameters=True`` (set automatically when
the model has an active batch-mode DropPath), and every rank must drop the *same* blocks or the
ranks would average gradients of different sub-networks: the CPU generator that DropPath draws
from is seeded identically on all ranks (see ``seed_everything``), while the data pipeline uses
its own per-step generators and CUDA ops (dropout) use a per-rank CUDA seed.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op without torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return DistInfo(rank, world, local)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int, rank: int = 0) -> None:
    """Same CPU seed on every rank (batch-mode drop decisions agree); per-rank CUDA seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed + 1_000_003 * rank)


def has_batch_drop_path(model: nn.Module) -> bool:
    return any(
        getattr(m, "mode", None) == "batch" and getattr(m, "p", 0.0) > 0.0
        for m in model.modules()
        if type(m).__name__ == "DropPath"
    )


def wrap_ddp(
    model: nn.Module, info: DistInfo, device: torch.device, sync_bn: bool
) -> nn.parallel.DistributedDataParallel:
    if sync_bn:
        if device.type != "cuda":
            raise ValueError("--sync-bn needs CUDA devices: PyTorch's SyncBatchNorm is GPU-only")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=has_batch_drop_path(model),
    )


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t
