"""``TrainConfig``: every knob of a training run, with units; recipes are JSON files of its fields.

A recipe (``recipes/<name>.json``) holds a subset of the fields plus ``"source"`` (the paper and
section the values come from) and ``"notes"``; any field given on the command line overrides the
recipe, which overrides the defaults below.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECIPE_DIR = Path(__file__).resolve().parents[3] / "recipes"
_RECIPE_META = ("source", "notes")


@dataclass(frozen=True)
class TrainConfig:
    # --- model
    model: str = "nin_cifar"
    model_args: dict[str, Any] = field(default_factory=dict)  # config overrides for create_model
    drop_rate: float | None = None  # classifier dropout; None = the model's default
    drop_path_rate: float | None = None  # stochastic depth p_L; None = the model's default
    drop_path_mode: str | None = None  # "batch" (skips compute) | "sample"; None = model default
    sync_bn: bool = False  # SyncBatchNorm under DDP
    # --- data
    data: str | None = None  # None = embedded digits; see convzoo.data.build
    download: bool = False
    val_fraction: float = 0.1  # held out of train when there is no val split (45k/5k on CIFAR)
    split_seed: int = 0
    image_size: int | None = None  # None = the model's input size
    loader: str = "auto"  # "device" (GPU-resident uint8) | "workers" (DataLoader) | "auto"
    workers: int = 4  # DataLoader workers (workers path only)
    on_bad_image: str = "fail"  # "fail" names the file | "skip" drops and counts it
    max_train_samples: int | None = None  # a random subset (split_seed) for quick runs
    # --- augmentation
    crop_padding: int = 4  # random crop after zero padding, pixels per side; 0 = off
    hflip: bool = True
    cutout: int = 0  # square side in pixels; 0 = off
    randaugment_n: int = 0  # RandAugment ops per image; 0 = off
    randaugment_m: int = 9  # RandAugment magnitude (0..30)
    random_erasing: float = 0.0  # probability per image
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    label_smoothing: float = 0.0
    # --- optimization
    epochs: int = 10
    batch_size: int = 128  # per process; the global batch is batch_size * world_size * accum_steps
    accum_steps: int = 1  # gradient accumulation micro-batches per optimizer step
    optimizer: str = "sgd"  # "sgd" | "adamw"
    lr: float = 0.1  # peak learning rate at ``lr_base_batch`` (or as given when that is None)
    lr_base_batch: int | None = None  # scale lr linearly to the global batch from this batch size
    momentum: float = 0.9
    nesterov: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 5e-4  # not applied to norm weights and biases
    schedule: str = "cosine"  # "step" | "cosine" | "onecycle" | "constant"
    milestones: tuple[int, ...] = ()  # epochs at which "step" multiplies the lr by gamma
    gamma: float = 0.1
    warmup_epochs: float = 0.0  # linear warmup from ``warmup_lr`` (fraction of lr) to lr
    warmup_lr: float = 0.0
    min_lr: float = 0.0  # cosine / one-cycle floor, fraction of lr
    ema_decay: float | None = None  # EMA of weights per optimizer step; None = off
    agc_clipping: float | None = None  # adaptive gradient clipping (NFNets) lambda; None = off
    grad_clip_norm: float | None = None
    # --- speed
    amp: str | None = None  # "bf16" | "fp16" autocast on the device; None = float32
    channels_last: bool = False
    compile: bool = False
    device: str = "auto"  # "auto" = cuda when available
    deterministic: bool = False  # deterministic algorithms (CPU resume equivalence)
    # --- run
    seed: int = 0
    output: str = "runs/run"
    checkpoint_every_steps: int = 0  # also checkpoint every N optimizer steps; 0 = epoch ends
    eval_every: int = 1  # epochs
    progress: bool = True
    plots: bool = True

    def __post_init__(self) -> None:
        checks = {
            "optimizer": (self.optimizer, ("sgd", "adamw")),
            "schedule": (self.schedule, ("step", "cosine", "onecycle", "constant")),
            "loader": (self.loader, ("auto", "device", "workers")),
            "on_bad_image": (self.on_bad_image, ("fail", "skip")),
            "amp": (self.amp, (None, "bf16", "fp16")),
            "drop_path_mode": (self.drop_path_mode, (None, "batch", "sample")),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        for name in ("epochs", "batch_size", "accum_steps", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.schedule == "step" and not self.milestones:
            raise ValueError("schedule 'step' needs milestones (epochs), e.g. --milestones 91 136")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")

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


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.json"))


def load_recipe(name_or_path: str) -> dict[str, Any]:
    """The config fields of a recipe (by name under recipes/, or a path to a JSON file)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPE_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise ValueError(f"unknown recipe {name_or_path!r}; available: {', '.join(list_recipes())}")
    raw = json.loads(path.read_text())
    fields = {k: v for k, v in raw.items() if k not in _RECIPE_META}
    TrainConfig.from_dict(fields)  # validates names and values now, naming the recipe on error
    return fields


def make_config(recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """Defaults <- recipe <- overrides."""
    fields = load_recipe(recipe) if recipe else {}
    fields.update(overrides)
    return TrainConfig.from_dict(fields)
