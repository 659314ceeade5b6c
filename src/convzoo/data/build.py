"""From a ``--data`` argument to checked train and validation splits.

``data`` may be: ``None`` or ``"digits"`` (the embedded default), a folder holding torchvision's
``cifar-10-batches-py`` / ``cifar-100-python`` (or that folder itself), a folder with ``train/``
and ``val/`` class folders, a folder with only ``train/`` (such as the CIFAR-10 JPEG mirror), or a
folder of class folders. Without a ``val/`` split a stratified ``val_fraction`` is held out of the
training images with ``split_seed`` (45,000 / 5,000 on CIFAR-10 at the default 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from convzoo.data.datasets import (
    ArrayDataset,
    BadImagePolicy,
    DataError,
    Dataset,
    FolderDataset,
    check_same_classes,
    decode_folder,
    find_cifar,
    load_cifar,
    load_digits,
    scan_folder,
    stratified_split,
    verify_images,
)

# Decode a folder into memory (and onto the device) when it fits in this many bytes as uint8.
DECODE_LIMIT_BYTES = 4 << 30


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    classes: list[str]
    source: str  # a human description for logs

    @property
    def in_memory(self) -> bool:
        return isinstance(self.train, ArrayDataset)

    @property
    def skipped(self) -> list[str]:
        """Unreadable images dropped under ``on_bad_image="skip"`` (both splits)."""
        return sorted(set(self.train.skipped) | set(self.val.skipped))


def _held_out(ds: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    tr, va = stratified_split(ds.labels, val_fraction, seed)
    return ds.subset(tr), ds.subset(va)


def load_splits(
    data: str | None,
    *,
    image_size: int,
    download: bool = False,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    on_bad_image: BadImagePolicy = "fail",
    loader: str = "auto",
    split: str = "train",
) -> Splits:
    """Train and validation splits of ``data``; ``split="test"`` gives a CIFAR test set as val."""
    if loader not in ("auto", "device", "workers"):
        raise DataError(f"loader must be auto, device or workers, got {loader!r}")
    if data in (None, "", "digits"):
        ds = load_digits(image_size)
        tr, va = _held_out(ds, val_fraction, split_seed)
        return Splits(tr, va, ds.classes, "embedded scikit-learn digits (upsampled)")
    root = Path(data)
    if not root.exists():
        raise DataError(f"data directory {root} does not exist")
    cifar = find_cifar(root)
    if cifar is not None:
        if loader == "workers":
            raise DataError("CIFAR batches are in memory already: use --loader device or auto")
        train = load_cifar(root, cifar, "train", download)
        if split == "test":
            return Splits(train, load_cifar(root, cifar, "test"), train.classes, f"{cifar} test")
        tr, va = _held_out(train, val_fraction, split_seed)
        return Splits(tr, va, train.classes, f"{cifar} at {root}, held-out {val_fraction:.0%}")
    if not root.is_dir():
        raise DataError(f"--data {root} is not a directory")
    train_f, val_f, source = _folder_splits(root, val_fraction, split_seed)
    classes = train_f.classes
    n = len(train_f) + len(val_f)
    decode = loader == "device" or (
        loader == "auto" and n * 3 * image_size**2 <= DECODE_LIMIT_BYTES
    )
    if decode:
        tr = decode_folder(train_f, image_size, on_bad_image)
        va = decode_folder(val_f, image_size, on_bad_image)
        return Splits(tr, va, classes, source + " (decoded into memory)")
    return Splits(
        verify_images(train_f, on_bad_image), verify_images(val_f, on_bad_image), classes, source
    )


def _folder_splits(
    root: Path, val_fraction: float, split_seed: int
) -> tuple[FolderDataset, FolderDataset, str]:
    """The image files of a folder's train and validation splits (not read yet), and where they
    come from: ``train/`` and ``val/`` class folders, ``train/`` alone, or class folders."""
    train_f: Dataset
    val_f: Dataset
    if (root / "train").is_dir():
        train_f = scan_folder(root / "train")
        val_dir = next(
            (root / n for n in ("val", "valid", "validation") if (root / n).is_dir()), None
        )
        if val_dir is not None:
            val_f = scan_folder(val_dir)
            check_same_classes(train_f.classes, val_f.classes, str(root))
            source = f"ImageFolder {root}/train + {val_dir.name}"
        else:
            train_f, val_f = _held_out(train_f, val_fraction, split_seed)
            source = f"ImageFolder {root}/train, held-out {val_fraction:.0%} (seed {split_seed})"
    else:
        train_f, val_f = _held_out(scan_folder(root), val_fraction, split_seed)
        source = f"ImageFolder {root}, held-out {val_fraction:.0%} (seed {split_seed})"
    assert isinstance(train_f, FolderDataset) and isinstance(val_f, FolderDataset)
    return train_f, val_f, source
