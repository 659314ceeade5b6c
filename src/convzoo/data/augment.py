"""Batched augmentation on the device: crop with padding, flip, cutout, random erasing, Mixup/CutMix.

Every function takes a whole batch and a ``torch.Generator`` on the CPU, draws its per-sample
parameters there (a few hundred numbers, cheap), and applies them with tensor ops on the batch's
device: no Python loop over samples and no host-device synchronization. Drawing from an explicit
generator makes every batch reproducible from (seed, epoch, step), which exact resume and the
DDP equivalence rely on.

Parameters are drawn for the *global* batch and then sliced (``rows``), so a batch split over
ranks is augmented exactly as the same batch in one process.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _rand(n: int, g: torch.Generator) -> Tensor:
    return torch.rand(n, generator=g)


def _to(t: Tensor, device: torch.device) -> Tensor:
    # non_blocking: a plain .to() of a CPU tensor synchronizes the CUDA stream after the copy,
    # which would make the host wait for the previous training step every batch. A pageable
    # source is staged by the driver before the call returns, so the CPU tensor may die.
    return t.to(device, non_blocking=True)


def random_crop_flip(
    x: Tensor, padding: int, flip: bool, g: torch.Generator, n_global: int, rows: slice
) -> Tensor:
    """Zero-pad by ``padding``, crop back to the input size at a random offset, random h-flip.

    ``x`` is this rank's (B, C, H, W) part, rows ``rows`` of a global batch of ``n_global``.
    """
    b, c, h, w = x.shape
    dev = x.device
    oy = torch.randint(0, 2 * padding + 1, (n_global,), generator=g)
    ox = torch.randint(0, 2 * padding + 1, (n_global,), generator=g)
    fl = (_rand(n_global, g) < 0.5).long()
    oy, ox, fl = _to(torch.stack([oy, ox, fl])[:, rows], dev)  # one small copy
    fl = fl.bool()
    if padding > 0:
        x = F.pad(x, (padding, padding, padding, padding))
    # (B, H) row and (B, W) column indices of each sample's crop window.
    ry = oy[:, None] + torch.arange(h, device=dev)
    rx = ox[:, None] + torch.arange(w, device=dev)
    if flip:
        rx = torch.where(fl[:, None], rx.flip(1), rx)
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return x[bi, ci, ry[:, None, :, None], rx[:, None, None, :]]


def _boxes(
    n: int,
    h: int,
    w: int,
    g: torch.Generator,
    size: int | None,
    scale: tuple[float, float] = (0.02, 1 / 3),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample rectangles (y0, y1, x0, x1): a ``size`` square centred anywhere (cutout, clipped
    at the border), or a random-erasing box of area ``scale`` and aspect ``ratio``."""
    if size is not None:
        cy = torch.randint(0, h, (n,), generator=g)
        cx = torch.randint(0, w, (n,), generator=g)
        return (cy - size // 2).clamp(0, h), (cy - size // 2 + size).clamp(0, h), \
            (cx - size // 2).clamp(0, w), (cx - size // 2 + size).clamp(0, w)  # fmt: skip
    area = h * w * (scale[0] + (scale[1] - scale[0]) * _rand(n, g))
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * _rand(n, g)
    aspect = log_r.exp()
    bh = (area * aspect).sqrt().round().clamp(1, h).long()
    bw = (area / aspect).sqrt().round().clamp(1, w).long()
    y0 = (_rand(n, g) * (h - bh + 1)).long()
    x0 = (_rand(n, g) * (w - bw + 1)).long()
    return y0, y0 + bh, x0, x0 + bw


def _box_mask(
    y0: Tensor, y1: Tensor, x0: Tensor, x1: Tensor, h: int, w: int, dev: torch.device
) -> Tensor:
    """(B, 1, H, W) bool mask, True inside each sample's box."""
    yy = torch.arange(h, device=dev)[None, :, None]
    xx = torch.arange(w, device=dev)[None, None, :]
    y0, y1, x0, x1 = _to(torch.stack([y0, y1, x0, x1]), dev)[:, :, None, None]
    return ((yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1))[:, None]


def cutout(x: Tensor, size: int, g: torch.Generator, n_global: int, rows: slice) -> Tensor:
    """DeVries & Taylor 2017 (arXiv 1708.04552): zero a ``size`` x ``size`` square per sample."""
    y0, y1, x0, x1 = (t[rows] for t in _boxes(n_global, x.shape[2], x.shape[3], g, size))
    mask = _box_mask(y0, y1, x0, x1, x.shape[2], x.shape[3], x.device)
    return x.masked_fill(mask, 0)


def random_erasing(x: Tensor, p: float, g: torch.Generator, n_global: int, rows: slice) -> Tensor:
    """Zhong et al. 2017 (arXiv 1708.04896) on a normalized float batch: with probability ``p`` a
    sample gets one box of area 2-33% and aspect 0.3-3.3 filled with N(0, 1) noise."""
    h, w = x.shape[2], x.shape[3]
    y0, y1, x0, x1 = (t[rows] for t in _boxes(n_global, h, w, g, None))
    apply = _to((_rand(n_global, g) < p)[rows], x.device)
    mask = _box_mask(y0, y1, x0, x1, h, w, x.device) & apply[:, None, None, None]
    # The noise comes from the device's default generator: its values need not be reproducible
    # across a resume for the run to be correct, only the boxes do, and this keeps it on device.
    return torch.where(mask, torch.randn_like(x), x)


def mixup_cutmix(
    x: Tensor,
    target: Tensor,
    mixup_alpha: float,
    cutmix_alpha: float,
    g: torch.Generator,
    switch_prob: float = 0.5,
) -> tuple[Tensor, Tensor]:
    """Mix each sample with the batch reversed (Zhang et al. 2017 / Yun et al. 2019).

    ``target`` is soft (B, classes). One lambda per batch, as in the ConvNeXt recipe; when both
    alphas are set, CutMix is chosen with ``switch_prob``. CutMix's lambda is corrected to the
    pasted box's true area after clipping at the border.
    """
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or _rand(1, g).item() < switch_prob)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(_beta(alpha, g)) if alpha > 0 else 1.0
    x_flip, t_flip = x.flip(0), target.flip(0)
    if use_cutmix:
        h, w = x.shape[2], x.shape[3]
        cut = math.sqrt(1.0 - lam)
        bh, bw = int(h * cut), int(w * cut)
        cy, cx = (
            int(torch.randint(0, h, (1,), generator=g)),
            int(torch.randint(0, w, (1,), generator=g)),
        )
        y0, y1 = max(cy - bh // 2, 0), min(cy + bh // 2, h)
        x0, x1 = max(cx - bw // 2, 0), min(cx + bw // 2, w)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x_flip[:, :, y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        x = x * lam + x_flip * (1.0 - lam)
    return x, target * lam + t_flip * (1.0 - lam)


def _beta(alpha: float, g: torch.Generator) -> float:
    # torch's Beta sampler takes no generator; numpy's, seeded from ``g``, keeps it reproducible.
    import numpy as np

    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def soft_targets(labels: Tensor, num_classes: int, smoothing: float) -> Tensor:
    """One-hot with label smoothing (Szegedy et al. 2016): 1 - s + s/K on the true class."""
    off = smoothing / num_classes
    t = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return t.scatter_(1, labels[:, None], 1.0 - smoothing + off)
