"""torchvision MobileNet v2 / v3 -> convzoo (timm's MobileNets: ``convzoo.interop.timm_mbconv``).

torchvision numbers its blocks ``features.1 .. features.N`` in one flat list and numbers the
parts inside a block by position, which depends on whether the block has an expansion conv or SE.
The conversion therefore builds our model on the meta device (no memory, no arithmetic) and walks
its blocks in order, so a block's part names come from the block itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from convzoo.registry import create_model


def zoo_blocks(name: str) -> list[tuple[str, nn.Module]]:
    """``(key prefix, block)`` of every block of ``name`` in forward order: ``stages.s.b``, or
    ``stages.s.r.b`` where a resolution stage holds several table rows."""
    with torch.device("meta"):
        model = create_model(name)
    blocks: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, module: nn.Module) -> None:
        # ConvNormAct is a Sequential too, but a block (FBNet's projecting "skip"), not a group.
        if type(module) is nn.Sequential:
            for i, child in enumerate(module):
                walk(f"{prefix}.{i}", child)
        else:
            blocks.append((prefix, module))

    walk("stages", model.stages)
    return blocks


def zoo_rows(name: str) -> list[list[tuple[str, nn.Module]]]:
    """The blocks of ``zoo_blocks`` grouped by table row (their parent ``nn.Sequential``)."""
    rows: dict[str, list[tuple[str, nn.Module]]] = {}
    for prefix, block in zoo_blocks(name):
        rows.setdefault(prefix.rsplit(".", 1)[0], []).append((prefix, block))
    return list(rows.values())


def block_parts(block: nn.Module, split_pwl: bool = False) -> list[str]:
    """Our names of an inverted residual's parts in forward order (absent ones left out).

    ``split_pwl``: the source keeps the projection conv and its BatchNorm as two entries
    (torchvision's MobileNet v2).
    """
    parts = ["conv_pw"] if block.conv_pw is not None else []
    parts.append("conv_dw")
    if block.se is not None:
        parts.append("se")
    parts += ["conv_pwl.0", "conv_pwl.1"] if split_pwl else ["conv_pwl"]
    return parts


def convert_flat_blocks(
    state: Mapping[str, Tensor],
    name: str,
    block_key: str,
    outer: Mapping[str, str],
    split_pwl: bool = False,
) -> dict[str, Tensor]:
    """Rename a torchvision state dict whose blocks are numbered in one flat list.

    ``block_key`` is a regex with groups (block number, part number, rest); torchvision's
    ``features.0`` is the stem, so its block ``features.i`` is our block ``i - 1``. ``outer`` maps
    the remaining source prefixes (stem, last conv, classifier) to ours.
    """
    blocks = zoo_blocks(name)
    pattern = re.compile(block_key)

    def rename(key: str) -> str:
        m = pattern.fullmatch(key)
        if m is None:
            return rename_prefix(key, outer, name)
        prefix, block = blocks[int(m[1]) - 1]
        return f"{prefix}.{block_parts(block, split_pwl)[int(m[2])]}.{m[3]}"

    return {rename(k): v for k, v in state.items()}


def rename_prefix(key: str, outer: Mapping[str, str], name: str) -> str:
    """``key`` with its source prefix (a key of ``outer``, up to a dot) replaced by ours."""
    for src, dst in outer.items():
        if key.startswith(src + "."):
            return dst + key[len(src) :]
    raise ValueError(f"{name}: no rule for source key {key!r}")


def last_feature_index(state: Mapping[str, Tensor]) -> int:
    return max(int(k.split(".")[1]) for k in state if k.startswith("features."))


def convert_torchvision(state: Mapping[str, Tensor], name: str) -> dict[str, Tensor]:
    last = last_feature_index(state)
    if name == "mobilenet_v2":
        # The projection conv and its BN are separate entries (conv.k, conv.k+1) in torchvision.
        return convert_flat_blocks(
            state,
            name,
            r"features\.(\d+)\.conv\.(\d+)\.(.+)",
            {"features.0": "stem", f"features.{last}": "neck", "classifier.1": "head.fc"},
            split_pwl=True,
        )
    if name.startswith("mobilenet_v3"):
        return convert_flat_blocks(
            state,
            name,
            r"features\.(\d+)\.block\.(\d+)\.(.+)",
            {
                "features.0": "stem",
                f"features.{last}": "neck",
                "classifier.0": "head.fc_hidden",
                "classifier.3": "head.fc",
            },
        )
    raise ValueError(f"{name}: torchvision has no such MobileNet")
