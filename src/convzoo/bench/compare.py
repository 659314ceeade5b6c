"""Our parameter and MAC counts beside the papers' printed numbers, for every registered variant.

Counts are of the full-size model built on the ``meta`` device (no memory, no arithmetic). Params
in millions, MACs in billions of multiply-adds per image at the model's default input size.
A difference is ours minus the paper's, absolute and in percent of the paper's figure.

Model size (SqueezeNet's Table 2 column): bytes of the state dict (parameters and buffers) with
floating-point tensors stored at fp32 or fp16, in MB of 2^20 bytes (SqueezeNet's 1.25M
parameters are its "4.8MB" so). ``torch.save`` adds a few KB of pickle and zip headers on top.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from convzoo.bench.counts import count_params, model_counts
from convzoo.registry import create_model, list_models, model_info

__all__ = ["COMPARE_HEADER", "compare_rows", "format_compare", "state_dict_mb"]

MB = 2**20


def state_dict_mb(model: nn.Module, dtype: torch.dtype = torch.float32) -> float:
    """Size of ``model.state_dict()`` with its floating tensors in ``dtype``, in MB (2^20 bytes).
    Works on the ``meta`` device: only shapes and dtypes are read."""
    size = torch.tensor([], dtype=dtype).element_size()
    total = 0
    for t in model.state_dict().values():
        total += t.numel() * (size if t.is_floating_point() else t.element_size())
    return total / MB


def _diff(ours: float | None, paper: float | None) -> tuple[float | None, float | None]:
    if ours is None or paper is None:
        return None, None
    return ours - paper, (100 * (ours - paper) / paper if paper else None)


def compare_rows(pattern: str = "*", macs: bool = True) -> list[dict[str, Any]]:
    """One dict per registered model matching ``pattern``, sorted by name. ``macs=False`` skips
    the MAC count (the slow part: one meta-device forward pass per model)."""
    names = list_models(pattern)
    if not names:
        raise ValueError(f"no registered model matches {pattern!r}")
    rows = []
    for name in names:
        info = model_info(name)
        with torch.device("meta"):
            model = create_model(name)
        if macs:
            counts = model_counts(name)
        else:
            counts = {"params": count_params(model), "input_size": info.input_size}
        params_m = counts["params"] / 1e6
        macs_g = counts["macs"] / 1e9 if macs else None
        dp, dp_pct = _diff(params_m, info.paper_params_m)
        dm, dm_pct = _diff(macs_g, info.paper_macs_g)
        rows.append(
            {
                "model": name,
                "family": info.family,
                "input_size": counts["input_size"],
                "params_m": params_m,
                "paper_params_m": info.paper_params_m,
                "params_diff_m": dp,
                "params_diff_pct": dp_pct,
                "macs_g": macs_g,
                "paper_macs_g": info.paper_macs_g,
                "macs_diff_g": dm,
                "macs_diff_pct": dm_pct,
                "paper_accuracy": info.paper_accuracy,
                "size_mb_fp32": state_dict_mb(model, torch.float32),
                "size_mb_fp16": state_dict_mb(model, torch.float16),
                "table": info.table,
            }
        )
    return rows


COMPARE_HEADER = (
    "model",
    "px",
    "params M",
    "paper M",
    "diff M (%)",
    "MB fp32",
    "MB fp16",
    "GMACs",
    "paper GMACs",
    "diff G (%)",
    "paper top-1 %",
)


def _num(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _pair(v: float | None, pct: float | None, digits: int) -> str:
    if v is None:
        return "-"
    return f"{v:+.{digits}f}" + (f" ({pct:+.1f}%)" if pct is not None else "")


def format_compare(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Rows as strings in the order of ``COMPARE_HEADER``."""
    return [
        [
            r["model"],
            str(r["input_size"]),
            _num(r["params_m"], 3),
            _num(r["paper_params_m"], 2),
            _pair(r["params_diff_m"], r["params_diff_pct"], 3),
            _num(r["size_mb_fp32"], 2),
            _num(r["size_mb_fp16"], 2),
            _num(r["macs_g"], 3),
            _num(r["paper_macs_g"], 3),
            _pair(r["macs_diff_g"], r["macs_diff_pct"], 3),
            _num(r["paper_accuracy"], 2),
        ]
        for r in rows
    ]
