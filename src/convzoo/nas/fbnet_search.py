"""FBNet's differentiable neural architecture search (Wu et al. 2019, arXiv 1812.03443, sec. 3).

Loss (Eq. 2): L(a, w) = CE(a, w) * alpha * log(LAT(a))^beta, with LAT(a) the expected latency
sum_l sum_i m_{l,i} LAT_{l,i} under the Gumbel-softmax masks (Eq. 5-7), in milliseconds from a
table measured on the target device. Each iteration updates the weights w (SGD) on a batch of the
weight split, then theta (Adam) on a batch of the held-out architecture split (section 4.1: 80% /
20% of the training images). The temperature starts at 5.0 and decays by exp(-0.045) per epoch;
the first ``warmup_epochs`` train w only. Paper values: alpha = 0.2, beta = 0.6, SGD lr 0.1
(cosine), momentum 0.9, weight decay 1e-4; Adam lr 0.01, weight decay 5e-4; 90 epochs, 10 warm-up.

Deviation: log(LAT) must be positive for the power; the paper's phone latencies (tens of ms) are.
On a fast device a whole net can run under 1 ms, so LAT is multiplied by ``latency_scale``
before the log. By default (``None``) the scale is the smallest power of ten that puts the
fastest network of the table at 10 units or more, so log(LAT) >= 2.3 as in the paper's regime;
the scale used is recorded in ``search.json``. A non-positive log is a clear error.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from convzoo.cliutil import UsageError, option, resolve_device, validate_config
from convzoo.lab.draw_arch import draw_arch
from convzoo.models.fbnet import spec_to_json
from convzoo.nas.latency import LatencyTable, measure_latency_table, median_ms
from convzoo.nas.supernet import SUPERNETS, FBNetSupernet
from convzoo.registry import create_model


@dataclass(frozen=True)
class SearchConfig:
    # "cifar" (32x32) | "imagenet" (Table 1, 224x224)
    supernet: str = option("cifar", choices=tuple(SUPERNETS))
    width_multiplier: float = option(1.0, above=0)
    data: str | None = None  # directory (CIFAR / ImageFolder); None = embedded digits
    max_train_samples: int | None = option(None, low=1)
    arch_fraction: float = option(0.2, above=0, below=1)  # of the training images, for theta
    epochs: int = option(10, low=1)
    warmup_epochs: int = option(2, low=0)  # epochs that train w only
    batch_size: int = option(64, low=1)
    w_lr: float = option(0.1, above=0)  # SGD, cosine over the epochs
    w_momentum: float = option(0.9, low=0, below=1)
    w_weight_decay: float = option(1e-4, low=0)
    theta_lr: float = option(0.01, above=0)  # Adam
    theta_weight_decay: float = option(5e-4, low=0)
    temperature: float = option(5.0, above=0)
    temperature_decay: float = option(math.exp(-0.045), above=0, high=1)  # per epoch
    alpha: float = option(0.2, above=0)
    beta: float = option(0.6, above=0)
    # ms are multiplied by this before the log; None = auto
    latency_scale: float | None = option(None, above=0)
    latency_table: str | None = None  # reuse (or write) this JSON table
    latency_batch_size: int = option(1, low=1)
    device: str = option("cpu", device=True)
    seed: int = option(0, low=0)
    output: str = "runs/search"
    progress: bool = True

    def __post_init__(self) -> None:
        validate_config(self)
        if self.warmup_epochs >= self.epochs:
            raise UsageError(
                f"warmup_epochs ({self.warmup_epochs}) must be < epochs ({self.epochs})"
            )


def fbnet_loss(ce: Tensor, latency: Tensor, alpha: float, beta: float) -> Tensor:
    """Eq. 2: CE * alpha * log(LAT)^beta."""
    log_lat = torch.log(latency)
    if bool(log_lat <= 0):
        raise ValueError(
            f"log(latency) = {float(log_lat):.3f} <= 0: the expected latency is under 1 unit; "
            "raise latency_scale (e.g. 1000 to use microseconds)"
        )
    return ce * alpha * log_lat**beta


def auto_latency_scale(table: LatencyTable) -> float:
    """Smallest power of ten putting the table's fastest network at >= 10 units."""
    fastest = table.fixed_ms + sum(min(row.values()) for row in table.entries)
    return 1.0 if fastest >= 10.0 else 10.0 ** math.ceil(math.log10(10.0 / fastest))


def expected_latency(weights: Tensor, table: Tensor, fixed: float) -> Tensor:
    """Eq. 5 under the masks: fixed + sum_l sum_i m_{l,i} LAT_{l,i}."""
    return fixed + (weights * table).sum()


def search_step(
    supernet: FBNetSupernet,
    w_optimizer: torch.optim.Optimizer,
    theta_optimizer: torch.optim.Optimizer | None,
    train_batch: tuple[Tensor, Tensor],
    arch_batch: tuple[Tensor, Tensor] | None,
    latency_table: Tensor,
    fixed_latency: float,
    cfg: SearchConfig,
    latency_scale: float = 1.0,
) -> dict[str, float]:
    """Weights on ``train_batch`` (theta frozen), then theta on ``arch_batch`` (weights frozen)."""
    stats: dict[str, float] = {}
    for what, batch, optimizer in (
        ("w", train_batch, w_optimizer),
        ("theta", arch_batch, theta_optimizer),
    ):
        if batch is None or optimizer is None:
            continue
        x, y = batch
        weights = supernet.mixing_weights()
        if what == "w":
            weights = weights.detach()
        lat = expected_latency(weights, latency_table, fixed_latency) * latency_scale
        ce = F.cross_entropy(supernet(x, weights), y)
        loss = fbnet_loss(ce, lat, cfg.alpha, cfg.beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        stats[f"{what}_loss"] = float(loss.detach())
        stats[f"{what}_ce"] = float(ce.detach())
        stats["expected_latency_ms"] = float(lat.detach()) / latency_scale
    return stats


def _loaders(cfg: SearchConfig, image_size: int, device: torch.device):
    from convzoo.data.build import load_splits
    from convzoo.data.datasets import ArrayDataset, channel_stats
    from convzoo.data.device_loader import DeviceAugment, DeviceLoader

    splits = load_splits(cfg.data, image_size=image_size, loader="device", split_seed=cfg.seed)
    train = splits.train
    if not isinstance(train, ArrayDataset):
        raise ValueError("the search keeps its data in memory: give a CIFAR or small image folder")
    g = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(len(train), generator=g)
    if cfg.max_train_samples:
        perm = perm[: cfg.max_train_samples]
    n_arch = max(1, int(len(perm) * cfg.arch_fraction))
    w_part, a_part = (
        train.subset(perm[n_arch:].sort().values),
        train.subset(perm[:n_arch].sort().values),
    )
    mean, std = channel_stats(w_part.images)
    aug = DeviceAugment(crop_padding=4 if image_size <= 64 else 0, hflip=True)
    common = dict(device=device, mean=mean, std=std, seed=cfg.seed, shuffle=True)
    if len(w_part) < cfg.batch_size:
        raise ValueError(f"{len(w_part)} training images for weights: fewer than one batch "
                         f"of {cfg.batch_size}; lower --batch-size or use more data")  # fmt: skip
    return (
        DeviceLoader(w_part, cfg.batch_size, augment=aug, drop_last=True, **common),
        # A short final batch is fine for theta; with drop_last a small split would yield nothing.
        DeviceLoader(a_part, cfg.batch_size, **common),
        splits,
    )


def _cycle(loader) -> Iterator[tuple[Tensor, Tensor]]:
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def run_search(cfg: SearchConfig) -> dict[str, Any]:
    """The whole search; writes ``arch.json`` (spec), ``arch.png`` (its picture),
    ``model_args.json``, ``search.json``."""
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    net_cfg = SUPERNETS[cfg.supernet]
    w_loader, a_loader, splits = _loaders(cfg, net_cfg.input_size, device)
    net_cfg = replace(net_cfg, width_multiplier=cfg.width_multiplier,
                      num_classes=len(splits.classes))  # fmt: skip
    supernet = FBNetSupernet(net_cfg)
    if cfg.latency_table and Path(cfg.latency_table).exists():
        table = LatencyTable.load(cfg.latency_table)
        table.check_matches(supernet)
    else:
        table = measure_latency_table(supernet, cfg.device, cfg.latency_batch_size)
        table.save(cfg.latency_table or out / "latency_table.json")
    supernet.to(device)
    scale = cfg.latency_scale or auto_latency_scale(table)
    t0 = time.perf_counter()
    history = _search_epochs(cfg, supernet, table, scale, w_loader, a_loader, device)
    spec = supernet.sample_spec()
    args = supernet.model_args(spec)
    (out / "arch.json").write_text(spec_to_json(spec, indent=1))
    draw_arch(spec, out / "arch.png", title=f"searched ({cfg.supernet} supernet)")
    model_args = {k: v for k, v in args.items() if k != "spec"} | {"spec": str(out / "arch.json")}
    (out / "model_args.json").write_text(json.dumps(model_args, indent=1))
    measured = measure_spec_latency(args, net_cfg.input_size, cfg.device, cfg.latency_batch_size)
    result = {
        "config": asdict(cfg),
        "architecture": [[b.candidate for b in s] for s in spec],
        "predicted_latency_ms": table.predict(spec),
        "measured_latency_ms": measured,
        "latency_provenance": table.provenance,
        "latency_scale": scale,
        "search_time_s": time.perf_counter() - t0,
        "theta": supernet.theta.detach().cpu().tolist(),
        "history": history,
        "build": f"convzoo.create_model('fbnet_c', **model_args.json) or "
        f"convzoo train fbnet_c --model-arg spec={out / 'arch.json'} ...",
    }
    (out / "search.json").write_text(json.dumps(result, indent=1))
    return result


def _search_epochs(cfg: SearchConfig, supernet: FBNetSupernet, table: LatencyTable, scale: float,
                   w_loader: Any, a_loader: Any, device: torch.device) -> list[dict[str, Any]]:  # fmt: skip
    """The epochs: each batch of the weight split is one ``search_step`` (theta too once the
    warm-up is over, on the next batch of the architecture split); one history row per epoch."""
    lat = table.as_tensor().to(device)
    w_opt = torch.optim.SGD(supernet.weight_parameters(), lr=cfg.w_lr, momentum=cfg.w_momentum,
                            weight_decay=cfg.w_weight_decay)  # fmt: skip
    steps = cfg.epochs * len(w_loader)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, max(1, steps))
    t_opt = torch.optim.Adam(supernet.arch_parameters(), lr=cfg.theta_lr,
                             weight_decay=cfg.theta_weight_decay)  # fmt: skip
    arch_batches = _cycle(a_loader)
    history = []
    for epoch in range(cfg.epochs):
        supernet.temperature = cfg.temperature * cfg.temperature_decay**epoch
        w_loader.set_epoch(epoch)
        search_theta = epoch >= cfg.warmup_epochs
        bar = tqdm(w_loader, desc=f"search {epoch + 1}/{cfg.epochs}", disable=not cfg.progress)
        stats: dict[str, float] = {}
        for batch in bar:
            supernet.train()
            stats = search_step(supernet, w_opt, t_opt if search_theta else None, batch,
                                next(arch_batches) if search_theta else None, lat,
                                table.fixed_ms, cfg, scale)  # fmt: skip
            sched.step()
            bar.set_postfix(ce=f"{stats['w_ce']:.3f}", lat=f"{stats['expected_latency_ms']:.2f}ms")
        spec = supernet.sample_spec()
        history.append({"epoch": epoch + 1, "temperature": supernet.temperature, **stats,
                        "argmax": [b.candidate for s in spec for b in s],
                        "predicted_ms": table.predict(spec)})  # fmt: skip
    return history


def measure_spec_latency(model_args: dict, input_size: int, device: str, batch_size: int) -> float:
    """Measured ms of the whole searched network (eval, one batch), as the table predicts it."""
    model = create_model("fbnet_c", **model_args).to(device).eval()
    x = torch.randn(batch_size, model.in_channels, input_size, input_size, device=device)
    with torch.inference_mode():
        return median_ms(lambda: model(x), torch.device(device))
