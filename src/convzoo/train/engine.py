"""The training loop: ``train(cfg)`` runs a whole (resumable) run; ``evaluate`` scores a model.

One step: a micro-batch through the model under optional autocast, backward (without DDP
all-reduce until the last micro-batch of an accumulation group), then gradient clipping / AGC,
the optimizer and scheduler step, and the EMA update. The loss is checked for NaN/inf before any
update, so the weights on disk after a divergence are the last good ones.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from convzoo.cliutil import resolve_device
from convzoo.data.augment import mixup_cutmix, soft_targets
from convzoo.data.build import Splits, load_splits
from convzoo.data.datasets import ArrayDataset, channel_stats
from convzoo.data.device_loader import DeviceAugment, DeviceLoader, step_generator
from convzoo.registry import create_model, model_info
from convzoo.train import distributed as du
from convzoo.train.checkpoint import (
    find_resume,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from convzoo.train.config import TrainConfig
from convzoo.train.metrics import MetricsLog, plot_curves
from convzoo.train.optim import ModelEma, build_optimizer, build_scheduler


class TrainingDiverged(RuntimeError):
    pass


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    extra = dict(cfg.model_args)
    for key in ("drop_rate", "drop_path_rate", "drop_path_mode"):
        if getattr(cfg, key) is not None:
            extra[key] = getattr(cfg, key)
    return create_model(cfg.model, num_classes=num_classes, **extra)


def image_size_of(cfg: TrainConfig) -> int:
    return cfg.image_size or model_info(cfg.model).input_size


def build_loaders(
    cfg: TrainConfig, splits: Splits, device: torch.device, info: du.DistInfo
) -> tuple[Any, Any, list[float], list[float]]:
    """(train loader, val loader, mean, std); the device path when the data is in memory."""
    train = splits.train
    if cfg.max_train_samples is not None and cfg.max_train_samples < len(train):
        g = torch.Generator().manual_seed(cfg.split_seed)
        train = train.subset(
            torch.randperm(len(train), generator=g)[: cfg.max_train_samples].sort().values
        )
    common = dict(seed=cfg.seed, rank=info.rank, world_size=info.world_size,
                  channels_last=cfg.channels_last, device=device)  # fmt: skip
    if isinstance(train, ArrayDataset):
        mean, std = channel_stats(train.images)
        aug = DeviceAugment(crop_padding=cfg.crop_padding, hflip=cfg.hflip, cutout=cfg.cutout,
                            random_erasing=cfg.random_erasing, randaugment_n=cfg.randaugment_n,
                            randaugment_m=cfg.randaugment_m)  # fmt: skip
        tl = DeviceLoader(train, cfg.batch_size, mean=mean, std=std, augment=aug, shuffle=True,
                          drop_last=info.enabled, **common)  # fmt: skip
        vl = DeviceLoader(splits.val, cfg.batch_size, mean=mean, std=std, **common)
        return tl, vl, mean, std
    # The worker path needs torchvision (seconds to import); the device path does not.
    from convzoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD, WorkerLoader, build_transform

    mean, std = IMAGENET_MEAN, IMAGENET_STD
    size = image_size_of(cfg)
    t_train = build_transform(size, True, mean, std, crop_padding=cfg.crop_padding, hflip=cfg.hflip,
                              randaugment_n=cfg.randaugment_n, randaugment_m=cfg.randaugment_m,
                              random_erasing=cfg.random_erasing)  # fmt: skip
    t_val = build_transform(size, False, mean, std)
    wl = dict(workers=cfg.workers, on_bad_image=cfg.on_bad_image, **common)
    tl = WorkerLoader(train, cfg.batch_size, t_train, shuffle=True, drop_last=info.enabled, **wl)
    return tl, WorkerLoader(splits.val, cfg.batch_size, t_val, **wl), mean, std


def _autocast(amp: str | None, device: torch.device):
    if amp is None:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    num_classes: int,
    device: torch.device,
    *,
    amp: str | None = None,
    info: du.DistInfo | None = None,
) -> dict[str, Any]:
    """Loss, top-1 and top-5 accuracy (%), per-class accuracy and the confusion matrix."""
    info = info or du.DistInfo()
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top5 = torch.zeros((), dtype=torch.float64, device=device)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    ctx = _autocast(amp, device)
    for x, y in loader:
        if len(y) == 0:
            continue
        with ctx:
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        k = min(5, num_classes)
        top5 += (logits.topk(k, dim=1).indices == y[:, None]).any(dim=1).sum()
        confusion += torch.bincount(y * num_classes + logits.argmax(1),
                                    minlength=num_classes**2).view(num_classes, num_classes)  # fmt: skip
    for t in (loss_sum, top5, confusion):
        du.all_reduce_sum(t, info)
    model.train(was_training)
    n = int(confusion.sum())
    confusion = confusion.cpu()
    per_class = (confusion.diag().double() / confusion.sum(1).clamp_min(1).double() * 100).tolist()
    return {
        "loss": float(loss_sum) / max(n, 1),
        "acc": float(confusion.diag().sum()) / max(n, 1) * 100,
        "top5": float(top5) / max(n, 1) * 100,
        "per_class": per_class,
        "confusion": confusion,
        "n": n,
    }


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DDP


def _state(run: dict[str, Any], epoch: int, batch: int, rng: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": _unwrap(run["model"]).state_dict(),
        "optimizer": run["optimizer"].state_dict(),
        "scheduler": run["scheduler"].state_dict(),
        "ema": run["ema"].state_dict() if run["ema"] is not None else None,
        "scaler": run["scaler"].state_dict() if run["scaler"] is not None else None,
        "epoch": epoch,  # the epoch in progress (0-based)
        "batch": batch,  # the next batch of that epoch
        "step": run["step"],  # optimizer steps so far
        "epoch_stats": dict(run["epoch_stats"]),
        "rng": rng,
        "config": run["cfg"].to_dict(),
        "classes": run["classes"],
        "mean": run["mean"],
        "std": run["std"],
        "image_size": run["image_size"],
    }


def train(cfg: TrainConfig, resume: str | Path | bool = False) -> dict[str, Any]:
    """Run (or resume) a training run; returns the final validation metrics.

    ``resume=True`` resumes from ``cfg.output``; a path resumes from that file or run directory.
    """
    device = resolve_device(cfg.device)
    info = du.init_distributed(device.type)
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    du.seed_everything(cfg.seed, info.rank)
    out = Path(cfg.output)

    ckpt = None
    if resume:
        path = Path(resume) if not isinstance(resume, bool) else out
        path = find_resume(path) if path.is_dir() else path
        if path is None:
            raise FileNotFoundError(f"nothing to resume in {out}: no last.pt or prev.pt")
        ckpt = load_checkpoint(path)

    size = image_size_of(cfg)
    if cfg.download and info.enabled and not info.is_main:
        du.barrier()  # rank 0 downloads (below) before the others read
    splits = load_splits(cfg.data, image_size=size, download=cfg.download and info.is_main,
                         val_fraction=cfg.val_fraction, split_seed=cfg.split_seed,
                         on_bad_image=cfg.on_bad_image, loader=cfg.loader)  # fmt: skip
    if cfg.download and info.enabled and info.is_main:
        du.barrier()
    classes = splits.classes
    train_loader, val_loader, mean, std = build_loaders(cfg, splits, device, info)
    model = build_model(cfg, len(classes)).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    steps_per_epoch = -(-len(train_loader) // cfg.accum_steps)
    optimizer = build_optimizer(model, cfg, info.world_size)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
    ema = ModelEma(model, cfg.ema_decay) if cfg.ema_decay is not None else None
    scaler = torch.amp.GradScaler(device.type) if cfg.amp == "fp16" else None
    run: dict[str, Any] = dict(model=model, optimizer=optimizer, scheduler=scheduler, ema=ema,
                               scaler=scaler, step=0, epoch_stats={}, cfg=cfg, classes=classes,
                               mean=mean, std=std, image_size=size)  # fmt: skip
    start_epoch, start_batch = 0, 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if ema is not None and ckpt["ema"] is not None:
            ema.load_state_dict(ckpt["ema"])
        if scaler is not None and ckpt["scaler"] is not None:
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, start_batch, run["step"] = ckpt["epoch"], ckpt["batch"], ckpt["step"]
        run["epoch_stats"] = dict(ckpt["epoch_stats"])
        set_rng_state(ckpt["rng"])
    train_model: nn.Module = model
    if info.enabled:
        train_model = du.wrap_ddp(model, info, device, cfg.sync_bn)
    if cfg.compile:
        train_model = torch.compile(train_model)

    log = MetricsLog(out, resume_step=run["step"] if ckpt else None) if info.is_main else None
    if info.is_main:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        n_skip = len(splits.skipped)
        print(f"convzoo train {cfg.model}: {splits.source}; {len(classes)} classes, "
              f"{train_loader.num_samples} "
              f"train / {len(splits.val)} val images"
              + (f"; skipped {n_skip} unreadable images" if n_skip else "")
              + f"; device {device}, world size {info.world_size}")  # fmt: skip
    final: dict[str, Any] = {}
    if start_epoch >= cfg.epochs and (out / "final.json").is_file():
        # Resuming a finished run: nothing to train (pass a larger --epochs to continue it).
        final = json.loads((out / "final.json").read_text())
        if info.is_main:
            print(f"{out} already finished {start_epoch} epochs of {cfg.epochs}")
    for epoch in range(start_epoch, cfg.epochs):
        train_loader.set_epoch(epoch)
        t0 = time.perf_counter()
        stats = _train_epoch(run, train_model, train_loader, epoch, start_batch, device, info, out)
        start_batch = 0
        train_time = time.perf_counter() - t0
        record: dict[str, Any] = {"kind": "epoch", "epoch": epoch + 1, "step": run["step"],
                                  "lr": optimizer.param_groups[0]["lr"], **stats,
                                  "epoch_time_s": train_time}  # fmt: skip
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            val = evaluate(model, val_loader, len(classes), device, amp=cfg.amp, info=info)
            record.update(val_loss=val["loss"], val_acc=val["acc"], val_top5=val["top5"])
            if ema is not None:
                ev = evaluate(ema.module, val_loader, len(classes), device, amp=cfg.amp, info=info)
                record.update(val_acc_ema=ev["acc"])
            final = record
        run["epoch_stats"] = {}
        if info.is_main:
            save_checkpoint(_state(run, epoch + 1, 0, rng_state()), out)
            assert log is not None
            log.write(record)
            text = (
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
            )
            print(" ".join(list(text)[1:]), flush=True)  # [1:]: without kind=epoch
    if info.is_main and log is not None:
        log.write_csv()
        if cfg.plots:
            plot_curves(log.read(), out / "curves.png")
        if final:
            (out / "final.json").write_text(json.dumps(final, indent=2))
    du.shutdown_distributed()
    return final


def _train_epoch(
    run: dict[str, Any],
    train_model: nn.Module,
    loader: Any,
    epoch: int,
    start_batch: int,
    device: torch.device,
    info: du.DistInfo,
    out: Path,
) -> dict[str, float]:
    cfg: TrainConfig = run["cfg"]
    model, optimizer, scheduler, ema, scaler = (run[k] for k in
                                                ("model", "optimizer", "scheduler", "ema", "scaler"))  # fmt: skip
    num_classes = len(run["classes"])
    stats = run["epoch_stats"]
    for key in ("loss_sum", "correct", "seen"):
        stats.setdefault(key, 0.0)
    model.train()
    n_batches = len(loader)
    bar = tqdm(total=n_batches, initial=start_batch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=not (cfg.progress and info.is_main), leave=False, dynamic_ncols=True)  # fmt: skip
    group_rng = rng_state()  # RNG at the start of the accumulation group: the "last good" state
    for b, (x, y) in enumerate(loader.iterate(start_batch), start=start_batch):
        last_in_group = (b + 1) % cfg.accum_steps == 0 or b + 1 == n_batches
        target = soft_targets(y, num_classes, cfg.label_smoothing)
        if cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0:
            g = step_generator(cfg.seed + 1, epoch, b)
            x, target = mixup_cutmix(x, target, cfg.mixup_alpha, cfg.cutmix_alpha, g)
        sync = (
            contextlib.nullcontext() if last_in_group or not info.enabled else train_model.no_sync()
        )
        with sync:
            with _autocast(cfg.amp, device):
                logits = train_model(x)
            loss = F.cross_entropy(logits.float(), target)
            bad = torch.tensor(float(not torch.isfinite(loss)), device=device)
            if float(du.all_reduce_sum(bad, info)) > 0:
                _diverged(
                    run, epoch, b - b % cfg.accum_steps, group_rng, out, info, float(loss.detach())
                )
            scaled = loss / cfg.accum_steps
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        stats["loss_sum"] += float(loss.detach()) * len(y)
        stats["correct"] += float((logits.argmax(1) == target.argmax(1)).sum())
        stats["seen"] += len(y)
        if last_in_group:
            _optimizer_step(cfg, model, optimizer, scaler)
            scheduler.step()
            if ema is not None:
                ema.update(model)
            run["step"] += 1
            group_rng = rng_state()
            every = cfg.checkpoint_every_steps
            if every and run["step"] % every == 0 and b + 1 < n_batches and info.is_main:
                save_checkpoint(_state(run, epoch, b + 1, group_rng), out)
        bar.update(1)
        if stats["seen"]:
            bar.set_postfix(loss=f"{stats['loss_sum'] / stats['seen']:.4f}",
                            acc=f"{100 * stats['correct'] / stats['seen']:.2f}",
                            lr=f"{optimizer.param_groups[0]['lr']:.3g}", refresh=False)  # fmt: skip
    bar.close()
    keys = ("loss_sum", "correct", "seen")
    total = du.all_reduce_sum(torch.tensor([stats[k] for k in keys], dtype=torch.float64,
                                           device=device), info).tolist()  # fmt: skip
    loss_sum, correct, seen = total[0], total[1], max(total[2], 1)
    return {"train_loss": loss_sum / seen, "train_acc": 100 * correct / seen}


def _optimizer_step(cfg: TrainConfig, model: nn.Module, optimizer, scaler) -> None:
    if scaler is not None:
        scaler.unscale_(optimizer)
    if cfg.agc_clipping is not None:
        # Written by the NFNet work (issue 4); imported only when AGC is asked for.
        from convzoo.train.agc import adaptive_grad_clip_

        adaptive_grad_clip_(model, clipping=cfg.agc_clipping)
    if cfg.grad_clip_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _diverged(run, epoch: int, batch: int, rng, out: Path, info: du.DistInfo, loss: float) -> None:
    lr = run["optimizer"].param_groups[0]["lr"]
    where = ""
    if info.is_main:
        run["optimizer"].zero_grad(set_to_none=True)
        path = save_checkpoint(_state(run, epoch, batch, rng), out)
        where = f"; the last good state is saved in {path} (resume with --resume after a fix)"
    raise TrainingDiverged(
        f"loss is {loss} at epoch {epoch + 1}, batch {batch + 1} (optimizer step {run['step']}, "
        f"lr {lr:.4g}): training stopped{where}. Try a lower --lr, --warmup-epochs, or "
        f"--grad-clip-norm."
    )
