"""A training run's state (``Run``), how it is set up from a ``TrainConfig`` and how a checkpoint
restores it.

Resume applies the config it is given: the learning-rate schedule is rebuilt from (config,
optimizer step), so ``--lr``, ``--epochs`` or ``--batch-size`` change the rest of the run as they
say; weight decay, momentum and betas are set on the restored optimizer. What cannot change
without making the checkpoint another run's is refused by name (``FIXED_ON_RESUME``), and what
decides the images of each batch may change only at an epoch boundary (``FIXED_MID_EPOCH``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from convzoo.cliutil import UsageError
from convzoo.data.build import Splits, load_splits
from convzoo.data.datasets import ArrayDataset, BadImagePolicy, DataError, channel_stats
from convzoo.data.device_loader import DeviceAugment, DeviceLoader
from convzoo.registry import create_model, model_info
from convzoo.train import distributed as du
from convzoo.train.checkpoint import CheckpointError, set_rng_state
from convzoo.train.config import TrainConfig
from convzoo.train.optim import ModelEma, apply_hyperparameters, build_optimizer, build_scheduler

# Changing these would make the checkpoint another run's.
FIXED_ON_RESUME = {
    "model": "the checkpoint holds another model's weights",
    "model_args": "the checkpoint holds weights of another shape",
    "optimizer": "the checkpoint holds another optimizer's state",
    "val_fraction": "the validation split would overlap images already trained on",
    "split_seed": "the validation split would overlap images already trained on",
}
# These decide which images make up each batch of an epoch.
FIXED_MID_EPOCH = ("batch_size", "accum_steps", "max_train_samples", "seed", "data", "loader")
# Where and how fast the run goes, not what it computes: not reported as changes.
NOT_A_CHANGE = ("output", "progress", "plots", "device", "workers", "compile", "download")


class Loader(Protocol):
    """What the loop needs of a loader (``DeviceLoader``, ``WorkerLoader``)."""

    @property
    def num_samples(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...

    def iterate(self, start_step: int = 0) -> Iterator[tuple[Tensor, Tensor]]: ...

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]: ...

    def __len__(self) -> int: ...


@dataclass
class EpochStats:
    """Running sums of the epoch in progress (checkpointed, so a resumed epoch reports whole)."""

    loss_sum: float = 0.0
    correct: float = 0.0
    seen: float = 0.0


@dataclass
class Run:
    cfg: TrainConfig
    out: Path
    device: torch.device
    info: du.DistInfo
    splits: Splits
    image_size: int
    mean: list[float]
    std: list[float]
    train_loader: Loader
    val_loader: Loader
    model: nn.Module  # the module whose state is saved
    train_model: nn.Module  # what the step calls: the model, maybe under DDP and torch.compile
    ddp: DistributedDataParallel | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    ema: ModelEma | None
    scaler: torch.amp.GradScaler | None
    steps_per_epoch: int
    epoch: int = 0  # the epoch in progress, 0-based
    batch: int = 0  # the next batch of that epoch
    step: int = 0  # optimizer steps so far
    stats: EpochStats = field(default_factory=EpochStats)
    last_saved: tuple[Path, int, int] | None = None  # (checkpoint, epoch, step) written last

    @property
    def classes(self) -> list[str]:
        return self.splits.classes


def build_model(cfg: TrainConfig, num_classes: int, *, fresh: bool = True) -> nn.Module:
    """The run's model; ``fresh`` (not a resume) starts it from ``cfg.pretrained`` weights."""
    extra = dict(cfg.model_args)
    if fresh and cfg.pretrained is not None:
        from convzoo.pretrained import parse_pretrained

        extra["pretrained"] = parse_pretrained(cfg.pretrained)
    for key in ("drop_rate", "drop_path_rate", "drop_path_mode"):
        if getattr(cfg, key) is not None:
            extra[key] = getattr(cfg, key)
    return create_model(cfg.model, num_classes=num_classes, **extra)


def image_size_of(cfg: TrainConfig) -> int:
    return cfg.image_size or model_info(cfg.model).input_size


def build_loaders(
    cfg: TrainConfig, splits: Splits, device: torch.device, info: du.DistInfo
) -> tuple[Loader, Loader, list[float], list[float]]:
    """(train loader, val loader, mean, std); the device path when the data is in memory."""
    train = splits.train
    if cfg.max_train_samples is not None and cfg.max_train_samples < len(train):
        g = torch.Generator().manual_seed(cfg.split_seed)
        keep = torch.randperm(len(train), generator=g)[: cfg.max_train_samples].sort().values
        train = train.subset(keep)
    common: dict[str, Any] = dict(seed=cfg.seed, rank=info.rank, world_size=info.world_size,
                                  channels_last=cfg.channels_last, device=device)  # fmt: skip
    aug = DeviceAugment(crop_padding=cfg.crop_padding, hflip=cfg.hflip, cutout=cfg.cutout,
                        random_erasing=cfg.random_erasing, randaugment_n=cfg.randaugment_n,
                        randaugment_m=cfg.randaugment_m)  # fmt: skip
    if isinstance(train, ArrayDataset):
        assert isinstance(splits.val, ArrayDataset)
        mean, std = channel_stats(train.images)
        tl = DeviceLoader(train, cfg.batch_size, mean=mean, std=std, augment=aug, shuffle=True,
                          drop_last=info.enabled, **common)  # fmt: skip
        return tl, DeviceLoader(splits.val, cfg.batch_size, mean=mean, std=std, **common), mean, std
    # The worker path needs torchvision (seconds to import); the device path does not.
    from convzoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD, WorkerLoader

    assert not isinstance(splits.val, ArrayDataset)
    size = image_size_of(cfg)
    wl: dict[str, Any] = dict(workers=cfg.workers, on_bad_image=cfg.on_bad_image, size=size,
                              mean=IMAGENET_MEAN, std=IMAGENET_STD, **common)  # fmt: skip
    tl_w = WorkerLoader(train, cfg.batch_size, augment=aug, shuffle=True, drop_last=info.enabled,
                        **wl)  # fmt: skip
    return tl_w, WorkerLoader(splits.val, cfg.batch_size, **wl), IMAGENET_MEAN, IMAGENET_STD


def run_splits(cfg: TrainConfig, image_size: int, *, data: str | None = None,
               download: bool = False, split: str = "train") -> Splits:  # fmt: skip
    """The run's splits (``data`` replaces the run's data, e.g. when it moved)."""
    return load_splits(cfg.data if data is None else data, image_size=image_size,
                       download=download, val_fraction=cfg.val_fraction,
                       split_seed=cfg.split_seed, loader=cfg.loader, split=split,
                       on_bad_image=cast(BadImagePolicy, cfg.on_bad_image))  # fmt: skip


def setup(cfg: TrainConfig, device: torch.device, info: du.DistInfo, *, fresh: bool = True) -> Run:
    """Data, loaders, model, optimizer and schedule of a run at step 0 (``fresh=False``: about to
    be restored from a checkpoint, so no pretrained weights are fetched)."""
    size = image_size_of(cfg)
    if cfg.download and info.enabled and not info.is_main:
        du.barrier()  # rank 0 downloads (below) before the others read
    splits = run_splits(cfg, size, download=cfg.download and info.is_main)
    if cfg.download and info.enabled and info.is_main:
        du.barrier()
    train_loader, val_loader, mean, std = build_loaders(cfg, splits, device, info)
    model = build_model(cfg, len(splits.classes), fresh=fresh).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    steps_per_epoch = -(-len(train_loader) // cfg.accum_steps)
    optimizer = build_optimizer(model, cfg, info.world_size)
    ddp = du.wrap_ddp(model, info, device, cfg.sync_bn) if info.enabled else None
    train_model: nn.Module = ddp if ddp is not None else model
    if cfg.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]
    return Run(
        cfg=cfg, out=Path(cfg.output), device=device, info=info, splits=splits, image_size=size,
        mean=mean, std=std, train_loader=train_loader, val_loader=val_loader, model=model,
        train_model=train_model, ddp=ddp, optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg, steps_per_epoch, info.world_size),
        ema=ModelEma(model, cfg.ema_decay) if cfg.ema_decay is not None else None,
        scaler=torch.amp.GradScaler(device.type) if cfg.amp == "fp16" else None,
        steps_per_epoch=steps_per_epoch,
    )  # fmt: skip


def restore(run: Run, ckpt: dict[str, Any], path: Path) -> dict[str, tuple[Any, Any]]:
    """Continue ``run`` from checkpoint ``ckpt`` (read from ``path``); returns the config fields
    that changed, as (before, now)."""
    changed = config_changes(ckpt["config"], run.cfg)
    check_changes(run, ckpt, changed, path)
    load_weights(run.model, ckpt["model"], path)
    run.optimizer.load_state_dict(ckpt["optimizer"])
    apply_hyperparameters(run.optimizer, run.cfg)
    if run.ema is not None and ckpt.get("ema") is not None:
        run.ema.load_state_dict(ckpt["ema"])
    if run.scaler is not None and ckpt.get("scaler") is not None:
        run.scaler.load_state_dict(ckpt["scaler"])
    run.epoch, run.batch, run.step = ckpt["epoch"], ckpt["batch"], ckpt["step"]
    if run.batch == 0:  # at an epoch boundary the step count follows the current batch size
        run.step = run.epoch * run.steps_per_epoch
    run.scheduler = build_scheduler(run.optimizer, run.cfg, run.steps_per_epoch,
                                    run.info.world_size, start_step=run.step)  # fmt: skip
    run.stats = EpochStats(**ckpt["epoch_stats"])
    run.last_saved = (path, run.epoch, ckpt["step"])
    set_rng_state(ckpt["rng"])
    return changed


def config_changes(before: dict[str, Any], cfg: TrainConfig) -> dict[str, tuple[Any, Any]]:
    now = TrainConfig.from_dict(before).to_dict()  # the same normal form (tuples) on both sides
    return {
        k: (now[k], v)
        for k, v in cfg.to_dict().items()
        if k not in NOT_A_CHANGE and now.get(k) != v
    }


def refuse_fixed_changes(changed: dict[str, tuple[Any, Any]], path: Path) -> None:
    for key, (old, new) in changed.items():
        if key in FIXED_ON_RESUME:
            raise UsageError(f"cannot resume {path} with {key} {new!r}: the run has {old!r} and "
                             f"{FIXED_ON_RESUME[key]}; start a new run instead")  # fmt: skip


def check_changes(
    run: Run, ckpt: dict[str, Any], changed: dict[str, tuple[Any, Any]], path: Path
) -> None:
    """Refuse, by name, a change a resume cannot apply (see the module docstring)."""
    refuse_fixed_changes(changed, path)
    if ckpt["classes"] != run.classes:
        raise DataError(f"cannot resume {path} on this data: its classes {run.classes[:10]} "
                        f"differ from the run's {ckpt['classes'][:10]}")  # fmt: skip
    mid_epoch = [k for k in FIXED_MID_EPOCH if k in changed]
    if ckpt.get("world_size", 1) != run.info.world_size:
        mid_epoch.append("world size")
    if ckpt["batch"] != 0 and mid_epoch:
        raise UsageError(
            f"cannot change {', '.join(mid_epoch)} in the middle of an epoch ({path} stopped at "
            f"epoch {ckpt['epoch'] + 1}, batch {ckpt['batch'] + 1}): resume without the change, "
            f"or from a checkpoint at an epoch end"
        )


def load_weights(model: nn.Module, state: dict[str, Tensor], path: str | Path) -> None:
    """``model.load_state_dict(state)``, or one line naming what does not fit (a checkpoint of
    another configuration, or of a convzoo whose model has changed since)."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        mine = model.state_dict()
        missing = [k for k in mine if k not in state]
        extra = [k for k in state if k not in mine]
        shapes = [k for k in mine if k in state and mine[k].shape != state[k].shape]
        example = (missing or extra or shapes or ["?"])[0]
        raise CheckpointError(
            f"{path} does not fit this model: {len(missing)} missing, {len(extra)} unexpected, "
            f"{len(shapes)} differently shaped tensors (e.g. {example})"
        ) from err


def nonfinite_tensor(run: Run) -> str | None:
    """The name of a weight or buffer (of the model or its EMA) that is NaN or inf, or None."""
    parts = [("", run.model)] + ([("ema.", run.ema.module)] if run.ema is not None else [])
    for prefix, module in parts:
        for name, t in module.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return prefix + name
    return None


def autocast(amp: str | None, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if amp is None:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)
