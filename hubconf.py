"""torch.hub entry points: ``torch.hub.load("<owner>/convzoo", "resnet50", pretrained=True)``.

Every registered model is an entry point taking ``create_model``'s arguments (``pretrained``,
``num_classes``, config overrides). The repository's own ``src/`` goes first on ``sys.path``, so
the hub loads this checkout's code even where another convzoo is installed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

dependencies = ["torch", "torchvision"]

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

import convzoo  # noqa: E402


def _entry(name: str) -> Callable[..., nn.Module]:
    def build(pretrained: bool | str = False, **kwargs: Any) -> nn.Module:
        return convzoo.create_model(name, pretrained=pretrained, **kwargs)

    build.__name__ = name
    build.__doc__ = f"convzoo {name}: {convzoo.model_info(name).paper.title}"
    return build


globals().update({name: _entry(name) for name in convzoo.list_models()})
