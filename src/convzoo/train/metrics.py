"""Run metrics: one JSON line per record (``metrics.jsonl``), an epoch table (``metrics.csv``),
and PNG plots (loss and accuracy curves, confusion matrix) drawn with matplotlib's Agg backend."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends records to ``metrics.jsonl``. A new run starts it empty; a resume keeps the records
    of the ``resume_epoch`` epochs its checkpoint completed (counted in epochs, which a changed
    batch size does not renumber)."""

    def __init__(self, directory: str | Path, resume_epoch: int | None = None) -> None:
        self.path = Path(directory) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in self.read() if resume_epoch is not None and r["epoch"] <= resume_epoch]
        with open(self.path, "w") as f:
            for r in kept:
                f.write(json.dumps(r) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a kill: everything after it is unreliable
        return out

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def write_csv(self) -> Path:
        rows = [r for r in self.read() if r.get("kind") == "epoch"]
        path = self.path.with_suffix(".csv")
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        return path


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Loss (train, val) and accuracy (train, val, val EMA) against epoch."""
    plt = _plt()
    rows = [r for r in records if r.get("kind") == "epoch"]
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 4))
    ep = [r["epoch"] for r in rows]
    for key, ax, label in [
        ("train_loss", ax_l, "train"), ("val_loss", ax_l, "val"),
        ("train_acc", ax_a, "train"), ("val_acc", ax_a, "val"), ("val_acc_ema", ax_a, "val (EMA)"),
    ]:  # fmt: skip
        pts = [(e, r[key]) for e, r in zip(ep, rows) if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", markersize=3, label=label)
    ax_l.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_a.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="accuracy")
    for ax in (ax_l, ax_a):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_confusion(matrix: Any, classes: Sequence[str], path: str | Path) -> Path:
    """Row-normalized confusion matrix (true class rows, predicted columns)."""
    plt = _plt()
    m = matrix.double()
    m = m / m.sum(dim=1, keepdim=True).clamp_min(1)
    n = len(classes)
    size = min(4 + 0.35 * n, 30)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(m.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 40:
        ax.set_xticks(range(n), classes, rotation=90)
        ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix (row-normalized)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
