"""The DataLoader path for folders too large to hold decoded in memory: torchvision transforms v2
in worker processes, sharded with ``DistributedSampler``.

Training transforms follow the usual practice by image size: CIFAR-sized inputs (< 128 px) get
crop-with-padding and flip; larger inputs get RandomResizedCrop and flip (the ImageNet recipe).
RandAugment and Random Erasing are added when the config asks for them. Evaluation resizes to
``size / 0.875`` and center-crops (large) or only resizes (small).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler
from torch.utils.data import Dataset as TorchDataset
from torchvision.transforms import v2

from convzoo.data.datasets import BadImagePolicy, DataError, FolderDataset

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def build_transform(
    size: int,
    train: bool,
    mean: list[float],
    std: list[float],
    *,
    crop_padding: int = 4,
    hflip: bool = True,
    randaugment_n: int = 0,
    randaugment_m: int = 9,
    random_erasing: float = 0.0,
) -> v2.Compose:
    small = size < 128
    ops: list[Any] = [v2.ToImage()]
    if train:
        if small:
            ops += [v2.Resize((size, size), antialias=True)]
            if crop_padding:
                ops += [v2.RandomCrop(size, padding=crop_padding)]
        else:
            ops += [v2.RandomResizedCrop(size, antialias=True)]
        if hflip:
            ops += [v2.RandomHorizontalFlip()]
        if randaugment_n:
            ops += [v2.RandAugment(randaugment_n, randaugment_m)]
    elif small:
        ops += [v2.Resize((size, size), antialias=True)]
    else:
        ops += [v2.Resize(round(size / 0.875), antialias=True), v2.CenterCrop(size)]
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    if train and random_erasing:
        ops += [v2.RandomErasing(p=random_erasing, value="random")]
    return v2.Compose(ops)


class FolderImages(TorchDataset):
    """Decodes one image per item; an unreadable file raises with its path (or is skipped)."""

    def __init__(self, folder: FolderDataset, transform: v2.Compose, on_bad_image: BadImagePolicy):
        self.samples = folder.samples
        self.transform = transform
        self.on_bad_image = on_bad_image

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int] | None:
        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                img = im.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as err:
            if self.on_bad_image == "skip":
                return None
            raise DataError(f"cannot read image {path}: {err}") from err
        return self.transform(img), label


def _collate(items: list[tuple[Tensor, int] | None]) -> tuple[Tensor, Tensor]:
    kept = [it for it in items if it is not None]  # skipped unreadable images
    if not kept:
        return torch.empty(0), torch.empty(0, dtype=torch.int64)
    return torch.stack([x for x, _ in kept]), torch.tensor([y for _, y in kept])


class WorkerLoader:
    """Same interface as ``DeviceLoader`` (``set_epoch``, ``iterate(start_step)``, ``len``)."""

    def __init__(
        self,
        folder: FolderDataset,
        batch_size: int,
        transform: v2.Compose,
        *,
        device: torch.device | str,
        workers: int = 4,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        on_bad_image: BadImagePolicy = "fail",
    ) -> None:
        self.dataset = FolderImages(folder, transform, on_bad_image)
        self.sampler = DistributedSampler(self.dataset, num_replicas=world_size, rank=rank,
                                          shuffle=shuffle, seed=seed, drop_last=drop_last)  # fmt: skip
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.workers = workers
        self.drop_last = drop_last
        self.seed = seed
        self.channels_last = channels_last
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.iterate(0)

    def iterate(self, start_step: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        # Resuming mid-epoch: the same sample order, minus the batches already trained on.
        # (The augmentation draws after a resume differ: workers seed from the loader's generator.)
        indices = list(self.sampler)[start_step * self.batch_size :]
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=indices,
            num_workers=self.workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            drop_last=self.drop_last,
            persistent_workers=False,
            generator=torch.Generator().manual_seed(self.seed * 7919 + self.epoch),
        )
        for x, y in loader:
            x = x.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)
