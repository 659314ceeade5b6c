"""Class activation maps: where in the image a classifier finds its class.

* CAM (Zhou, Khosla, Lapedriza, Oliva & Torralba, "Learning Deep Features for Discriminative
  Localization", CVPR 2016, arXiv 1512.04150, Eq. 2): for a head that is global average pooling
  then a linear layer, the map of class c is ``M_c(x, y) = sum_k w_k^c f_k(x, y)`` over the last
  feature maps ``f_k``; its spatial mean plus the bias is the logit of c.
* Grad-CAM (Selvaraju et al., ICCV 2017, arXiv 1610.02391, Eq. 1-2) for every other head (a
  LayerNorm before the classifier, a 1x1-conv head, an MLP): ``ReLU(sum_k a_k^c f_k)`` with
  ``a_k^c`` the spatial mean of d logit_c / d f_k. On a GAP + linear head it equals ReLU(CAM) up
  to a positive factor, which the tests check.

The maps are taken at ``forward_features`` (the last stage after the neck), upsampled bilinearly
to the input and scaled to [0, 1] for display. EfficientNet's Figure 7 draws them so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn

from convzoo.cliutil import UsageError, option, validate_config
from convzoo.data.datasets import DataError
from convzoo.layers.head import ClassifierHead
from convzoo.registry import create_model

METHODS = ("auto", "cam", "gradcam")


@dataclass(frozen=True)
class CamConfig:
    images: tuple[str, ...]
    models: tuple[str, ...] = ()  # checked against the checkpoints; needed with --pretrained
    checkpoints: tuple[str, ...] = ()  # convzoo training checkpoints, one per model
    pretrained: bool = False
    target: str | None = None  # class name or index; None = each model's top class
    method: str = option("auto", choices=METHODS)  # "auto": CAM where the head allows it
    output: str = "cam.png"
    device: str = option("cpu", device=True)

    def __post_init__(self) -> None:
        validate_config(self)
        if not self.images:
            raise UsageError("cam needs at least one IMAGE")
        if bool(self.checkpoints) == self.pretrained:
            raise UsageError("give either --checkpoint PATH[,PATH...] or --pretrained")
        if self.pretrained and not self.models:
            raise UsageError("--pretrained needs --model NAME[,NAME...]")
        if self.checkpoints and self.models and len(self.models) != len(self.checkpoints):
            raise UsageError(
                f"--model names {len(self.models)} models but --checkpoint gives "
                f"{len(self.checkpoints)} checkpoints; give one checkpoint per model"
            )


@dataclass(frozen=True)
class CamResult:
    image: str
    model: str
    method: str  # "CAM" | "Grad-CAM"
    class_index: int
    class_name: str
    probability: float
    peak_row: int  # argmax of the upsampled map, input pixels (of the model's input view)
    peak_col: int


def has_linear_gap_head(model: nn.Module) -> bool:
    """True for exactly pool -> dropout -> linear (a subclass may add a norm, as ConvNeXt's)."""
    head = getattr(model, "head", None)
    return type(head) is ClassifierHead and isinstance(head.fc, nn.Linear)


def class_activation_map(
    model: nn.Module, x: Tensor, target: int | None = None, method: str = "auto"
) -> tuple[Tensor, Tensor, str]:
    """(map at feature resolution ``(h, w)``, logits ``(classes,)``, method name) for one image
    ``x`` of shape ``(1, C, H, W)``; ``target`` None = the top class."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    use_cam = method == "cam" or (method == "auto" and has_linear_gap_head(model))
    if use_cam and not has_linear_gap_head(model):
        raise ValueError(f"{type(model).__name__}: CAM needs a pool + linear head; use Grad-CAM")
    with torch.enable_grad():
        feats = model.forward_features(x)  # (1, K, h, w)
        if feats.ndim != 4:
            raise ValueError(f"forward_features gave shape {tuple(feats.shape)}, not a map")
        if not use_cam and not feats.requires_grad:
            feats.requires_grad_(True)  # a frozen model: the gradient is still defined
        logits = model.forward_head(feats)[0]
        c = int(logits.argmax()) if target is None else target
        if not 0 <= c < logits.shape[0]:
            raise ValueError(f"class {c} out of range: the model has {logits.shape[0]} classes")
        if use_cam:
            weights = model.head.fc.weight[c]  # (K,)
            cam = torch.einsum("k,khw->hw", weights, feats[0])
            return cam.detach(), logits.detach(), "CAM"
        (grad,) = torch.autograd.grad(logits[c], feats)
        alpha = grad[0].mean(dim=(1, 2))  # (K,): a_k^c
        cam = F.relu(torch.einsum("k,khw->hw", alpha, feats[0]))
    return cam.detach(), logits.detach(), "Grad-CAM"


def upsample(cam: Tensor, size: tuple[int, int]) -> Tensor:
    """The map bilinearly resized to ``size`` and scaled to [0, 1] (a flat map is all zeros)."""
    up = F.interpolate(cam[None, None].float(), size=size, mode="bilinear", align_corners=False)
    up = up[0, 0]
    span = up.max() - up.min()
    return (up - up.min()) / span if span > 0 else torch.zeros_like(up)


@dataclass
class _Loaded:
    name: str
    model: nn.Module
    classes: list[str]
    transform: Callable[[Image.Image], Tensor]  # what the model expects, normalized
    mean: list[float]
    std: list[float]


def _load(cfg: CamConfig) -> list[_Loaded]:
    from convzoo.train.inference import load_trained

    out = []
    if cfg.checkpoints:
        for i, path in enumerate(cfg.checkpoints):
            if not Path(path).is_file():
                raise FileNotFoundError(f"--checkpoint {path}: no such file")
            model, ckpt = load_trained(path, device=cfg.device)
            name = ckpt["config"]["model"]
            if cfg.models and cfg.models[i] != name:
                raise UsageError(f"--checkpoint {path} holds {name}, not {cfg.models[i]}")
            mean, std = list(ckpt["mean"]), list(ckpt["std"])
            transform = _training_view(ckpt["image_size"], mean, std)
            out.append(_Loaded(name, model, list(ckpt["classes"]), transform, mean, std))
        return out
    from convzoo.pretrained import preprocess_transform

    for name in cfg.models:
        model = create_model(name, pretrained=True).to(cfg.device).eval()
        weights = model.pretrained_cfg
        prep = weights.preprocess
        classes = list(weights.class_names or (str(i) for i in range(model.num_classes)))
        out.append(_Loaded(name, model, classes, preprocess_transform(prep), list(prep.mean),
                           list(prep.std)))  # fmt: skip
    return out


def _read(path: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"IMAGE {path}: no such file") from None
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"IMAGE {path}: cannot read it as an image ({err})") from None


def _target(cfg: CamConfig, classes: list[str]) -> int | None:
    if cfg.target is None:
        return None
    if cfg.target in classes:
        return classes.index(cfg.target)
    if cfg.target.isdigit() and int(cfg.target) < len(classes):
        return int(cfg.target)
    raise ValueError(
        f"--class {cfg.target!r} is neither a class name nor an index of {classes[:10]}"
    )


def run_cam(cfg: CamConfig) -> list[CamResult]:
    """Maps for every (image, model); writes the PNG and a JSON of the results beside it."""
    loaded = _load(cfg)
    images = [_read(p) for p in cfg.images]
    results: list[CamResult] = []
    panels: list[list[tuple[Tensor, Tensor | None, str]]] = []
    for path, im in zip(cfg.images, images):
        row: list[tuple[Tensor, Tensor | None, str]] = []
        for m in loaded:
            x = m.transform(im)[None].to(cfg.device)
            target = _target(cfg, m.classes)
            cam, logits, method = class_activation_map(m.model, x, target, cfg.method)
            c = int(logits.argmax()) if target is None else target
            prob = float(logits.float().softmax(0)[c])
            up = upsample(cam.cpu(), tuple(x.shape[-2:]))
            peak = int(up.argmax())
            results.append(CamResult(path, m.name, method, c, m.classes[c], prob,
                                     peak // up.shape[1], peak % up.shape[1]))  # fmt: skip
            mean, std = torch.tensor(m.mean)[:, None, None], torch.tensor(m.std)[:, None, None]
            view = x[0].cpu() * std + mean  # what the model saw, un-normalized
            if not row:
                row.append((view.clamp(0, 1), None, Path(path).name))
            title = f"{m.name}\n{method}: {m.classes[c]} ({100 * prob:.0f}%)"
            row.append((view.clamp(0, 1), up, title))
        panels.append(row)
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    _draw(panels, out)
    out.with_suffix(".json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    return results


def _draw(panels: list[list[tuple[Tensor, Tensor | None, str]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(panels), len(panels[0])
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 0.8, 2.9 * rows), squeeze=False)
    mappable: Any = None
    for r, row in enumerate(panels):
        for c, (view, cam, title) in enumerate(row):
            ax = axes[r][c]
            ax.imshow(view.permute(1, 2, 0).numpy())
            if cam is not None:
                mappable = ax.imshow(cam.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(mappable, ax=axes, shrink=0.8, label="class activation (scaled to [0, 1])")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _training_view(
    size: int, mean: list[float], std: list[float]
) -> Callable[[Image.Image], Tensor]:
    """An image as training saw it: resized to size x size (as ``read_image`` does), normalized."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )
