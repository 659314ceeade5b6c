"""Model registry: every architecture is a name bound to a builder, a frozen config and its paper.

A family module registers each variant once::

    register_model("resnet20_cifar", ResNet, CONFIGS["resnet20_cifar"], info=ModelInfo(...),
                   tiny=Tiny(overrides={"widths": (4, 8, 16)}, input_size=32))

``create_model(name, **overrides)`` applies ``dataclasses.replace`` to the registered config, so a
misspelled field is a ``TypeError`` that lists the valid ones instead of being swallowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # models import the registry; a runtime import here would be circular
    from convzoo.models.base import ZooModel

__all__ = [
    "ModelInfo",
    "Paper",
    "RegisteredModel",
    "Tiny",
    "create_model",
    "get_entry",
    "list_models",
    "model_info",
    "register_model",
]


@dataclass(frozen=True)
class Paper:
    title: str
    arxiv: str  # arXiv identifier, e.g. "1512.03385"
    authors: str = ""
    year: int | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What a variant is and what its paper says about it.

    ``params`` is the exact parameter count of our full-size build (a test keeps it true).
    The ``paper_*`` fields are the numbers as printed in the paper: parameters in millions,
    MACs (multiply-adds, one per multiply-add) in billions, accuracy as top-1 % on ``dataset``
    (CIFAR-10 for ``cifar`` models unless ``paper_accuracy_dataset`` says otherwise).
    ``paper_params_tol_m`` widens the comparison where the paper's own figure cannot be
    reproduced from its description; ``notes`` must then say why.
    """

    family: str
    paper: Paper
    table: str
    dataset: str  # "cifar" | "imagenet" | other task name
    input_size: int
    num_classes: int
    params: int | None = None
    paper_params_m: float | None = None
    paper_macs_g: float | None = None
    paper_accuracy: float | None = None
    paper_accuracy_dataset: str | None = None
    paper_params_tol_m: float | None = None
    paper_macs_tol_g: float | None = None
    in_channels: int = 3
    notes: str = ""
    name: str = ""  # filled in by register_model


@dataclass(frozen=True)
class Tiny:
    """A small variant for fast tests: config overrides and an input size that the net accepts."""

    overrides: Mapping[str, Any] = field(default_factory=dict)
    input_size: int = 32
    batch_size: int = 2


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    builder: Callable[[Any], ZooModel]
    config: Any  # a frozen dataclass instance
    info: ModelInfo
    tiny: Tiny


_REGISTRY: dict[str, RegisteredModel] = {}

# create_model's explicit keywords; each maps onto the config field of the same name.
_STANDARD_ARGS = ("num_classes", "in_channels", "drop_rate", "drop_path_rate")


def register_model(
    name: str,
    builder: Callable[[Any], ZooModel],
    config: Any,
    *,
    info: ModelInfo,
    tiny: Tiny | None = None,
) -> None:
    """Bind ``name`` to ``builder(config)``. A second registration of a name raises."""
    if name in _REGISTRY:
        raise ValueError(
            f"model {name!r} is already registered (family {_REGISTRY[name].info.family})"
        )
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config for {name!r} must be a dataclass instance, got {type(config)!r}")
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    for required in ("num_classes", "in_channels"):
        if required not in values:
            raise TypeError(f"config for {name!r} lacks the required field {required!r}")
    if values["num_classes"] != info.num_classes:
        raise ValueError(
            f"{name!r}: config num_classes={values['num_classes']} != info num_classes={info.num_classes}"
        )
    tiny = tiny or Tiny()
    unknown = set(tiny.overrides) - set(values)
    if unknown:
        raise TypeError(f"tiny overrides for {name!r} name unknown fields {sorted(unknown)}")
    info = dataclasses.replace(info, name=name, in_channels=values["in_channels"])
    _REGISTRY[name] = RegisteredModel(name, builder, config, info, tiny)


def _ensure_loaded() -> None:
    # Family modules register on import; importing the package imports them all.
    from convzoo import models  # noqa: F401


def get_entry(name: str) -> RegisteredModel:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=5, cutoff=0.5)
        hint = f"; closest registered names: {', '.join(close)}" if close else ""
        raise ValueError(
            f"unknown model {name!r}{hint} (convzoo.list_models() lists all {len(_REGISTRY)})"
        ) from None


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching an fnmatch ``pattern`` ("resnet*", "*_cifar"), sorted."""
    _ensure_loaded()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def model_info(name: str) -> ModelInfo:
    return get_entry(name).info


def resolve_config(
    name: str,
    num_classes: int | None = None,
    in_channels: int | None = None,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
    **config_overrides: Any,
) -> Any:
    """The registered config of ``name`` with the overrides applied (validated). A standard
    argument left at ``None`` keeps the config's own value."""
    entry = get_entry(name)
    cfg = entry.config
    valid = [f.name for f in dataclasses.fields(cfg)]
    overrides = dict(config_overrides)
    standard = {
        "num_classes": num_classes,
        "in_channels": in_channels,
        "drop_rate": drop_rate,
        "drop_path_rate": drop_path_rate,
    }
    for key, value in standard.items():
        if value is not None:
            overrides[key] = value
    for key in ("num_classes", "in_channels"):  # a string here fails deep inside a layer
        value = overrides.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise TypeError(f"{name}: {key} must be a positive int, got {value!r}")
    unknown = [k for k in overrides if k not in valid]
    if unknown:
        raise TypeError(
            f"{name}: unknown override(s) {', '.join(map(repr, unknown))}; "
            f"valid fields of {type(cfg).__name__}: {', '.join(valid)}"
        )
    return dataclasses.replace(cfg, **overrides)


def create_model(
    name: str,
    num_classes: int | None = None,
    in_channels: int | None = None,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
    pretrained: bool | str | os.PathLike[str] = False,
    *,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    **config_overrides: Any,
) -> ZooModel:
    """Build a registered model on the current default device, float32.

    ``features_only=True`` gives a backbone: ``forward`` returns the feature maps of the stages in
    ``out_indices`` (all by default; an int n means the last n) and ``model.feature_info`` gives
    their channels and reductions. Unknown ``name``: ``ValueError`` naming the closest registered
    names. Unknown override: ``TypeError`` listing the config's valid fields. ``num_classes``,
    ``in_channels``, ``drop_rate``, ``drop_path_rate`` left at ``None`` keep the registered
    config's own values. ``pretrained``:
    ``True``, ``"torchvision"``, ``"timm"`` or a checkpoint path loads weights
    (``convzoo.pretrained.load_pretrained``).
    """
    if out_indices is not None and not features_only:
        raise ValueError("out_indices only applies with features_only=True")
    if pretrained is not False:
        from convzoo.pretrained import load_pretrained

        standard: dict[str, float | None] = {"num_classes": num_classes, "in_channels": in_channels}
        standard |= {"drop_rate": drop_rate, "drop_path_rate": drop_path_rate}
        overrides: dict[str, Any] = {k: v for k, v in standard.items() if v is not None}
        # load_pretrained builds the model through create_model, so it is a ZooModel.
        model = cast("ZooModel", load_pretrained(name, pretrained, **overrides, **config_overrides))
    else:
        cfg = resolve_config(
            name,
            num_classes=num_classes,
            in_channels=in_channels,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            **config_overrides,
        )
        model = get_entry(name).builder(cfg)
    model.model_name = name
    if features_only:
        model = model.as_features(out_indices)
    return model
