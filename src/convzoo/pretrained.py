"""Published weights by name: torchvision's and timm's, fetched by their own loaders.

``load_pretrained(name, pretrained)`` builds the library's model with its own loading code, so the
file lands in (and is read from) that library's usual cache: torchvision's weights enum fetches
into ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/hub/checkpoints``), timm's
``pretrained_cfg`` into the Hugging Face hub cache (``$HF_HOME/hub``) or, for URL weights, the
torch hub cache. The module is then converted (``convzoo.interop``) and checked on a probe input.
The weights' preprocessing and class names travel on the model as ``model.pretrained_cfg``.

``pretrained=True`` prefers torchvision's weights where torchvision has the architecture (its
ImageNet-1k weights are the reference most papers and tutorials quote), else timm's. A path loads
a ``convzoo train`` checkpoint (``last.pt``) instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from convzoo.interop.convert import Library, convert, source_name
from convzoo.registry import create_model, list_models

Pretrained = bool | Literal["torchvision", "timm"] | str | os.PathLike[str]

__all__ = [
    "Preprocess",
    "PretrainedError",
    "PretrainedWeights",
    "describe_pretrained",
    "imagenet_wnids",
    "is_imagenet_classes",
    "list_pretrained",
    "load_pretrained",
    "parse_pretrained",
    "predict",
    "preprocess_transform",
    "published_weights",
]


class PretrainedError(ValueError):
    pass


@dataclass(frozen=True)
class Preprocess:
    """What the weights expect: resize the shorter side, center-crop, normalize (pixels in 0..1)."""

    resize: int  # shorter side after resizing, pixels
    crop: int  # center crop, pixels
    interpolation: str  # "bilinear" | "bicubic" | "nearest"
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class PretrainedWeights:
    """Where a model's weights came from and how to feed it."""

    library: str  # "torchvision" | "timm" | "checkpoint"
    weights: str  # torchvision enum member, timm "arch.tag", or the checkpoint path
    location: str  # URL or Hugging Face hub id the library fetches from (or the file)
    preprocess: Preprocess
    class_names: tuple[str, ...] | None  # index -> name; None if unknown


def _imagenet_classes() -> tuple[str, ...]:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return tuple(_IMAGENET_CATEGORIES)


def is_imagenet_classes(names: Sequence[str] | None) -> bool:
    """Whether ``names`` are ImageNet-1k's 1000 classes in their index order."""
    return names is not None and tuple(names) == _imagenet_classes()


@cache
def imagenet_wnids() -> tuple[str, ...] | None:
    """ImageNet-1k's WordNet IDs in class-index order (``n01440764`` is class 0, tench), from
    timm's table; ``None`` without timm. They are the class folder names of ImageNet's own
    train and validation sets, and sorted they are the index order."""
    if importlib.util.find_spec("timm") is None:
        return None
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo("imagenet-1k").label_names())


@cache
def _torchvision_weights(name: str) -> Any:
    """torchvision's default weights enum member for ``name`` (``None`` if it has none)."""
    theirs = source_name(name, "torchvision")
    if theirs is None:
        return None
    import torchvision

    return torchvision.models.get_model_weights(theirs).DEFAULT


@cache
def _timm_weights(name: str) -> str | None:
    """timm's ``arch.tag`` of ImageNet-1k weights for ``name``: its default tag if that is a
    1000-class one, else the first 1000-class tag (``None`` if there is none)."""
    theirs = source_name(name, "timm")
    if theirs is None:
        return None
    import timm

    tags = timm.list_pretrained(f"{theirs}.*")
    default = timm.models.get_pretrained_cfg(theirs)
    if default is not None and default.num_classes == 1000 and f"{theirs}.{default.tag}" in tags:
        return f"{theirs}.{default.tag}"
    for tag in tags:
        cfg = timm.models.get_pretrained_cfg(tag)
        if cfg is not None and cfg.num_classes == 1000:
            return tag
    return None


def published_weights(name: str, library: Library) -> PretrainedWeights | None:
    """What ``library`` publishes for our ``name`` (nothing is downloaded), or ``None``."""
    if library == "torchvision":
        weights = _torchvision_weights(name)
        if weights is None:
            return None
        t = weights.transforms()
        prep = Preprocess(
            resize=int(t.resize_size[0]),
            crop=int(t.crop_size[0]),
            interpolation=t.interpolation.value,
            mean=tuple(t.mean),
            std=tuple(t.std),
        )
        member = f"{type(weights).__name__}.{weights.name}"
        return PretrainedWeights(
            "torchvision", member, weights.url, prep, tuple(weights.meta["categories"])
        )
    tag = _timm_weights(name)
    if tag is None:
        return None
    import timm

    cfg = timm.models.get_pretrained_cfg(tag)
    assert cfg is not None  # _timm_weights found it
    size = cfg.input_size[-1]
    prep = Preprocess(
        # timm's eval transform resizes to size / crop_pct, then center-crops size.
        resize=int(size / cfg.crop_pct),
        crop=size,
        interpolation=cfg.interpolation,
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
    )
    return PretrainedWeights("timm", tag, str(cfg.hf_hub_id or cfg.url), prep, _imagenet_classes())


def list_pretrained(library: Library | None = None) -> list[str]:
    """Our models with published ImageNet-1k weights (from ``library``, or from either)."""
    libraries: tuple[Library, ...] = (library,) if library else ("torchvision", "timm")
    return [n for n in list_models() if any(published_weights(n, lib) for lib in libraries)]


def describe_pretrained(name: str) -> str:
    """The published weights of ``name``, the one ``pretrained=True`` takes first ("" if none)."""
    found = [w for lib in ("torchvision", "timm") if (w := published_weights(name, lib))]
    return ", ".join(f"{w.library}: {w.weights}" for w in found)


def load_pretrained(
    name: str, pretrained: Pretrained = True, *, check: bool = True, **overrides: Any
) -> nn.Module:
    """Our ``name`` model holding published (or checkpointed) weights, checked on a probe input.

    ``pretrained``: ``True`` (torchvision's weights where it has the architecture, else timm's),
    ``"torchvision"``, ``"timm"``, or the path of a ``convzoo train`` checkpoint. ``num_classes``
    other than the weights' replaces the classifier (``reset_classifier``); other overrides are
    config fields as in ``create_model``.
    """
    if pretrained is True or pretrained in ("torchvision", "timm"):
        libraries: tuple[Library, ...] = (
            ("torchvision", "timm") if pretrained is True else (pretrained,)  # type: ignore[assignment]
        )
        for library in libraries:
            weights = published_weights(name, library)
            if weights is not None:
                return _from_library(name, weights, check, overrides)
        if importlib.util.find_spec("timm") is None:
            missing_timm = " (timm, which publishes more, is not installed: pip install timm)"
        else:
            missing_timm = ""
        which = "published weights" if pretrained is True else f"{pretrained} weights"
        have = list_pretrained(None if pretrained is True else pretrained)  # type: ignore[arg-type]
        raise PretrainedError(
            f"{name} has no {which}; models that have them: {', '.join(have)} "
            f"(or pass pretrained=PATH to a convzoo train checkpoint){missing_timm}"
        )
    # A word that names no file is a misspelled source, not a checkpoint path.
    word = isinstance(pretrained, str) and not any(c in pretrained for c in "/\\.")
    if word and not os.path.exists(pretrained):
        raise PretrainedError(
            f"unknown weights source {pretrained!r}: expected 'torchvision', 'timm', True "
            f"(auto on the command line) or the path of a convzoo train checkpoint"
        )
    if isinstance(pretrained, str | os.PathLike):
        return _from_checkpoint(name, Path(pretrained), overrides)
    raise PretrainedError(
        f"pretrained={pretrained!r}: expected True, False, 'torchvision', 'timm' or a checkpoint path"
    )


def _from_library(
    name: str, weights: PretrainedWeights, check: bool, overrides: dict[str, Any]
) -> nn.Module:
    num_classes = overrides.pop("num_classes", None)
    if overrides.get("in_channels", 3) != 3:
        raise PretrainedError(f"{name}: published weights take 3 input channels")
    overrides.pop("in_channels", None)
    fetch = _fetch_torchvision if weights.library == "torchvision" else _fetch_timm
    source = fetch(name, weights)
    model = convert(name, source, weights.library, check=check, **overrides)  # type: ignore[arg-type]
    if num_classes is not None and num_classes != model.num_classes:
        model.reset_classifier(num_classes)
        weights = PretrainedWeights(
            weights.library, weights.weights, weights.location, weights.preprocess, None
        )
    model.pretrained_cfg = weights
    return model


# Seconds one network operation of a fetch (a connect, one read) may wait: torch.hub's urlopen
# sets no timeout of its own, so a network that drops packets would leave it waiting forever.
NETWORK_TIMEOUT_S = 60.0


@contextlib.contextmanager
def _network_timeout() -> Iterator[None]:
    """``NETWORK_TIMEOUT_S`` as the socket default while fetching, unless one is set already."""
    previous = socket.getdefaulttimeout()
    if previous is None:
        socket.setdefaulttimeout(NETWORK_TIMEOUT_S)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _fetch_torchvision(name: str, weights: PretrainedWeights) -> nn.Module:
    import torchvision

    enum = _torchvision_weights(name)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(enum.url).path)
    try:
        with _network_timeout():
            return torchvision.models.get_model(source_name(name, "torchvision"), weights=enum)
    except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError
        raise PretrainedError(
            f"could not load torchvision weights {weights.weights} from {enum.url} "
            f"(cache file {cached}, {'present' if cached.is_file() else 'absent'}): "
            f"{type(err).__name__}: {err}. Without network, place the file at that path."
        ) from err


def _fetch_timm(name: str, weights: PretrainedWeights) -> nn.Module:
    import timm

    try:
        with _network_timeout():
            return timm.create_model(weights.weights, pretrained=True)
    except (OSError, RuntimeError, ValueError) as err:
        from huggingface_hub import constants

        cache_dir = constants.HF_HUB_CACHE if "/" in weights.location else torch.hub.get_dir()
        raise PretrainedError(
            f"could not load timm weights {weights.weights} from {weights.location} "
            f"(cache {cache_dir}): {type(err).__name__}: {err}. Without network, place the "
            f"file in that cache (or unset HF_HUB_OFFLINE if you have network)."
        ) from err


def _from_checkpoint(name: str, path: Path, overrides: dict[str, Any]) -> nn.Module:
    if not path.is_file():
        raise PretrainedError(
            f"pretrained={str(path)!r}: no such file (expected True, 'torchvision', 'timm' or "
            f"the path of a convzoo train checkpoint such as RUN/last.pt)"
        )
    # The RNG state of a checkpoint holds numpy arrays; allow exactly those, nothing executable.
    core = np._core if hasattr(np, "_core") else np.core  # type: ignore[attr-defined]  # numpy 1
    numpy_state = [np.ndarray, np.dtype, core.multiarray._reconstruct, type(np.dtype(np.uint32))]
    try:
        with torch.serialization.safe_globals(numpy_state):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types on a damaged or foreign file
        raise PretrainedError(
            f"{path}: not a loadable convzoo checkpoint ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise PretrainedError(f"{path}: not a convzoo train checkpoint (no 'model'/'config')")
    cfg = state["config"]
    if cfg.get("model") != name:
        raise PretrainedError(f"{path} holds a {cfg.get('model')!r} model, not {name!r}")
    num_classes = overrides.pop("num_classes", None)
    config = dict(cfg.get("model_args") or {})
    config |= {k: cfg[k] for k in ("drop_rate", "drop_path_rate", "drop_path_mode") if cfg.get(k)}
    classes = state.get("classes")
    trained_classes = len(classes) if classes else None
    model = create_model(name, num_classes=trained_classes, **(config | overrides))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise PretrainedError(f"{path}: weights do not fit {name} as configured: {err}") from err
    size = int(state.get("image_size") or 0)
    model.pretrained_cfg = PretrainedWeights(
        "checkpoint",
        str(path),
        str(path),
        Preprocess(
            resize=size,
            crop=size,
            interpolation="bilinear",
            mean=tuple(state.get("mean") or ()),
            std=tuple(state.get("std") or ()),
        ),
        tuple(classes) if classes and num_classes in (None, model.num_classes) else None,
    )
    if num_classes is not None and num_classes != model.num_classes:
        model.reset_classifier(num_classes)
    return model


def parse_pretrained(text: str) -> Pretrained:
    """A command-line ``--pretrained`` value: "auto" (or "true") is ``True``, "none" (or
    "false") is ``False``; "torchvision", "timm" and paths are themselves."""
    lowered = text.lower()
    if lowered in ("auto", "true"):
        return True
    if lowered in ("none", "false"):
        return False
    return text


def preprocess_transform(prep: Preprocess) -> Callable[[Image.Image], Tensor]:
    """The eval transform the weights expect: resize, center crop, to float, normalize."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(prep.resize, interpolation=v2.InterpolationMode(prep.interpolation)),
            v2.CenterCrop(prep.crop),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(prep.mean), list(prep.std)),
        ]
    )


def predict(
    model: nn.Module, paths: Sequence[str | Path], top_k: int = 5
) -> list[list[tuple[str, float]]]:
    """Top-k (class name, probability) per image file for a model with ``pretrained_cfg``,
    preprocessed as its weights expect; most probable first."""
    from convzoo.train.inference import classify_files

    cfg: PretrainedWeights | None = getattr(model, "pretrained_cfg", None)
    if cfg is None:
        raise PretrainedError("predict needs a model loaded with pretrained=...")
    transform = preprocess_transform(cfg.preprocess)

    def read(path: Path) -> Tensor:
        with Image.open(path) as im:
            return transform(im.convert("RGB"))

    return classify_files(model, paths, read, cfg.class_names, top_k, error=PretrainedError)
