"""The training loop: ``train(cfg)`` runs a whole (resumable) run; ``evaluate`` scores a model.

A run is three parts: ``setup`` (data, model, optimizer: ``state.py``), ``restore`` from a
checkpoint when resuming, and the epoch loop below. One step: a micro-batch through the model
under optional autocast, backward (without DDP all-reduce until the last micro-batch of an
accumulation group), then gradient clipping / AGC, the optimizer and scheduler step, and the EMA
update.

Divergence: a non-finite loss stops the run before any update, and no checkpoint is written
unless every weight and buffer (BatchNorm statistics, EMA) is finite, so ``last.pt`` is always
the last good state; resume it with a lower ``--lr``.

The run folder is locked for the run's lifetime (``rundir.RunLock``); a resume writes into the
folder it continues, so a copied folder is a branch of the run.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from convzoo.cliutil import UsageError, resolve_device
from convzoo.data.augment import mixup_cutmix, soft_targets
from convzoo.data.device_loader import step_generator
from convzoo.train import distributed as du
from convzoo.train.checkpoint import (
    check_training_checkpoint,
    find_resume,
    load_checkpoint,
    rng_state,
    save_checkpoint,
)
from convzoo.train.config import TrainConfig
from convzoo.train.metrics import MetricsLog, plot_curves
from convzoo.train.rundir import RunLock, run_dir_of
from convzoo.train.state import (
    EpochStats,
    Loader,
    Run,
    autocast,
    build_model,
    nonfinite_tensor,
    restore,
    setup,
)

__all__ = ["TrainingDiverged", "build_model", "evaluate", "train"]


class TrainingDiverged(RuntimeError):
    pass


def train(cfg: TrainConfig, resume: str | Path | bool = False) -> dict[str, Any]:
    """Run (or resume) a training run; returns the final validation metrics.

    ``resume=True`` resumes from ``cfg.output``; a path resumes from that file or run directory,
    which must be ``cfg.output`` (a resume writes where it continues).
    """
    path = _resume_path(cfg, resume)
    device = resolve_device(cfg.device)
    info = du.init_distributed(device.type)
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    _set_determinism(cfg, device)
    du.seed_everything(cfg.seed, info.rank)
    try:
        with RunLock(cfg.output) if info.is_main else contextlib.nullcontext():
            ckpt = _open_checkpoint(cfg, path)
            run = setup(cfg, device, info, fresh=ckpt is None)
            changed = restore(run, ckpt, path) if ckpt is not None and path is not None else {}
            result = run_epochs(run, resumed=ckpt is not None, changed=changed)
        # Every rank leaves together: a rank that tore its process group down while rank 0 was
        # still writing the final files aborted at exit ("terminate called without an active
        # exception" from gloo's threads). Only on success, so a failed rank cannot hang others.
        du.barrier()
        return result
    finally:
        du.shutdown_distributed()


def _resume_path(cfg: TrainConfig, resume: str | Path | bool) -> Path | None:
    if resume is False:
        return None
    where = Path(cfg.output) if resume is True else Path(resume)
    path = find_resume(where) if where.is_dir() else where
    if path is None:
        raise FileNotFoundError(f"nothing to resume in {where}: no last.pt or prev.pt")
    if run_dir_of(path).resolve() != Path(cfg.output).resolve():
        raise UsageError(f"a resume writes into the run folder it continues ({run_dir_of(path)}), "
                         f"not {cfg.output}: copy the folder to branch a run")  # fmt: skip
    return path


def _open_checkpoint(cfg: TrainConfig, path: Path | None) -> dict[str, Any] | None:
    """The checkpoint to resume (read under the run lock), or None for a new run."""
    if path is None:
        if find_resume(cfg.output) is not None:
            raise UsageError(f"{cfg.output} already holds a run: continue it with --resume "
                             f"{cfg.output}, or choose another --output")  # fmt: skip
        return None
    ckpt = load_checkpoint(path)
    check_training_checkpoint(ckpt, path)
    return ckpt


def _set_determinism(cfg: TrainConfig, device: torch.device) -> None:
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def run_epochs(run: Run, *, resumed: bool, changed: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    """Epochs ``run.epoch`` .. ``cfg.epochs``: train, evaluate, checkpoint, log."""
    cfg, info, out = run.cfg, run.info, run.out
    log = _start_log(run, resumed, changed) if info.is_main else None
    final: dict[str, Any] = {}
    if run.epoch >= cfg.epochs and (out / "final.json").is_file():
        # Resuming a finished run: nothing to train (pass a larger --epochs to continue it).
        final = json.loads((out / "final.json").read_text())
        if info.is_main:
            print(f"{out} already finished {run.epoch} epochs of {cfg.epochs}")
    while run.epoch < cfg.epochs:
        run.train_loader.set_epoch(run.epoch)
        t0 = time.perf_counter()
        stats = _train_epoch(run)
        record: dict[str, Any] = {"kind": "epoch", "epoch": run.epoch + 1, "step": run.step,
                                  "lr": run.optimizer.param_groups[0]["lr"], **stats,
                                  "epoch_time_s": time.perf_counter() - t0}  # fmt: skip
        if (run.epoch + 1) % cfg.eval_every == 0 or run.epoch + 1 == cfg.epochs:
            record.update(_validate(run))
            final = record
        run.epoch, run.batch, run.stats = run.epoch + 1, 0, EpochStats()
        _save(run)
        if log is not None:
            log.write(record)
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in record.items() if k != "kind"), flush=True)  # fmt: skip
    if log is not None:
        log.write_csv()
        if cfg.plots:
            plot_curves(log.read(), out / "curves.png")
        if final:
            (out / "final.json").write_text(json.dumps(final, indent=2))
    return final


def _start_log(run: Run, resumed: bool, changed: dict[str, tuple[Any, Any]]) -> MetricsLog:
    """The metrics log (cut back to the checkpoint on resume), config.json and the banner."""
    cfg = run.cfg
    log = MetricsLog(run.out, resume_epoch=run.epoch if resumed else None)
    (run.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    if changed:
        log.write({"kind": "resume", "epoch": run.epoch, "step": run.step,
                   "changed": {k: {"was": a, "now": b} for k, (a, b) in changed.items()}})  # fmt: skip
        print("resuming with " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()))
    skipped = len(run.splits.skipped)
    print(f"convzoo train {cfg.model}: {run.splits.source}; {len(run.classes)} classes, "
          f"{run.train_loader.num_samples} train / {len(run.splits.val)} val images"
          + (f"; skipped {skipped} unreadable images" if skipped else "")
          + f"; device {run.device}, world size {run.info.world_size}")  # fmt: skip
    return log


def _validate(run: Run) -> dict[str, Any]:
    n, amp = len(run.classes), run.cfg.amp
    val = evaluate(run.model, run.val_loader, n, run.device, amp=amp, info=run.info)
    out = {"val_loss": val["loss"], "val_acc": val["acc"]}
    if val["top5"] is not None:
        out["val_top5"] = val["top5"]
    if run.ema is not None:
        ev = evaluate(run.ema.module, run.val_loader, n, run.device, amp=amp, info=run.info)
        out["val_acc_ema"] = ev["acc"]
    return out


def _train_epoch(run: Run) -> dict[str, float]:
    cfg, info = run.cfg, run.info
    run.model.train()
    n_batches = len(run.train_loader)
    bar = tqdm(total=n_batches, initial=run.batch, desc=f"epoch {run.epoch + 1}/{cfg.epochs}",
               disable=not (cfg.progress and info.is_main), leave=False, dynamic_ncols=True)  # fmt: skip
    for b, (x, y) in enumerate(run.train_loader.iterate(run.batch), start=run.batch):
        _train_step(run, b, x, y, n_batches)
        bar.update(1)
        if run.stats.seen:
            bar.set_postfix(loss=f"{run.stats.loss_sum / run.stats.seen:.4f}",
                            acc=f"{100 * run.stats.correct / run.stats.seen:.2f}",
                            lr=f"{run.optimizer.param_groups[0]['lr']:.3g}", refresh=False)  # fmt: skip
    bar.close()
    s = run.stats
    sums = torch.tensor([s.loss_sum, s.correct, s.seen], dtype=torch.float64, device=run.device)
    loss_sum, correct, seen = du.all_reduce_sum(sums, info).tolist()
    seen = max(seen, 1)
    return {"train_loss": loss_sum / seen, "train_acc": 100 * correct / seen}


def _train_step(run: Run, b: int, x: Tensor, y: Tensor, n_batches: int) -> None:
    cfg = run.cfg
    last_in_group = (b + 1) % cfg.accum_steps == 0 or b + 1 == n_batches
    target = soft_targets(y, len(run.classes), cfg.label_smoothing)
    if cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0:
        g = step_generator(cfg.seed + 1, run.epoch, b)
        x, target = mixup_cutmix(x, target, cfg.mixup_alpha, cfg.cutmix_alpha, g)
    sync = run.ddp.no_sync() if run.ddp is not None and not last_in_group else None
    with sync or contextlib.nullcontext():
        with autocast(cfg.amp, run.device):
            logits = run.train_model(x)
        loss = F.cross_entropy(logits.float(), target)
        bad = torch.tensor(float(not torch.isfinite(loss)), device=run.device)
        if float(du.all_reduce_sum(bad, run.info)) > 0:
            raise _diverged(run, b, f"loss is {float(loss.detach())}")
        scaled = loss / cfg.accum_steps
        (run.scaler.scale(scaled) if run.scaler is not None else scaled).backward()  # type: ignore[no-untyped-call]
    run.stats.loss_sum += float(loss.detach()) * len(y)
    run.stats.correct += float((logits.argmax(1) == target.argmax(1)).sum())
    run.stats.seen += len(y)
    if last_in_group:
        _optimizer_step(run)
        every = cfg.checkpoint_every_steps
        if every and run.step % every == 0 and b + 1 < n_batches:
            run.batch = b + 1
            _save(run)


def _optimizer_step(run: Run) -> None:
    cfg, optimizer, scaler = run.cfg, run.optimizer, run.scaler
    if scaler is not None:
        scaler.unscale_(optimizer)
    if cfg.agc_clipping is not None:
        from convzoo.train.agc import adaptive_grad_clip_  # only when AGC is asked for

        adaptive_grad_clip_(run.model, clipping=cfg.agc_clipping)
    if cfg.grad_clip_norm is not None:
        nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    if run.ema is not None:
        run.ema.update(run.model)
    run.step += 1


def checkpoint_state(run: Run) -> dict[str, Any]:
    """Everything a resume needs, as tensors and plain data (loadable with weights_only)."""
    return {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "epoch": run.epoch,  # the epoch in progress (0-based)
        "batch": run.batch,  # the next batch of that epoch
        "step": run.step,  # optimizer steps so far
        "steps_per_epoch": run.steps_per_epoch,
        "world_size": run.info.world_size,
        "epoch_stats": vars(run.stats).copy(),
        "rng": rng_state(),
        "config": run.cfg.to_dict(),
        "classes": run.classes,
        "mean": run.mean,
        "std": run.std,
        "image_size": run.image_size,
    }


def _save(run: Run) -> None:
    """Checkpoint the run at (epoch, batch), unless a weight or buffer is not finite (on any
    rank): then the run stops and the last checkpoint stays the last good state."""
    name = nonfinite_tensor(run)
    flag = torch.tensor(float(name is not None), device=run.device)
    if float(du.all_reduce_sum(flag, run.info)) > 0:
        raise _diverged(run, run.batch, f"{name or 'a tensor on another rank'} is not finite")
    if run.info.is_main:
        path = save_checkpoint(checkpoint_state(run), run.out)
        run.last_saved = (path, run.epoch, run.step)


def _diverged(run: Run, batch: int, what: str) -> TrainingDiverged:
    lr = run.optimizer.param_groups[0]["lr"]
    if run.last_saved is None:
        where = "no checkpoint was written before it: start again with a lower --lr"
    else:
        path, _, step = run.last_saved
        where = (f"the last good state is saved in {path} (after {step} optimizer steps): "
                 f"continue it with --resume {run.out} --lr {run.cfg.lr / 10:.3g}")  # fmt: skip
    return TrainingDiverged(
        f"{what} at epoch {run.epoch + 1}, batch {batch + 1} (optimizer step {run.step}, "
        f"lr {lr:.4g}): training stopped; {where}. Or try --warmup-epochs or --grad-clip-norm."
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Loader,
    num_classes: int,
    device: torch.device,
    *,
    amp: str | None = None,
    info: du.DistInfo | None = None,
) -> dict[str, Any]:
    """Loss, top-1 and top-5 accuracy (%; top-5 None unless there are more than 5 classes),
    per-class accuracy and the confusion matrix."""
    info = info or du.DistInfo()
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top5 = torch.zeros((), dtype=torch.float64, device=device)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    for x, y in loader:
        if len(y) == 0:
            continue
        with autocast(amp, device):
            logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        top5 += (logits.topk(min(5, num_classes), dim=1).indices == y[:, None]).any(dim=1).sum()
        confusion += torch.bincount(y * num_classes + logits.argmax(1),
                                    minlength=num_classes**2).view(num_classes, num_classes)  # fmt: skip
    for t in (loss_sum, top5, confusion):
        du.all_reduce_sum(t, info)
    model.train(was_training)
    n = max(int(confusion.sum()), 1)
    confusion = confusion.cpu()
    per_class = (confusion.diag().double() / confusion.sum(1).clamp_min(1).double() * 100).tolist()
    return {
        "loss": float(loss_sum) / n,
        "acc": float(confusion.diag().sum()) / n * 100,
        "top5": float(top5) / n * 100 if num_classes > 5 else None,
        "per_class": per_class,
        "confusion": confusion,
        "n": int(confusion.sum()),
    }
