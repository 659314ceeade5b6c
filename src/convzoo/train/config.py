"""``TrainConfig``: every knob of a training run, with units; recipes are JSON files of its fields.

A recipe (``convzoo/recipes/<name>.json``, package data found with ``importlib.resources``) holds a subset of the fields plus ``"source"`` (the paper and
section the values come from) and ``"notes"``; any field given on the command line overrides the
recipe, which overrides the defaults below.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # Python 3.10
    from importlib.abc import Traversable

from convzoo.cliutil import UsageError, option, validate_config

_RECIPE_META = ("source", "notes")


@dataclass(frozen=True)
class TrainConfig:
    # --- model
    model: str = "nin_cifar"
    model_args: dict[str, Any] = field(default_factory=dict)  # config overrides for create_model
    # start from published weights (auto | torchvision | timm) or a checkpoint PATH; None = random
    # init. A resume takes its weights from the run's checkpoint and ignores this.
    pretrained: str | None = None
    # classifier dropout; None = the model's default
    drop_rate: float | None = option(None, low=0, below=1)
    # stochastic depth p_L; None = the model's default
    drop_path_rate: float | None = option(None, low=0, below=1)
    # batch skips compute; None = the model default
    drop_path_mode: str | None = option(None, choices=("batch", "sample"))
    sync_bn: bool = False  # SyncBatchNorm under DDP
    # --- data
    data: str | None = None  # None = embedded digits; see convzoo.data.build
    download: bool = False
    # held out of train when there is no val split (45k/5k on CIFAR)
    val_fraction: float = option(0.1, above=0, below=1)
    split_seed: int = option(0, low=0)
    image_size: int | None = option(None, low=1)  # None = the model's input size
    # device: GPU-resident uint8; workers: DataLoader
    loader: str = option("auto", choices=("auto", "device", "workers"))
    workers: int = option(4, low=0)  # DataLoader workers (workers path only)
    # fail: name the file; skip: drop and count it
    on_bad_image: str = option("fail", choices=("fail", "skip"))
    # a random subset (split_seed) for quick runs
    max_train_samples: int | None = option(None, low=1)
    # --- augmentation
    crop_padding: int = option(4, low=0)  # random crop after zero padding, pixels per side; 0 = off
    hflip: bool = True
    cutout: int = option(0, low=0)  # square side in pixels; 0 = off
    randaugment_n: int = option(0, low=0)  # RandAugment ops per image; 0 = off
    randaugment_m: int = option(9, low=0, high=30)  # RandAugment magnitude (0..30)
    random_erasing: float = option(0.0, low=0, high=1)  # probability per image
    mixup_alpha: float = option(0.0, low=0)
    cutmix_alpha: float = option(0.0, low=0)
    label_smoothing: float = option(0.0, low=0, below=1)
    # --- optimization
    epochs: int = option(10, low=1)
    # per process; the global batch is batch_size * world_size * accum_steps
    batch_size: int = option(128, low=1)
    accum_steps: int = option(1, low=1)  # gradient accumulation micro-batches per optimizer step
    optimizer: str = option("sgd", choices=("sgd", "adamw"))  # "sgd" | "adamw"
    # peak learning rate at ``lr_base_batch`` (or as given when that is None)
    lr: float = option(0.1, above=0)
    # scale lr linearly to the global batch from this batch size
    lr_base_batch: int | None = option(None, low=1)
    momentum: float = option(0.9, low=0, below=1)
    nesterov: bool = True
    betas: tuple[float, float] = option((0.9, 0.999), low=0, below=1)
    weight_decay: float = option(5e-4, low=0)  # not applied to norm weights and biases
    schedule: str = option("cosine", choices=("step", "cosine", "onecycle", "constant"))
    # epochs at which "step" multiplies the lr by gamma
    milestones: tuple[int, ...] = option((), low=1)
    gamma: float = option(0.1, above=0)
    # linear warmup from ``warmup_lr`` (fraction of lr) to lr
    warmup_epochs: float = option(0.0, low=0)
    warmup_lr: float = option(0.0, low=0, high=1)  # fraction of lr
    min_lr: float = option(0.0, low=0, high=1)  # cosine / one-cycle floor, fraction of lr
    # EMA of weights per optimizer step; None = off
    ema_decay: float | None = option(None, above=0, below=1)
    # adaptive gradient clipping (NFNets) lambda; None = off
    agc_clipping: float | None = option(None, above=0)
    grad_clip_norm: float | None = option(None, above=0)
    # --- speed
    # autocast dtype on the device; None = float32
    amp: str | None = option(None, choices=("bf16", "fp16"))
    channels_last: bool = False
    compile: bool = False
    device: str = option("auto", device=True)  # "auto" = cuda when available
    deterministic: bool = False  # deterministic algorithms (CPU resume equivalence)
    # --- run
    seed: int = 0
    output: str = "runs/run"
    # also checkpoint every N optimizer steps; 0 = epoch ends
    checkpoint_every_steps: int = option(0, low=0)
    eval_every: int = option(1, low=1)  # epochs
    progress: bool = True
    plots: bool = True

    def __post_init__(self) -> None:
        validate_config(self)
        if self.schedule == "step" and not self.milestones:
            raise UsageError("schedule 'step' needs milestones (epochs), e.g. --milestones 91 136")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise TypeError(
                f"unknown TrainConfig field(s) {unknown}; valid fields: {', '.join(sorted(names))}"
            )
        hints = typing.get_type_hints(cls)
        return cls(**{k: _coerce(v, hints[k]) for k, v in d.items()})


def _coerce(value: Any, hint: Any) -> Any:
    # JSON has lists where the config has tuples.
    if isinstance(value, list) and _is_tuple_type(hint):
        return tuple(value)
    return value


def _is_tuple_type(hint: Any) -> bool:
    if typing.get_origin(hint) is tuple:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_is_tuple_type(a) for a in typing.get_args(hint))
    return False


def _recipe_files() -> dict[str, Traversable]:
    """The recipes shipped inside the package, by name (they travel with any install)."""
    folder = importlib.resources.files("convzoo") / "recipes"
    return {r.name[: -len(".json")]: r for r in folder.iterdir() if r.name.endswith(".json")}


def list_recipes() -> list[str]:
    return sorted(_recipe_files())


def load_recipe(name_or_path: str) -> dict[str, Any]:
    """The config fields of a recipe (a shipped recipe's name, or a path to a JSON file)."""
    path = Path(name_or_path)
    source: Traversable | Path | None = path if path.suffix else _recipe_files().get(name_or_path)
    if source is None or not source.is_file():
        raise UsageError(f"unknown recipe {name_or_path!r}; available: {', '.join(list_recipes())}")
    try:
        raw = json.loads(source.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"recipe {name_or_path} is not valid JSON: {err}") from err
    if not isinstance(raw, dict):
        raise UsageError(f"recipe {name_or_path} must hold a JSON object of TrainConfig fields")
    fields = {k: v for k, v in raw.items() if k not in _RECIPE_META}
    TrainConfig.from_dict(fields)  # validates names and values now, naming the recipe on error
    return fields


def make_config(recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """Defaults <- recipe <- overrides."""
    fields = load_recipe(recipe) if recipe else {}
    fields.update(overrides)
    return TrainConfig.from_dict(fields)
