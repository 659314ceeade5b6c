"""Procedural moving-digits video (a Moving-MNIST-like task that needs no download).

Digits are the 8x8 images of scikit-learn's embedded ``load_digits`` (1797 handwritten digits,
16 grey levels), upsampled by ``digit_scale`` (bilinear) and placed on a black canvas. Each digit
moves with a constant integer velocity and bounces off the borders; overlapping digits combine by
maximum, as in Moving MNIST (Srivastava et al. 2015). Everything is drawn from one
``numpy.random.Generator(seed)``, so a seed fixes the whole dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset


@dataclass(frozen=True)
class MovingDigitsConfig:
    num_sequences: int = 1000
    num_frames: int = 4  # per sequence
    image_size: int = 64
    num_digits: int = 2
    digit_scale: int = 3  # 8x8 digits become (8 * scale) pixels square
    max_speed: int = 3  # pixels per frame along each axis
    seed: int = 0


@lru_cache(maxsize=4)
def digit_sprites(digit_scale: int) -> Tensor:
    """All ``load_digits`` images in [0, 1], upsampled: (1797, 8 * scale, 8 * scale)."""
    from sklearn.datasets import load_digits

    images = torch.from_numpy(load_digits().images).float() / 16.0  # (1797, 8, 8)
    if digit_scale == 1:
        return images
    up = F.interpolate(
        images[:, None], scale_factor=digit_scale, mode="bilinear", align_corners=False
    )
    return up[:, 0].clamp_(0.0, 1.0)


def _bounce(pos: np.ndarray, vel: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    pos = pos + vel
    low, high = pos < 0, pos > limit
    pos = np.where(low, -pos, np.where(high, 2 * limit - pos, pos))
    vel = np.where(low | high, -vel, vel)
    return pos, vel


def moving_digits(cfg: MovingDigitsConfig) -> Tensor:
    """Sequences of frames in [0, 1]: (num_sequences, num_frames, image_size, image_size)."""
    sprites = digit_sprites(cfg.digit_scale)
    size = sprites.shape[-1]
    limit = cfg.image_size - size
    if limit < 1:
        raise ValueError(f"digits of {size}px do not move in a {cfg.image_size}px frame")
    if not 1 <= cfg.max_speed <= limit:
        raise ValueError(f"max_speed must be in [1, {limit}], got {cfg.max_speed}")
    rng = np.random.default_rng(cfg.seed)
    n, d = cfg.num_sequences, cfg.num_digits
    which = rng.integers(0, sprites.shape[0], size=(n, d))
    pos = rng.integers(0, limit + 1, size=(n, d, 2))
    vel = rng.integers(1, cfg.max_speed + 1, size=(n, d, 2)) * rng.choice([-1, 1], size=(n, d, 2))
    video = torch.zeros(n, cfg.num_frames, cfg.image_size, cfg.image_size)
    for t in range(cfg.num_frames):
        for i in range(n):
            for j in range(d):
                y, x = pos[i, j]
                region = (i, t, slice(y, y + size), slice(x, x + size))
                video[region] = torch.maximum(video[region], sprites[which[i, j]])
        pos, vel = _bounce(pos, vel, limit)
    return video


class MovingDigits(Dataset):
    """Next-frame prediction pairs: (previous frames (T-1, H, W), next frame (1, H, W))."""

    def __init__(self, cfg: MovingDigitsConfig | None = None) -> None:
        self.cfg = cfg or MovingDigitsConfig()
        if self.cfg.num_frames < 2:
            raise ValueError("next-frame prediction needs at least 2 frames per sequence")
        self.video = moving_digits(self.cfg)

    def __len__(self) -> int:
        return self.video.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        seq = self.video[index]
        return seq[:-1], seq[-1:]

    def tensors(self) -> tuple[Tensor, Tensor]:
        """The whole dataset as two tensors (inputs, targets), for in-memory training."""
        return self.video[:, :-1], self.video[:, -1:]
