"""FBNet's picture of a searched architecture (Wu et al. 2019, arXiv 1812.03443, Figure 4).

One bar per searched layer: height = the block's expansion ratio e, colour = its depthwise kernel
size, hatching = grouped (g2) 1x1 convs, an empty slot = "skip". Dashed lines separate the
stages; stride-2 layers are marked under the axis and each stage's width is written above it.
Any spec in the format of ``convzoo.models.fbnet`` (what ``convzoo search fbnet`` writes as
``arch.json``) can be drawn, and so can the registered FBNet-A/B/C.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from convzoo.cliutil import UsageError
from convzoo.models.fbnet import ArchSpec, load_spec
from convzoo.registry import get_entry, list_models

KERNEL_COLOURS = {3: "#4c72b0", 5: "#dd8452"}


@dataclass(frozen=True)
class LayerRow:
    layer: int  # 1-based, over all stages
    stage: int  # 1-based
    candidate: str  # Table 2's name ("k5_e6", "k3_e1_g2", "skip")
    out_channels: int
    stride: int


def resolve_spec(source: str) -> tuple[ArchSpec, str]:
    """(spec, title) from a JSON spec file or a registered model whose config has a ``spec``."""
    if source in list_models(source):
        spec = getattr(get_entry(source).config, "spec", None)
        if spec is None:
            raise UsageError(f"{source} has no block spec to draw (FBNet models and specs only)")
        return load_spec(spec), source
    if not Path(source).exists():
        raise FileNotFoundError(f"ARCH {source}: neither a spec file nor a registered FBNet name")
    return load_spec(source), Path(source).name


def layer_rows(spec: ArchSpec) -> list[LayerRow]:
    rows, n = [], 0
    for s, stage in enumerate(spec, start=1):
        for block in stage:
            n += 1
            rows.append(LayerRow(n, s, block.candidate, block.out_channels, block.stride))
    return rows


def draw_arch(spec: ArchSpec, path: str | Path, title: str = "") -> list[LayerRow]:
    """Write the picture of ``spec`` to ``path`` (PNG); returns the layers drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = layer_rows(spec)
    blocks = [b for stage in spec for b in stage]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.42 * len(rows) + 2.5), 3.6))
    for row, block in zip(rows, blocks):
        if block.skip:
            ax.text(row.layer, 0.15, "skip", rotation=90, ha="center", va="bottom", fontsize=7)
            continue
        ax.bar(row.layer, block.expand_ratio, width=0.8,
               color=KERNEL_COLOURS.get(block.kernel_size, "gray"), edgecolor="black",
               hatch="//" if block.groups == 2 else None)  # fmt: skip
    top = 7.2
    start = 1
    for s, stage in enumerate(spec, start=1):
        end = start + len(stage) - 1
        if s > 1:
            ax.axvline(start - 0.5, color="gray", linestyle="--", linewidth=0.8)
        ax.text((start + end) / 2, top - 0.35, f"{stage[0].out_channels}", ha="center",
                va="top", fontsize=7, color="dimgray")  # fmt: skip
        start = end + 1
    for row in rows:
        if row.stride == 2:
            ax.annotate("s2", (row.layer, 0), xytext=(row.layer, -0.9), ha="center",
                        fontsize=7, arrowprops={"arrowstyle": "->", "lw": 0.6})  # fmt: skip
    ax.set_xlim(0.4, len(rows) + 0.6)
    ax.set_ylim(0, top)
    ax.set_yticks([1, 3, 6])
    ax.set_xticks([r.layer for r in rows])
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("searched layer (dashed: stage boundary; s2: stride 2; top: output channels)",
                  labelpad=14)  # fmt: skip
    ax.set_ylabel("expansion ratio e")
    ax.set_title(title or "searched architecture")
    legend = [Patch(facecolor=c, edgecolor="black", label=f"kernel {k}x{k}")
              for k, c in KERNEL_COLOURS.items()]  # fmt: skip
    legend.append(
        Patch(facecolor="white", edgecolor="black", hatch="//", label="group 2 + shuffle")
    )
    legend.append(Patch(facecolor="white", edgecolor="white", label="empty slot: skip"))
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return rows
