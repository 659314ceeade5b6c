"""The DataLoader path for folders too large to hold decoded in memory.

Worker processes only decode: each image is read and resized to ``size`` x ``size`` uint8 exactly
as ``decode_folder`` does for the in-memory path. Batches are planned and augmented in the main
process by the same ``BatchPlan`` and ``BatchPrep`` as ``DeviceLoader``, so the two paths draw the
same batches, apply the same augmentations from the same (seed, epoch, step) generators, and a
run on either resumes mid-epoch exactly (random erasing's noise values aside, see ``augment``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from convzoo.data.datasets import (
    IMAGE_READ_ERRORS,
    BadImagePolicy,
    DataError,
    FolderDataset,
    read_image,
)
from convzoo.data.device_loader import DeviceAugment, PlannedLoader

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class FolderImages(TorchDataset[tuple[Tensor, int, bool]]):
    """Decodes one image per item: (uint8 (3, size, size), label, readable). An unreadable file
    raises with its path, or (``on_bad_image="skip"``) comes back as zeros marked unreadable."""

    def __init__(self, folder: FolderDataset, size: int, on_bad_image: BadImagePolicy) -> None:
        self.samples = folder.samples
        self.size = size
        self.on_bad_image = on_bad_image

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int, bool]:
        path, label = self.samples[i]
        try:
            img = torch.from_numpy(read_image(path, self.size)).permute(2, 0, 1)
        except IMAGE_READ_ERRORS as err:
            if self.on_bad_image == "skip":
                return torch.zeros(3, self.size, self.size, dtype=torch.uint8), label, False
            raise DataError(f"cannot read image {path}: {err}") from err
        return img, label, True


def _collate(items: list[tuple[Tensor, int, bool]]) -> tuple[Tensor, Tensor, Tensor]:
    if not items:  # a short last batch split over ranks can leave one rank nothing
        return (
            torch.empty(0, dtype=torch.uint8),
            torch.empty(0, dtype=torch.int64),
            torch.empty(0, dtype=torch.bool),
        )
    images = torch.stack([x for x, _, _ in items])
    labels = torch.tensor([y for _, y, _ in items], dtype=torch.int64)
    return images, labels, torch.tensor([ok for _, _, ok in items])


class WorkerLoader(PlannedLoader):
    """``DeviceLoader``'s batches from image files decoded by DataLoader workers."""

    def __init__(
        self,
        folder: FolderDataset,
        batch_size: int,
        *,
        size: int,
        mean: list[float],
        std: list[float],
        device: torch.device | str,
        augment: DeviceAugment | None = None,
        workers: int = 4,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
        on_bad_image: BadImagePolicy = "fail",
    ) -> None:
        super().__init__(len(folder), batch_size, device=device, mean=mean, std=std,
                         augment=augment, shuffle=shuffle, drop_last=drop_last, seed=seed,
                         rank=rank, world_size=world_size, channels_last=channels_last)  # fmt: skip
        self.dataset = FolderImages(folder, size, on_bad_image)
        self.workers = workers

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def iterate(self, start_step: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches ``start_step``, ``start_step + 1``, ... of the current epoch."""
        plan = list(self.plan.batches(self.epoch, start_step))
        loader = DataLoader(
            self.dataset,
            batch_sampler=[idx.tolist() for _, idx, _, _ in plan],
            num_workers=self.workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            # Its own generator: DataLoader otherwise draws its worker seed from the global RNG,
            # which shifts the dropout / drop-path draws of a run resumed mid-epoch.
            generator=torch.Generator().manual_seed(self.epoch),
        )
        for (step, _, n_global, rows), (x, y, ok) in zip(plan, loader):
            x = self.prep(x.to(self.device, non_blocking=True), self.epoch, step, n_global, rows)
            keep = ok.to(self.device)  # skipped unreadable images leave the batch after augmenting
            yield x[keep], y.to(self.device, non_blocking=True)[keep]
