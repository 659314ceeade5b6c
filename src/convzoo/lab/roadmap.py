"""Train every step of ConvNeXt's roadmap with one recipe and draw Figure 2 beside our numbers.

Liu et al., "A ConvNet for the 2020s", arXiv 2201.03545, Figure 2: ImageNet-1K top-1 of each
step from ResNet-50 to ConvNeXt-T, every step trained with the same (modernized) recipe. Here
every registered ``convnext_roadmap_*`` step trains with one ``TrainConfig`` at CIFAR scale
(32x32 input by default; optionally thinner and shallower: ``width_divisor``, ``depths``), and
the chart puts our validation top-1 beside the paper's. The two are different experiments
(dataset, resolution, epochs): the chart shows them on separate axes, sharing the steps.

A step whose run folder already holds ``final.json`` is not trained again, so an interrupted
roadmap continues where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from convzoo.cliutil import UsageError, option, validate_config
from convzoo.models.convnext_roadmap import STEPS, step_names
from convzoo.registry import get_entry, list_models

# The one recipe of every step unless ``recipe`` names another: AdamW with the paper's weight
# decay and label smoothing (Appendix A.1), cosine schedule, short warm-up; no Mixup / CutMix /
# RandAugment, which need far more than a few CIFAR epochs to pay off.
ROADMAP_RECIPE: dict[str, Any] = {
    "optimizer": "adamw",
    "lr": 2e-3,
    "weight_decay": 0.05,
    "schedule": "cosine",
    "warmup_epochs": 1.0,
    "label_smoothing": 0.1,
}


@dataclass(frozen=True)
class RoadmapRunConfig:
    steps: str = "convnext_roadmap*"  # fnmatch pattern of the steps to train
    data: str | None = None  # CIFAR / image folder; None = the embedded digits
    recipe: str | None = None  # a recipe name / file instead of ROADMAP_RECIPE
    epochs: int = option(10, low=1)
    batch_size: int = option(128, low=1)
    image_size: int = option(32, low=32)  # pixels; every step downsamples 32x
    max_train_samples: int | None = option(None, low=1)
    depths: tuple[int, ...] | None = option(None, low=1)  # blocks per stage for every step
    width_divisor: int = option(1, low=1)  # every stage width divided by this
    device: str = option("auto", device=True)
    seed: int = 0
    output: str = "runs/roadmap"

    def __post_init__(self) -> None:
        validate_config(self)
        if self.depths is not None and len(self.depths) != 4:
            raise UsageError(f"depths needs 4 values (one per stage), got {self.depths}")


def _model_args(name: str, cfg: RoadmapRunConfig) -> dict[str, Any]:
    widths = get_entry(name).config.widths
    if any(w % cfg.width_divisor for w in widths):
        raise UsageError(f"width_divisor {cfg.width_divisor} does not divide {name}'s {widths}")
    args: dict[str, Any] = {"widths": tuple(w // cfg.width_divisor for w in widths)}
    if cfg.depths is not None:
        args["depths"] = cfg.depths
    return args


def run_roadmap(cfg: RoadmapRunConfig) -> list[dict[str, Any]]:
    """Train the selected steps in order; writes ``roadmap.json`` and ``roadmap.png``."""
    from convzoo.train.config import load_recipe, make_config
    from convzoo.train.engine import train

    names = [n for n in step_names() if n in list_models(cfg.steps)]
    if not names:
        raise UsageError(f"steps {cfg.steps!r} matches no roadmap step; see convzoo list "
                         "'convnext_roadmap*'")  # fmt: skip
    model_args = {n: _model_args(n, cfg) for n in names}  # every step checked before training
    recipe = load_recipe(cfg.recipe) if cfg.recipe else dict(ROADMAP_RECIPE)
    out = Path(cfg.output)
    rows = []
    for name in names:
        step = STEPS[step_names().index(name)]
        run = out / name
        if (run / "final.json").is_file():
            final = json.loads((run / "final.json").read_text())
        else:
            tcfg = make_config(**{**recipe, "model": name, "model_args": model_args[name],
                                  "data": cfg.data, "epochs": cfg.epochs,
                                  "batch_size": cfg.batch_size, "image_size": cfg.image_size,
                                  "max_train_samples": cfg.max_train_samples,
                                  "device": cfg.device, "seed": cfg.seed, "output": str(run),
                                  "progress": False, "plots": False})  # fmt: skip
            final = train(tcfg)
        rows.append({"model": name, "step": step.label, "val_acc": final["val_acc"],
                     "epochs": final["epoch"], "paper_top1": step.paper_top1,
                     "paper_gflops": step.paper_gflops})  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "roadmap.json").write_text(json.dumps({"config": asdict(cfg), "steps": rows}, indent=1))
    draw_roadmap(rows, out / "roadmap.png", cfg)
    return rows


def draw_roadmap(rows: list[dict[str, Any]], path: Path, cfg: RoadmapRunConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["step"] for r in rows]
    y = list(range(len(rows)))[::-1]  # first step on top, as Figure 2
    height = 0.45 * len(rows) + 1.8  # inches
    fig, (left, right) = plt.subplots(1, 2, sharey=True, figsize=(10, height))
    below = (0.5, -0.65 / (0.75 * height))  # the legend ~0.65 in under the axes, past the label
    paper = [r["paper_top1"] for r in rows]
    left.barh(y, paper, color="#8c8c8c", label="paper: ImageNet-1K top-1 (Figure 2)")
    for yi, r in zip(y, rows):
        left.text(r["paper_top1"] + 0.05, yi, f"{r['paper_top1']:.1f}  ({r['paper_gflops']}G)",
                  va="center", fontsize=7)  # fmt: skip
    left.set_xlim(min(paper) - 1.5, max(paper) + 1.2)
    left.set_xlabel("ImageNet-1K top-1 % (paper; GFLOPs = multiply-adds)")
    left.set_yticks(y)
    left.set_yticklabels(labels, fontsize=8)
    left.legend(loc="upper center", bbox_to_anchor=below, fontsize=7)
    ours = [r["val_acc"] for r in rows]
    right.barh(y, ours, color="#4c72b0",
               label=f"ours: val top-1, {cfg.epochs} epoch(s) at {cfg.image_size}px")  # fmt: skip
    for yi, v in zip(y, ours):
        right.text(v + 0.3, yi, f"{v:.1f}", va="center", fontsize=7)
    right.set_xlim(max(0.0, min(ours) - 10), min(100.0, max(ours) + 8))
    right.set_xlabel(f"validation top-1 % (ours; data: {cfg.data or 'embedded digits'})")
    right.legend(loc="upper center", bbox_to_anchor=below, fontsize=7)
    fig.suptitle("ConvNeXt roadmap: each step trained with one recipe")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
