"""convzoo: the convolutional architectures after ResNet, faithful, fast and comparable."""

from __future__ import annotations

import importlib
from types import ModuleType

from convzoo.registry import create_model, list_models, model_info

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "list_models", "model_info"]

# Public subpackages, imported on first attribute access (``convzoo.interop.from_timm(...)``) so
# that ``import convzoo`` does not pay for timm, training or benchmarking code it may not use.
_SUBMODULES = frozenset(
    {"bench", "data", "interop", "layers", "models", "nas", "pretrained", "registry", "train"}
)


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"convzoo.{name}")
    raise AttributeError(f"module 'convzoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBMODULES})
