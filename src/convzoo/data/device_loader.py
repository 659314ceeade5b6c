"""The GPU-resident loader: a small dataset lives on the device as uint8 and is augmented there.

CIFAR-10's 50,000 training images are 150 MB as uint8, so they are copied to the device once.
Each step gathers a batch by index, augments it in one batched pass (``augment``), converts to
float and normalizes: no worker processes, no host-to-device copy per step, and the GPU never
waits for Python. Randomness comes from a CPU generator seeded by (seed, epoch, step), so a run
resumed mid-epoch sees the same batches, and a batch split over DDP ranks is the same batch.

Sharding for DDP: every rank draws the same permutation; global batch ``k`` is
``perm[k*B*W:(k+1)*B*W]`` and rank ``r`` takes its ``r``-th slice of ``B``. The union over ranks is
exactly the batch a single process with batch size ``B*W`` sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from convzoo.data.augment import cutout, random_crop_flip, random_erasing
from convzoo.data.datasets import ArrayDataset


@dataclass(frozen=True)
class DeviceAugment:
    """Augmentation applied on the device (all off = evaluation)."""

    crop_padding: int = 0
    hflip: bool = False
    cutout: int = 0  # side of the zeroed square in pixels; 0 = off
    random_erasing: float = 0.0  # probability per sample
    randaugment_n: int = 0  # ops per image; 0 = off (slow path: per-sample, see below)
    randaugment_m: int = 9


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    """A CPU generator determined by (seed, epoch, step), identical on every rank."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + step)


class BatchPlan:
    """Which samples make up batch ``step`` of an epoch, for this rank (see the module docstring);
    shared by ``DeviceLoader`` and the DataLoader path so both draw the same batches."""

    def __init__(self, n: int, batch_size: int, *, shuffle: bool, drop_last: bool, seed: int,
                 rank: int, world_size: int) -> None:  # fmt: skip
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.n, self.batch_size, self.shuffle, self.drop_last = n, batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        if self.drop_last:
            return self.n // self.global_batch
        return -(-self.n // self.global_batch)

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[tuple[int, Tensor, int, slice]]:
        """(step, this rank's sample indices, global batch size, this rank's rows of it)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
            perm = torch.randperm(self.n, generator=g)
        else:
            perm = torch.arange(self.n)
        for step in range(start_step, len(self)):
            glob = perm[step * self.global_batch : (step + 1) * self.global_batch]
            # A short last batch is split as evenly as possible; a rank may get nothing.
            per = -(-len(glob) // self.world_size)
            rows = slice(min(self.rank * per, len(glob)), min((self.rank + 1) * per, len(glob)))
            yield step, glob[rows], len(glob), rows


class BatchPrep:
    """uint8 batch -> augmented, normalized float batch; the one augmentation definition that
    both loaders apply. Randomness comes from ``step_generator(seed, epoch, step)``."""

    def __init__(self, augment: DeviceAugment, mean: list[float], std: list[float], *,
                 device: torch.device, seed: int, channels_last: bool) -> None:  # fmt: skip
        self.augment, self.device, self.seed, self.channels_last = (
            augment,
            device,
            seed,
            channels_last,
        )
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(mean, device=device).view(shape) * 255.0
        self.inv_std = 1.0 / (torch.tensor(std, device=device).view(shape) * 255.0)
        if augment.randaugment_n:
            from torchvision.transforms import v2

            self._randaugment = v2.RandAugment(augment.randaugment_n, augment.randaugment_m)

    def __call__(self, x: Tensor, epoch: int, step: int, n_global: int, rows: slice) -> Tensor:
        a = self.augment
        g = step_generator(self.seed, epoch, step)
        if a.randaugment_n:
            x = self._apply_randaugment(x, g)
        if a.crop_padding or a.hflip:
            x = random_crop_flip(x, a.crop_padding, a.hflip, g, n_global, rows)
        if a.cutout:
            x = cutout(x, a.cutout, g, n_global, rows)
        x = (x.float() - self.mean) * self.inv_std
        if a.random_erasing:
            x = random_erasing(x, a.random_erasing, g, n_global, rows)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _apply_randaugment(self, x: Tensor, g: torch.Generator) -> Tensor:
        # torchvision's RandAugment picks one op for the whole tensor it is given, so it runs per
        # sample (a Python loop: the slow part of this loader; used by the ConvNeXt recipe).
        # It draws from the global RNG, which we fork from ``g`` to keep the step reproducible.
        seed = int(torch.randint(0, 2**62, (1,), generator=g))
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return torch.stack([self._randaugment(img) for img in x])


class PlannedLoader:
    """What the device loader and the worker loader share: one ``BatchPlan`` (which rows, in
    which order, per rank and epoch) and one ``BatchPrep`` (augmentation and normalization on the
    device), so both produce the same batches from the same seed. Subclasses read the images and
    implement ``iterate``."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        device: torch.device | str,
        mean: list[float],
        std: list[float],
        augment: DeviceAugment | None,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        rank: int,
        world_size: int,
        channels_last: bool,
    ) -> None:
        self.device = torch.device(device)
        self.plan = BatchPlan(n, batch_size, shuffle=shuffle, drop_last=drop_last,
                              seed=seed, rank=rank, world_size=world_size)  # fmt: skip
        self.prep = BatchPrep(augment or DeviceAugment(), mean, std, device=self.device, seed=seed,
                              channels_last=channels_last)  # fmt: skip
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.iterate(0)

    def iterate(self, start_step: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        raise NotImplementedError


class DeviceLoader(PlannedLoader):
    def __init__(
        self,
        data: ArrayDataset,
        batch_size: int,
        *,
        device: torch.device | str,
        mean: list[float],
        std: list[float],
        augment: DeviceAugment | None = None,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
    ) -> None:
        super().__init__(len(data), batch_size, device=device, mean=mean, std=std,
                         augment=augment, shuffle=shuffle, drop_last=drop_last, seed=seed,
                         rank=rank, world_size=world_size, channels_last=channels_last)  # fmt: skip
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def iterate(self, start_step: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches ``start_step``, ``start_step + 1``, ... of the current epoch."""
        for step, idx, n_global, rows in self.plan.batches(self.epoch, start_step):
            idx = idx.to(self.device, non_blocking=True)
            x = self.prep(self.images[idx], self.epoch, step, n_global, rows)
            yield x, self.labels[idx]
