"""Weight conversion for EfficientNet B0-B7 from torchvision.

torchvision nests blocks as ``features.<row + 1>.<block>.block.<part>`` (a row of Table 1; ours
sit at ``stages.<resolution>.<row in it>.<block>``); parts are numbered by position (expansion
conv only where the expansion ratio is not 1), so part names come from our blocks, built on the
meta device. torchvision's B0-B4 use BatchNorm eps 1e-5 where ours (and the
reference) use 1e-3; the conversion reads the eps off the source (``core.shared_overrides``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from convzoo.interop.mobilenet import block_parts, last_feature_index, rename_prefix, zoo_rows

_BLOCK = re.compile(r"features\.(\d+)\.(\d+)\.block\.(\d+)\.(.+)")


def convert_torchvision(state: Mapping[str, Tensor], name: str) -> dict[str, Tensor]:
    rows = zoo_rows(name)
    last = last_feature_index(state)
    outer = {"features.0": "stem", f"features.{last}": "neck", "classifier.1": "head.fc"}
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        m = _BLOCK.fullmatch(key)
        if m is not None:
            prefix, block = rows[int(m[1]) - 1][int(m[2])]
            out[f"{prefix}.{block_parts(block)[int(m[3])]}.{m[4]}"] = value
        else:
            out[rename_prefix(key, outer, name)] = value
    return out
