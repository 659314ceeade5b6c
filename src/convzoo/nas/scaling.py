"""EfficientNet's compound-scaling search (Tan & Le 2019, arXiv 1905.11946, section 3.3).

Step 1 of the paper: fix phi = 1, assume twice the resources, and grid-search depth, width and
resolution coefficients (alpha, beta, gamma) under alpha * beta^2 * gamma^2 ~= 2 with each >= 1,
training every candidate; the paper found alpha = 1.2, beta = 1.1, gamma = 1.15 for B0. Step 2:
scale the base up with phi = 1..7 using the found coefficients (``compound_scale``).

At small scale here: each candidate trains briefly with ``convzoo.train`` (the same trainer as
``convzoo train``), so the ranking is noisy; the report says how many epochs each candidate had.
The base needs ``width_coefficient`` / ``depth_coefficient`` config fields (EfficientNet); any
other base with a ``scaled_<base>`` registration (MobileNet v1 / v2, ResNet-50: EfficientNet's
Table 3, ``convzoo.lab.scaling``) is searched in that form. Its resolution is the base input size
times gamma (rounded to whole pixels).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from convzoo.bench.counts import count_macs, count_params
from convzoo.cliutil import option, validate_config
from convzoo.models.efficientnet import compound_scale
from convzoo.registry import create_model, list_models, model_info, resolve_config


def scaling_grid(
    budget: float = 2.0, step: float = 0.05, tolerance: float = 0.05, max_value: float = 2.0
) -> list[tuple[float, float, float]]:
    """All (alpha, beta, gamma) on a ``step`` grid in [1, max_value] with
    |alpha * beta^2 * gamma^2 - budget| <= tolerance * budget, sorted."""
    if budget < 1.0 or step <= 0 or tolerance < 0:
        raise ValueError(
            f"need budget >= 1, step > 0, tolerance >= 0; got {budget}, {step}, {tolerance}"
        )
    n = round((max_value - 1.0) / step)
    values = [round(1.0 + i * step, 6) for i in range(n + 1)]
    return [
        (a, b, g)
        for a, b, g in itertools.product(values, repeat=3)
        if abs(a * b * b * g * g - budget) <= tolerance * budget + 1e-12
    ]


@dataclass(frozen=True)
class ScalingSearchConfig:
    base: str = "efficientnet_b0"
    model_args: dict[str, Any] = dataclasses.field(default_factory=dict)  # base config overrides
    base_resolution: int | None = option(None, low=1)  # None = the base model's input size
    budget: float = option(2.0, low=1)  # alpha * beta^2 * gamma^2, the resources multiple
    step: float = option(0.1, above=0)  # grid step of each coefficient
    tolerance: float = option(0.1, low=0)  # relative distance from the budget
    max_candidates: int | None = option(None, low=1)  # evenly thinned grid when set
    phis: tuple[int, ...] = option((1, 2, 3), low=1)  # step 2: report these scaled-up models
    train: dict[str, Any] = dataclasses.field(default_factory=dict)  # TrainConfig fields
    output: str = "runs/scaling"

    def __post_init__(self) -> None:
        validate_config(self)


def _scalable(name: str) -> str:
    """``name`` itself when its config has the coefficients, else its ``scaled_<name>`` registration."""
    fields = {f.name for f in dataclasses.fields(resolve_config(name))}
    if {"width_coefficient", "depth_coefficient"} <= fields:
        return name
    return f"scaled_{name}" if list_models(f"scaled_{name}") else name


def _scaled_args(cfg: ScalingSearchConfig, depth: float, width: float) -> dict[str, Any]:
    base = resolve_config(cfg.base, **cfg.model_args)
    for field in ("width_coefficient", "depth_coefficient"):
        if not hasattr(base, field):
            raise ValueError(
                f"{cfg.base}: compound scaling needs a config with {field} (EfficientNet) or a "
                f"'scaled_{cfg.base}' registration (convzoo list 'scaled_*')"
            )
    return {**cfg.model_args, "width_coefficient": base.width_coefficient * width,
            "depth_coefficient": base.depth_coefficient * depth}  # fmt: skip


def candidate_cost(cfg: ScalingSearchConfig, depth: float, width: float, resolution: int) -> dict:
    with torch.device("meta"):
        model = create_model(cfg.base, **_scaled_args(cfg, depth, width))
    return {"params": count_params(model), "macs": count_macs(model, resolution)}


def run_scaling_search(cfg: ScalingSearchConfig) -> dict[str, Any]:
    from convzoo.train.config import make_config
    from convzoo.train.engine import train

    base = _scalable(cfg.base)
    if base != cfg.base:  # the user's overrides are the base's, inside the scaled wrapper
        cfg = dataclasses.replace(cfg, base=base, model_args={"base_args": dict(cfg.model_args)})
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    res0 = cfg.base_resolution or model_info(cfg.base).input_size
    grid = scaling_grid(cfg.budget, cfg.step, cfg.tolerance)
    if cfg.max_candidates is not None and len(grid) > cfg.max_candidates:
        grid = [grid[round(i * (len(grid) - 1) / (cfg.max_candidates - 1))]
                for i in range(cfg.max_candidates)] if cfg.max_candidates > 1 else grid[:1]  # fmt: skip
    base_cost = candidate_cost(cfg, 1.0, 1.0, res0)
    rows = []
    for i, (a, b, g) in enumerate(grid):
        res = round(res0 * g)
        cost = candidate_cost(cfg, a, b, res)
        tcfg = make_config(model=cfg.base, model_args=_scaled_args(cfg, a, b), image_size=res,
                           output=str(out / f"candidate_{i:02d}"), **cfg.train)  # fmt: skip
        final = train(tcfg)
        rows.append({"alpha": a, "beta": b, "gamma": g, "resolution": res, **cost,
                     "macs_ratio": cost["macs"] / base_cost["macs"],
                     "val_acc": final.get("val_acc"), "epochs": tcfg.epochs})  # fmt: skip
        print(f"candidate {i + 1}/{len(grid)}: alpha={a} beta={b} gamma={g} res={res} "
              f"MACs x{rows[-1]['macs_ratio']:.2f} val_acc={rows[-1]['val_acc']}")  # fmt: skip
    best = max(rows, key=lambda r: r["val_acc"] if r["val_acc"] is not None else -1.0)
    scaled = []
    for phi in cfg.phis:
        c = compound_scale(phi, best["alpha"], best["beta"], best["gamma"], base_resolution=res0)
        cost = candidate_cost(cfg, c.depth, c.width, c.resolution)
        scaled.append({"phi": phi, "depth": c.depth, "width": c.width, "resolution": c.resolution,
                       "dropout": c.dropout, **cost})  # fmt: skip
    result = {"base": cfg.base, "base_resolution": res0, "base_cost": base_cost,
              "budget": cfg.budget, "candidates": rows,
              "chosen": {k: best[k] for k in ("alpha", "beta", "gamma")}, "scaled": scaled,
              "config": dataclasses.asdict(cfg)}  # fmt: skip
    (out / "scaling.json").write_text(json.dumps(result, indent=1))
    return result
