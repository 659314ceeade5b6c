"""DenseNet's weight map (Huang et al., "Densely Connected Convolutional Networks", CVPR 2017,
arXiv 1608.06993, Figure 5 and section 5 "Feature Reuse").

For each dense block: the weight from source s to target l is the L1 norm of the weights of l's
first convolution that read s's feature maps, divided by the number of those maps (the caption's
"average L1 norm (normalized by number of input feature-maps)"). Source 0 is the block's input
(the stem's or the previous transition's output), source j its j-th layer. The targets are the
block's layers, then the transition layer that follows it, or for the last block the classifier
(its linear layer, which reads every map of the block after the final BN-ReLU-pool).

Layers and the module after a block are found by structure (``DenseBlock`` / ``DenseLayer``, the
first conv or linear after the block that reads all its maps), not by attribute names.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import Tensor, nn

from convzoo.cliutil import UsageError
from convzoo.models.densenet import DenseBlock, DenseLayer

__all__ = ["BlockWeights", "dense_block_weights", "densenet_weight_map", "draw_weight_map"]


@dataclass(frozen=True)
class BlockWeights:
    block: int  # 1-based
    growth_rate: int
    in_channels: int  # maps of source 0
    after: str  # "transition" | "classifier"
    # weights[s][t]: source s (0..L) to target t (layers 1..L, then the transition / classifier);
    # None where no connection exists (a layer reads only earlier layers).
    weights: list[list[float | None]]


def _source_norms(weight: Tensor, sizes: list[int]) -> list[float]:
    """L1 norm of the input-channel slices of ``weight`` (out, in, ...), each divided by its size."""
    w = weight.detach().abs().reshape(weight.shape[0], weight.shape[1], -1).sum(dim=(0, 2))
    out, start = [], 0
    for n in sizes:
        out.append(float(w[start : start + n].sum()) / n)
        start += n
    return out


def _reader_after(model: nn.Module, block: DenseBlock) -> tuple[str, nn.Module]:
    """The first conv / linear after ``block`` (in module order) reading all its maps."""
    seen = False
    inside = {id(m) for m in block.modules()}
    for m in model.modules():
        if m is block:
            seen = True
        elif seen and id(m) not in inside:
            if isinstance(m, nn.Conv2d) and m.in_channels == block.out_channels:
                return "transition", m
            if isinstance(m, nn.Linear) and m.in_features == block.out_channels:
                return "classifier", m
    raise ValueError(f"no layer after dense block reads its {block.out_channels} maps")


def dense_block_weights(model: nn.Module) -> list[BlockWeights]:
    blocks = [m for m in model.modules() if isinstance(m, DenseBlock)]
    if not blocks:
        raise UsageError(f"{type(model).__name__} has no dense blocks (a DenseNet is needed)")
    out = []
    for b, block in enumerate(blocks, start=1):
        layers = [m for m in block if isinstance(m, DenseLayer)]
        c0 = layers[0].conv1.in_channels
        k = (block.out_channels - c0) // len(layers)
        n_layers = len(layers)
        matrix: list[list[float | None]] = [[None] * (n_layers + 1) for _ in range(n_layers + 1)]
        for t, layer in enumerate(layers):  # target t + 1 reads sources 0..t
            for s, v in enumerate(_source_norms(layer.conv1.weight, [c0] + [k] * t)):
                matrix[s][t] = v
        kind, reader = _reader_after(model, block)
        for s, v in enumerate(_source_norms(reader.weight, [c0] + [k] * n_layers)):
            matrix[s][n_layers] = v
        out.append(BlockWeights(b, k, c0, kind, matrix))
    return out


def draw_weight_map(blocks: list[BlockWeights], path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(blocks), figsize=(4.2 * len(blocks) + 1.0, 4.4), squeeze=False)
    image = None
    for ax, bw in zip(axes[0], blocks):
        m = np.array([[np.nan if v is None else v for v in row] for row in bw.weights])
        m = m / np.nanmax(m)  # each block on its own scale, as the paper's figure
        image = ax.imshow(np.ma.masked_invalid(m), cmap="jet", vmin=0, vmax=1, origin="upper")
        n = m.shape[1]
        ax.set_xticks(range(n))
        ax.set_xticklabels([str(i) for i in range(1, n)] + [bw.after[:5] + "."], fontsize=7,
                           rotation=90)  # fmt: skip
        ax.set_yticks(range(m.shape[0]))
        ax.set_yticklabels([str(i) for i in range(m.shape[0])], fontsize=7)
        ax.set_xlabel("target layer l (last: " + bw.after + ")")
        ax.set_ylabel("source layer s (0: block input)")
        ax.set_title(f"dense block {bw.block}")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.85,
                 label="mean |w| per input map, s -> l (block max = 1)")  # fmt: skip
    if title:
        fig.suptitle(title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def densenet_weight_map(checkpoint: str | Path, output: str | Path) -> list[BlockWeights]:
    """The maps of a convzoo training checkpoint of a DenseNet; writes the PNG and a JSON."""
    from convzoo.train.inference import load_trained

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"CHECKPOINT {checkpoint}: no such file")
    model, ckpt = load_trained(checkpoint, device="cpu")
    blocks = dense_block_weights(model)
    draw_weight_map(blocks, output, title=f"{ckpt['config']['model']}: {Path(checkpoint).name}")
    Path(output).with_suffix(".json").write_text(json.dumps([asdict(b) for b in blocks]))
    return blocks
