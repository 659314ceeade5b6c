"""Evaluation and prediction from a training checkpoint (``convzoo eval`` / ``convzoo predict``).

A checkpoint carries its TrainConfig, class names, normalization and input size, so the model and
its preprocessing are rebuilt exactly; ``weights="auto"`` uses the EMA weights when there are any.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from convzoo.cliutil import resolve_device
from convzoo.data.datasets import IMAGE_READ_ERRORS, ArrayDataset, DataError, read_image
from convzoo.data.device_loader import BatchPrep, DeviceAugment, DeviceLoader
from convzoo.train.checkpoint import check_training_checkpoint, load_checkpoint
from convzoo.train.config import TrainConfig
from convzoo.train.engine import build_model, evaluate
from convzoo.train.metrics import plot_confusion
from convzoo.train.state import Loader, run_splits


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
    model.load_state_dict(state)
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
) -> dict[str, Any]:
    """Top-1, top-5, per-class accuracy and a confusion-matrix PNG on the run's validation split
    (the same held-out split as training), or on CIFAR's test set with ``split="test"``."""
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
                              std=ckpt["std"], device=dev, workers=cfg.workers)  # fmt: skip
    result = evaluate(model, loader, len(ckpt["classes"]), dev, amp=cfg.amp)
    result["classes"] = ckpt["classes"]
    result["weights"] = ckpt["weights_used"]
    out = Path(output) if output is not None else Path(path).parent / "eval"
    out.mkdir(parents=True, exist_ok=True)
    result["confusion_png"] = str(plot_confusion(result["confusion"], ckpt["classes"],
                                                 out / "confusion.png"))  # fmt: skip
    return result


@torch.no_grad()
def predict_images(
    paths: list[str | Path], checkpoint: str | Path, top_k: int = 5, weights: str = "auto",
    device: str = "auto",
) -> list[list[tuple[str, float]]]:  # fmt: skip
    """Top-k (class name, probability) per image file, most probable first."""
    model, ckpt = load_trained(checkpoint, weights, device)
    dev = next(model.parameters()).device
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    batch = []
    for p in paths:  # read exactly as training read its images (decode_folder / WorkerLoader)
        try:
            batch.append(torch.from_numpy(read_image(Path(p), ckpt["image_size"])))
        except IMAGE_READ_ERRORS as err:
            raise DataError(f"cannot read image {p}: {err}") from err
    x = torch.stack(batch).permute(0, 3, 1, 2).to(dev)  # (N, H, W, C) -> (N, C, H, W)
    prep = BatchPrep(DeviceAugment(), ckpt["mean"], ckpt["std"], device=dev, seed=0,
                     channels_last=False)  # fmt: skip
    probs = model(prep(x, 0, 0, len(x), slice(0, len(x)))).float().softmax(dim=1).cpu()
    k = min(top_k, probs.shape[1])
    top = probs.topk(k, dim=1)
    classes = ckpt["classes"]
    return [
        [(classes[i], float(v)) for v, i in zip(vals.tolist(), idx.tolist())]
        for vals, idx in zip(top.values, top.indices)
    ]
