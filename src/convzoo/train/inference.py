"""Evaluation and prediction (``convzoo eval`` / ``convzoo predict``), from a training checkpoint
or from published weights.

A checkpoint carries its TrainConfig, class names, normalization and input size, so the model and
its preprocessing are rebuilt exactly; ``weights="auto"`` uses the EMA weights when there are any.
Published weights (``eval_pretrained``) carry their preprocessing and class names on the model
(``model.pretrained_cfg``); an image folder's class folders are matched to those classes by name.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from convzoo.cliutil import resolve_device
from convzoo.data.datasets import (
    IMAGE_READ_ERRORS,
    ArrayDataset,
    DataError,
    read_image,
    regular_file,
    scan_folder,
)
from convzoo.data.device_loader import BatchPrep, DeviceAugment, DeviceLoader
from convzoo.train.checkpoint import check_training_checkpoint, load_checkpoint
from convzoo.train.config import TrainConfig
from convzoo.train.engine import build_model, evaluate
from convzoo.train.metrics import plot_confusion
from convzoo.train.state import Loader, load_weights, run_splits

if TYPE_CHECKING:
    from convzoo.pretrained import Preprocess, Pretrained, PretrainedWeights


def load_trained(
    path: str | Path, weights: str = "auto", device: str = "auto"
) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode on ``device``, checkpoint) from a convzoo training checkpoint."""
    if weights not in ("auto", "model", "ema"):
        raise ValueError(f"weights must be auto, model or ema, got {weights!r}")
    ckpt = load_checkpoint(path)
    check_training_checkpoint(ckpt, path)
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = build_model(cfg, len(ckpt["classes"]), fresh=False)
    use_ema = ckpt.get("ema") is not None and weights in ("auto", "ema")
    if weights == "ema" and not use_ema:
        raise ValueError(f"{path} holds no EMA weights (the run had no --ema-decay)")
    if use_ema:
        # ModelEma's state: "module.<name>" entries plus its update counter.
        state = {k[len("module.") :]: v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    else:
        state = ckpt["model"]
    load_weights(model, state, path)
    ckpt["weights_used"] = "ema" if use_ema else "model"
    return model.to(resolve_device(device)).eval(), ckpt


def eval_checkpoint(
    path: str | Path,
    data: str | None = None,
    *,
    split: str = "val",
    weights: str = "auto",
    batch_size: int = 256,
    device: str = "auto",
    output: str | Path | None = None,
    model_name: str | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Top-1, top-5, per-class accuracy and a confusion-matrix PNG on the run's validation split
    (the same held-out split as training), or on CIFAR's test set with ``split="test"``.
    ``workers``: DataLoader workers for a folder too large to decode (default: the run's)."""
    model, ckpt = load_trained(path, weights, device)
    cfg = TrainConfig.from_dict(ckpt["config"])
    if model_name is not None and model_name != cfg.model:
        raise ValueError(f"{path} holds a {cfg.model} checkpoint, not {model_name}")
    dev = next(model.parameters()).device
    splits = run_splits(cfg, ckpt["image_size"], data=data,
                        split="test" if split == "test" else "train")  # fmt: skip
    if splits.classes != ckpt["classes"]:
        raise DataError(f"the data's classes {splits.classes[:10]}... differ from the checkpoint's "
                        f"{ckpt['classes'][:10]}...")  # fmt: skip
    loader: Loader
    if isinstance(splits.val, ArrayDataset):
        loader = DeviceLoader(
            splits.val, batch_size, device=dev, mean=ckpt["mean"], std=ckpt["std"]
        )
    else:
        from convzoo.data.transforms import WorkerLoader

        loader = WorkerLoader(splits.val, batch_size, size=ckpt["image_size"], mean=ckpt["mean"],
                              std=ckpt["std"], device=dev,
                              workers=cfg.workers if workers is None else workers)  # fmt: skip
    result = evaluate(model, loader, len(ckpt["classes"]), dev, amp=cfg.amp)
    result["classes"] = ckpt["classes"]
    result["weights"] = ckpt["weights_used"]
    out = Path(output) if output is not None else Path(path).parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    result["confusion_png"] = str(plot_confusion(result["confusion"], ckpt["classes"],
                                                 out / "confusion.png"))  # fmt: skip
    return result


# ------------------------------------------------------------------------- published weights
class _Files(TorchDataset[tuple[Tensor, int, str]]):
    """One preprocessed image per item: (image, label, ""), or (zeros, label, why) when the file
    cannot be read, so that the main process names the file in one line (an error raised inside
    a DataLoader worker arrives wrapped in the worker's traceback)."""

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        transform: Callable[[Image.Image], Tensor],
        shape: tuple[int, int, int],
    ) -> None:
        self.samples = samples
        self.transform = transform
        self.shape = shape

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int, str]:
        path, label = self.samples[i]
        try:
            with Image.open(regular_file(path)) as im:
                return self.transform(im.convert("RGB")), label, ""
        except IMAGE_READ_ERRORS as err:
            return torch.zeros(self.shape), label, f"cannot read image {path}: {err}"


class FileLoader:
    """Batches of image files through ``transform`` (decoded in ``workers`` DataLoader worker
    processes, 0: in this one), in order, on ``device``: the ``Loader`` that ``evaluate`` reads.
    An unreadable file raises ``DataError`` naming it."""

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        transform: Callable[[Image.Image], Tensor],
        shape: tuple[int, int, int],
        batch_size: int,
        device: torch.device,
        workers: int = 4,
    ) -> None:
        self.dataset = _Files(samples, transform, shape)
        self.batch_size = batch_size
        self.device = device
        self.workers = workers

    @property
    def num_samples(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Every epoch reads the same files in the same order."""

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.iterate(0)

    def iterate(self, start_step: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        n, size = self.num_samples, self.batch_size
        batches = [list(range(i, min(i + size, n))) for i in range(start_step * size, n, size)]
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda")  # fmt: skip
        for x, y, errors in loader:
            failed = next((e for e in errors if e), None)
            if failed is not None:
                raise DataError(failed)
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


_WNID = re.compile(r"n\d{8}")


def class_indices(folders: Sequence[str], names: Sequence[str] | None, whose: str) -> list[int]:
    """The model output index of each class folder, matched by name: a class name of the weights
    (``tench``) or, for ImageNet-1k weights, a WordNet ID (``n01440764``). The folders may be
    any subset of the classes; one that names none of them raises ``DataError``."""
    from convzoo.pretrained import imagenet_wnids, is_imagenet_classes

    if not names:
        raise DataError(f"{whose} carry no class names: the data's class folders cannot be "
                        f"matched to the model's outputs")  # fmt: skip
    imagenet = is_imagenet_classes(names)
    index = {name: i for i, name in enumerate(names)}
    wnids = imagenet_wnids() if imagenet else None
    if wnids is not None:
        index |= {wnid: i for i, wnid in enumerate(wnids)}
    unknown = [f for f in folders if f not in index]
    if imagenet and wnids is None and all(_WNID.fullmatch(f) for f in folders):
        if len(folders) == len(names):  # ImageNet's class indices are its sorted WordNet IDs
            return list(range(len(folders)))
        raise DataError(f"class folders named by WordNet ID ({folders[0]}, ...) cover {len(folders)}"
                        f" of the 1000 ImageNet classes; matching a subset needs timm's ImageNet "
                        f"table (pip install timm), or name the folders by class ('tench')")  # fmt: skip
    if unknown:
        more = f", and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        hint = ("name them by class ('tench') or WordNet ID ('n01440764')" if imagenet
                else f"its classes: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}")  # fmt: skip
        raise DataError(
            f"{len(unknown)} of the data's {len(folders)} class folders name no class of {whose}"
            f" ({len(names)} classes): {', '.join(map(repr, unknown[:5]))}{more}; {hint}"
        )
    indices = [index[f] for f in folders]
    seen: dict[int, str] = {}
    for folder, i in zip(folders, indices, strict=True):
        if i in seen:
            raise DataError(f"class folders {seen[i]!r} and {folder!r} are the same class "
                            f"({names[i]!r}) of {whose}")  # fmt: skip
        seen[i] = folder
    return indices


def eval_pretrained(
    name: str,
    pretrained: Pretrained,
    data: str | Path,
    *,
    batch_size: int = 256,
    device: str = "auto",
    output: str | Path | None = None,
    workers: int = 4,
    **preprocess: Any,
) -> dict[str, Any]:
    """Top-1, top-5, per-class accuracy and a confusion-matrix PNG of ``name`` holding published
    weights (``pretrained`` as ``create_model`` takes it: ``True``, ``"torchvision"``,
    ``"timm"`` or a checkpoint path) on every image of an image folder.

    ``data``: class folders of images, or a folder whose ``val/`` (``valid/``, ``validation/``)
    holds them. Each class folder is matched by name to the weights' classes (``class_indices``),
    so ImageNet's validation set in its usual WordNet-ID folders, or any subset of its classes,
    evaluates as it is. The model predicts over all its classes: top-1 counts only the folder's
    own class. Images are preprocessed as the weights expect (``model.pretrained_cfg``);
    ``preprocess`` replaces fields of it (``resize``, ``crop``, ``interpolation``, ``mean``,
    ``std``; ``None`` keeps the weights' value).
    """
    from convzoo.pretrained import PretrainedError, preprocess_transform
    from convzoo.registry import create_model

    if pretrained is False:
        raise PretrainedError("eval_pretrained needs weights: pretrained=True, 'torchvision', "
                              "'timm' or a checkpoint path")  # fmt: skip
    root = Path(data)
    root = next((root / n for n in ("val", "valid", "validation") if (root / n).is_dir()), root)
    folder = scan_folder(root)
    model = create_model(name, pretrained=pretrained)
    weights = cast("PretrainedWeights", model.pretrained_cfg)
    if model.in_channels != 3:
        raise DataError(f"{name} takes {model.in_channels} input channels; eval reads RGB images")
    prep = _preprocess(weights.preprocess, model.in_channels, preprocess)
    whose = f"{name}'s {weights.library} weights"
    indices = class_indices(folder.classes, weights.class_names, whose)
    dev = resolve_device(device)
    model = model.to(dev).eval()
    samples = [(path, indices[label]) for path, label in folder.samples]
    shape = (model.in_channels, prep.crop, prep.crop)
    loader = FileLoader(samples, preprocess_transform(prep), shape, batch_size, dev, workers)
    result = evaluate(model, loader, model.num_classes, dev)
    confusion, classes = _folder_confusion(result["confusion"], indices, list(folder.classes))
    result |= {
        "classes": list(folder.classes),
        "per_class": [result["per_class"][i] for i in indices],
        "confusion": confusion,
        "weights": f"{weights.library} {weights.weights}",
        "preprocess": prep,
        "data": str(root),
    }
    out = Path(output) if output is not None else Path("runs") / f"{name}-pretrained" / "eval"
    out.mkdir(parents=True, exist_ok=True)
    result["confusion_png"] = str(plot_confusion(confusion, classes, out / "confusion.png"))
    return result


def _folder_confusion(
    full: Tensor, indices: list[int], classes: list[str]
) -> tuple[Tensor, list[str]]:
    """The folder's classes' view of the model's confusion matrix ``full``: their rows, their
    columns and, when the model has classes the folder lacks, one "other" column counting
    predictions of those (its row all zeros)."""
    rows = full[indices]
    confusion = rows[:, indices]
    if len(indices) < full.shape[1]:
        confusion = torch.cat([confusion, (rows.sum(1) - confusion.sum(1))[:, None]], dim=1)
        confusion = torch.cat([confusion, torch.zeros_like(confusion[:1])])
        classes = [*classes, "(other classes)"]
    return confusion, classes


def _preprocess(weights: Preprocess, channels: int, changes: dict[str, Any]) -> Preprocess:
    """The weights' preprocessing with ``changes`` applied (``None`` values keep theirs)."""
    known = {f.name for f in dataclasses.fields(weights)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise TypeError(f"unknown preprocessing field(s) {unknown}; valid: {sorted(known)}")
    prep = dataclasses.replace(weights, **{k: v for k, v in changes.items() if v is not None})
    prep = dataclasses.replace(prep, mean=tuple(prep.mean), std=tuple(prep.std))
    for key in ("mean", "std"):
        if len(getattr(prep, key)) != channels:
            raise DataError(f"{key} needs {channels} values (one per input channel), got "
                            f"{list(getattr(prep, key))}")  # fmt: skip
    if min(prep.std) <= 0:
        raise DataError(f"std values must be > 0, got {list(prep.std)}")
    if prep.resize < 1 or prep.crop < 1:
        raise DataError(f"resize and crop must be >= 1 pixel, got {prep.resize} and {prep.crop}")
    return prep


@torch.no_grad()
def classify_files(
    model: nn.Module,
    paths: Sequence[str | Path],
    read: Callable[[Path], Tensor],
    class_names: Sequence[str] | None,
    top_k: int = 5,
    *,
    prepare: Callable[[Tensor], Tensor] | None = None,
    error: type[Exception] = DataError,
) -> list[list[tuple[str, float]]]:
    """Top-k (class name, probability) per image file, most probable first: ``read`` turns each
    file into a (C, H, W) tensor, the batch goes to the model's device, through ``prepare`` (if
    any) and the model in eval mode. An unreadable file raises ``error`` naming it. Classes
    without a name (``class_names`` None) are named by their index."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    batch = []
    for p in paths:
        try:
            batch.append(read(Path(p)))
        except IMAGE_READ_ERRORS as err:
            raise error(f"cannot read image {p}: {err}") from err
    x = torch.stack(batch).to(next(model.parameters()).device)
    probs = model.eval()(prepare(x) if prepare else x).float().softmax(dim=1).cpu()
    names = list(class_names) if class_names else [str(i) for i in range(probs.shape[1])]
    top = probs.topk(min(top_k, probs.shape[1]), dim=1)
    return [
        [(names[i], float(v)) for v, i in zip(vals.tolist(), idx.tolist(), strict=True)]
        for vals, idx in zip(top.values, top.indices, strict=True)
    ]


def predict_images(
    paths: list[str | Path], checkpoint: str | Path, top_k: int = 5, weights: str = "auto",
    device: str = "auto",
) -> list[list[tuple[str, float]]]:  # fmt: skip
    """Top-k (class name, probability) per image file, most probable first."""
    model, ckpt = load_trained(checkpoint, weights, device)
    dev = next(model.parameters()).device
    size = ckpt["image_size"]
    prep = BatchPrep(DeviceAugment(), ckpt["mean"], ckpt["std"], device=dev, seed=0,
                     channels_last=False)  # fmt: skip

    def read(path: Path) -> Tensor:  # exactly as training read its images (decode_folder)
        return torch.from_numpy(read_image(path, size)).permute(2, 0, 1)  # (H, W, C) -> (C, H, W)

    return classify_files(model, paths, read, ckpt["classes"], top_k,
                          prepare=lambda x: prep(x, 0, 0, len(x), slice(0, len(x))))  # fmt: skip
