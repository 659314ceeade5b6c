"""Datasets: CIFAR-10/100 (torchvision's pickle layout), ImageFolder trees, and the embedded default.

Everything small enough is returned as an ``ArrayDataset``: uint8 images (N, C, H, W) and int64
labels, decoded once, ready to live on the training device (see ``device_loader``). Larger folders
stay a ``FolderDataset`` of (path, label) pairs read by DataLoader workers (see ``transforms``).

The embedded default is scikit-learn's handwritten digits (1,797 8x8 grey images of 0-9, shipped
inside scikit-learn, so no download): upsampled bilinearly to 32x32 and repeated to three channels,
it trains any CIFAR model out of the box.

Bad data fails before training starts: a missing directory, a class folder with no images, train
and validation folders with different class sets, and (with ``on_bad_image="fail"``, the default)
an unreadable image, named by its path. ``on_bad_image="skip"`` drops unreadable images and counts
them instead.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
BadImagePolicy = Literal["fail", "skip"]


class DataError(ValueError):
    """A problem with the user's data, raised before training starts."""


class NotARegularFile(OSError):
    """A FIFO, socket or device where a file is expected: opening it could block forever."""


# What reading one image can raise (PIL raises SyntaxError on some damaged files).
IMAGE_READ_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError)


def regular_file(path: str | Path) -> Path:
    """``path`` if it is a regular file (a symlink to one counts); ``NotARegularFile`` otherwise,
    checked before any ``open`` because opening a FIFO for reading waits for a writer."""
    path = Path(path)
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a regular file"
        raise NotARegularFile(f"{path} {what}")
    return path


@dataclass
class ArrayDataset:
    """Decoded images in memory: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: Tensor
    labels: Tensor
    classes: list[str]
    skipped: list[str] = field(default_factory=list)  # paths of unreadable images that were skipped

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise TypeError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                            f"{tuple(self.images.shape)}")  # fmt: skip
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: Tensor) -> ArrayDataset:
        return ArrayDataset(self.images[index], self.labels[index], self.classes, self.skipped)


@dataclass
class FolderDataset:
    """An ImageFolder tree as (path, label) pairs; images are decoded on demand."""

    samples: list[tuple[Path, int]]
    classes: list[str]
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> Tensor:
        return torch.tensor([label for _, label in self.samples], dtype=torch.int64)

    def subset(self, index: Tensor) -> FolderDataset:
        return FolderDataset([self.samples[i] for i in index.tolist()], self.classes, self.skipped)


Dataset = ArrayDataset | FolderDataset


# --------------------------------------------------------------------------------------- CIFAR
_CIFAR = {
    # name: (folder of torchvision's download, train files, test files, meta file, label keys)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", ("labels", "label_names")),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta",
                 ("fine_labels", "fine_label_names")),
}  # fmt: skip


def find_cifar(root: str | Path) -> str | None:
    """``"cifar10"``/``"cifar100"`` when ``root`` is (or contains) torchvision's CIFAR folder."""
    root = Path(root)
    for name, (folder, *_rest) in _CIFAR.items():
        if root.name == folder or (root / folder).is_dir():
            return name
    return None


def load_cifar(
    root: str | Path, name: str = "cifar10", split: str = "train", download: bool = False
) -> ArrayDataset:
    """CIFAR-10/100 from torchvision's pickle layout (``root/cifar-10-batches-py/...``)."""
    if name not in _CIFAR:
        raise DataError(f"unknown CIFAR dataset {name!r}; choose one of {sorted(_CIFAR)}")
    folder, train_files, test_files, meta_file, (label_key, names_key) = _CIFAR[name]
    root = Path(root)
    base = root if root.name == folder else root / folder
    if not base.is_dir():
        if not download:
            raise DataError(
                f"{base} does not exist; pass --download to fetch {name} (needs internet) or "
                f"point --data at the folder that holds {folder}/"
            )
        import torchvision

        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        cls(str(base.parent), train=True, download=True)
    files = train_files if split == "train" else test_files
    images, labels = [], []
    for fname in files:
        entry = _cifar_pickle(base / fname)
        try:
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(entry[label_key])
        except (KeyError, ValueError, TypeError) as err:
            raise DataError(f"cannot read CIFAR batch {base / fname}: {err!r}") from err
    try:
        classes = [str(c) for c in _cifar_pickle(base / meta_file)[names_key]]
    except (KeyError, TypeError) as err:
        raise DataError(f"cannot read CIFAR class names {base / meta_file}: {err!r}") from err
    return ArrayDataset(
        torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64), classes
    )


def _cifar_pickle(path: Path) -> dict[str, Any]:
    """One of torchvision's CIFAR pickles. They hold only arrays, lists and strings, but a pickle
    can run code: read only the files of the dataset folder the user pointed at."""
    try:
        with open(regular_file(path), "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, AttributeError) as err:
        raise DataError(f"cannot read CIFAR file {path}: {err!r} (truncated or damaged?)") from err
    if not isinstance(entry, dict):
        raise DataError(f"cannot read CIFAR file {path}: not a CIFAR pickle")
    return entry


# --------------------------------------------------------------------------------- ImageFolder
def scan_folder(root: str | Path) -> FolderDataset:
    """Class folders of images -> (path, label) pairs, sorted; errors name the bad folder."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data directory {root} does not exist")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root} has no class folders (expected {root}/<class>/<image> files)")
    samples: list[tuple[Path, int]] = []
    skipped: list[str] = []  # FIFOs, sockets, devices named like images: never opened
    for label, d in enumerate(class_dirs):
        named = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        files = [p for p in named if p.is_file()]
        skipped += [str(p) for p in named if not p.is_file() and not p.is_dir()]
        if not files:
            raise DataError(
                f"class folder {d} holds no images (extensions: {', '.join(IMAGE_EXTENSIONS)})"
            )
        samples.extend((p, label) for p in files)
    return FolderDataset(samples, [d.name for d in class_dirs], skipped)


def check_same_classes(train: Sequence[str], val: Sequence[str], where: str) -> None:
    if list(train) != list(val):
        only_train = sorted(set(train) - set(val))
        only_val = sorted(set(val) - set(train))
        raise DataError(
            f"class folders differ between the splits of {where}: only in train {only_train}, "
            f"only in val {only_val}"
        )


def read_image(path: Path, size: int | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3); resized to ``size`` x ``size`` when the image is another size."""
    with Image.open(regular_file(path)) as im:
        im = im.convert("RGB")
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        return np.array(im, dtype=np.uint8)  # a writable copy (torch.from_numpy needs one)


def cache_dir() -> Path:
    """Where decoded folders are kept: ``$CONVZOO_CACHE`` or ``~/.cache/convzoo``."""
    return Path(os.environ.get("CONVZOO_CACHE", Path.home() / ".cache" / "convzoo")) / "decoded"


def _decode_key(folder: FolderDataset, size: int, on_bad_image: str) -> str:
    h = hashlib.sha1(f"v1 {size} {on_bad_image} {folder.classes}".encode())
    for path, label in folder.samples:
        st = path.stat()
        h.update(f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def decode_folder(
    folder: FolderDataset, size: int, on_bad_image: BadImagePolicy = "fail", cache: bool = True
) -> ArrayDataset:
    """Decode every image once into an ``ArrayDataset`` of ``size`` x ``size`` RGB images.

    Decoding runs on a thread pool (PIL releases the GIL while decoding). The result is cached
    under ``cache_dir()``, keyed by every file's path, size and mtime, so the next run over the
    same folder (50,000 CIFAR JPEGs: tens of seconds) loads it in well under a second.
    """
    key = _decode_key(folder, size, on_bad_image) if cache else ""
    cached = cache_dir() / f"{key}.pt"
    if cache and cached.is_file():
        try:
            d = torch.load(cached, weights_only=True)
            return ArrayDataset(d["images"], d["labels"], folder.classes, d["skipped"])
        except Exception:  # a damaged cache file is rebuilt below
            cached.unlink(missing_ok=True)

    def read(path: Path) -> np.ndarray | Exception:
        try:
            return read_image(path, size)
        except IMAGE_READ_ERRORS as err:
            return err

    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        arrays = list(pool.map(read, [p for p, _ in folder.samples], chunksize=256))
    keep, skipped = [], list(folder.skipped)
    for i, ((path, _), arr) in enumerate(zip(folder.samples, arrays)):
        if isinstance(arr, Exception):
            if on_bad_image == "fail":
                raise DataError(
                    f"cannot read image {path}: {arr} (use --on-bad-image skip to skip such files)"
                ) from arr
            skipped.append(str(path))
        else:
            keep.append(i)
    labels = torch.tensor([folder.samples[i][1] for i in keep], dtype=torch.int64)
    good = [a for a in arrays if not isinstance(a, Exception)]
    out = np.stack(good) if good else np.empty((0, size, size, 3), np.uint8)
    # (N, H, W, C) -> (N, C, H, W)
    images = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
    if cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"images": images, "labels": labels, "skipped": skipped}, tmp)
        os.replace(tmp, cached)  # atomic: concurrent runs never read half a file
    return ArrayDataset(images, labels, folder.classes, skipped)


def verify_images(folder: FolderDataset, on_bad_image: BadImagePolicy = "fail") -> FolderDataset:
    """Open every image header (cheap) for the worker path; fail or skip on unreadable files."""
    keep, skipped = [], list(folder.skipped)
    for path, label in folder.samples:
        try:
            with Image.open(regular_file(path)) as im:
                im.verify()
        except IMAGE_READ_ERRORS as err:
            if on_bad_image == "fail":
                raise DataError(
                    f"cannot read image {path}: {err} (use --on-bad-image skip to skip such files)"
                ) from err
            skipped.append(str(path))
            continue
        keep.append((path, label))
    return FolderDataset(keep, folder.classes, skipped)


# ------------------------------------------------------------------------------ embedded default
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(pixels (N, 64) in 0..16, targets (N,)) of scikit-learn's digits.

    Read straight from the CSV that scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``:
    64 pixel columns then the target) because importing scikit-learn pulls in SciPy and takes
    seconds; its ``load_digits`` is the fallback when the file moves.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",", dtype=np.float32)
            return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64)


def load_digits(size: int = 32) -> ArrayDataset:
    """scikit-learn's 8x8 digits, upsampled to ``size`` x ``size`` and repeated to RGB."""
    pixels, target = _digits_arrays()
    # Pixel values are 0..16 ink counts; scale to 0..255 and (N, 64) -> (N, 1, 8, 8).
    x = torch.from_numpy(pixels).reshape(-1, 1, 8, 8) * (255.0 / 16.0)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    images = x.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    return ArrayDataset(images, torch.from_numpy(target), [str(c) for c in range(10)])


# ------------------------------------------------------------------------------------- splits
def stratified_split(labels: Tensor, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (train, val) holding out ``val_fraction`` of every class, fixed by ``seed``.

    CIFAR-10's 50,000 with ``val_fraction=0.1`` gives the usual 45,000 / 5,000 (500 per class).
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    g = torch.Generator().manual_seed(seed)
    train_idx, val_idx = [], []
    for c in sorted(set(labels.tolist())):
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = max(1, round(len(idx) * val_fraction))
        if n_val >= len(idx):
            raise DataError(f"class {c} has {len(idx)} images: too few to hold out a validation "
                            f"split of {val_fraction:.0%}")  # fmt: skip
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return torch.cat(train_idx).sort().values, torch.cat(val_idx).sort().values


def channel_stats(images: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, on the 0..1 scale (normalization constants)."""
    x = images[: min(len(images), 10000)].to(torch.float64) / 255.0
    return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
