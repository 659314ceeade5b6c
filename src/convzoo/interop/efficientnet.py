"""Weight conversion for EfficientNet B0-B7 from torchvision.

torchvision nests blocks as ``features.<stage + 1>.<block>.block.<part>``; parts are numbered by
position (expansion conv only where the expansion ratio is not 1), so part names come from our
blocks, built on the meta device. torchvision's B0-B4 use BatchNorm eps 1e-5 where ours (and the
reference) use 1e-3; the conversion reads the eps off the source (``core.shared_overrides``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from convzoo.interop.mobilenet import block_parts, last_feature_index, rename_prefix, zoo_blocks

_BLOCK = re.compile(r"features\.(\d+)\.(\d+)\.block\.(\d+)\.(.+)")


def convert_torchvision(state: Mapping[str, Tensor], name: str) -> dict[str, Tensor]:
    blocks = dict(zoo_blocks(name))
    last = last_feature_index(state)
    outer = {"features.0": "stem", f"features.{last}": "conv_head", "classifier.1": "head.fc"}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        m = _BLOCK.fullmatch(key)
        if m is not None:
            prefix = f"stages.{int(m[1]) - 1}.{m[2]}"
            out[f"{prefix}.{block_parts(blocks[prefix])[int(m[3])]}.{m[4]}"] = value
        else:
            out[rename_prefix(key, outer, name)] = value
    return out
