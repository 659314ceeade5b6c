"""FBNet's latency lookup table (section 3.2, Eq. 4-5), measured on the target device.

LAT(a) = sum_l LAT(b_l^(a)): each candidate block is timed alone at its layer's input shape, and a
network's predicted latency is the sum of its blocks' entries plus the fixed part (stem, last
conv, classifier), also measured. The table is a JSON file with its provenance (device, dtype,
batch size, torch version, date), so one measurement serves many searches.
Units: milliseconds per forward pass of one batch of ``batch_size`` images.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from convzoo.bench.measure import time_calls
from convzoo.bench.runner import BenchConfig, provenance
from convzoo.models.fbnet import ArchSpec
from convzoo.nas.supernet import FBNetSupernet


@dataclass
class LatencyTable:
    candidates: list[str]
    entries: list[dict[str, float]]  # per searched layer: candidate -> ms
    fixed_ms: float  # stem + last conv + classifier
    batch_size: int = 1
    input_size: int = 224
    provenance: dict = field(default_factory=dict)

    def predict(self, spec: ArchSpec) -> float:
        """Predicted ms of a network: the fixed part plus its blocks' entries."""
        blocks = [b for stage in spec for b in stage]
        if len(blocks) != len(self.entries):
            raise ValueError(f"spec has {len(blocks)} layers, the table {len(self.entries)}")
        return self.fixed_ms + sum(e[b.candidate] for e, b in zip(self.entries, blocks))

    def as_tensor(self) -> Tensor:
        """(L, K) entries in ``candidates`` order, for the differentiable expected latency."""
        return torch.tensor([[e[c] for c in self.candidates] for e in self.entries])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            table = cls(**data)
        except FileNotFoundError:
            raise FileNotFoundError(f"latency table {path} does not exist") from None
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"latency table {path} is not a valid table: {err}") from None
        for i, entry in enumerate(table.entries):
            missing = set(table.candidates) - set(entry)
            if missing:
                raise ValueError(f"latency table {path}: layer {i} lacks {sorted(missing)}")
        return table

    def check_matches(self, supernet: FBNetSupernet) -> None:
        if list(supernet.cfg.candidates) != self.candidates or len(supernet.layers) != len(
            self.entries
        ):
            raise ValueError(
                "the latency table was measured for another supernet "
                f"({len(self.entries)} layers, {self.candidates}); measure a new one"
            )


def median_ms(fn, device: torch.device, repeats: int = 5) -> float:
    """Median milliseconds per call of ``fn`` on ``device`` (synchronized)."""
    times = sorted(time_calls(fn, device, warmup=2, repeats=repeats, min_repeat_s=0.01))
    return 1e3 * times[len(times) // 2]


@torch.inference_mode()
def measure_latency_table(
    supernet: FBNetSupernet,
    device: str = "cpu",
    batch_size: int = 1,
    repeats: int = 5,
    layers: Sequence[int] | None = None,
) -> LatencyTable:
    """Time every candidate of every searched layer (eval mode) on ``device``."""
    dev = torch.device(device)
    cfg = supernet.cfg
    shapes = supernet.layer_input_shapes()
    entries: list[dict[str, float]] = []
    for i, (layer, shape) in enumerate(zip(supernet.layers, shapes)):
        if layers is not None and i not in layers:
            continue
        x = torch.randn(batch_size, *shape, device=dev)
        row = {}
        for name, op in zip(cfg.candidates, layer.ops):
            op = op.to(dev).eval()
            row[name] = median_ms(lambda op=op, x=x: op(x), dev, repeats)
        entries.append(row)
    stem = nn.Sequential(supernet.stem).to(dev).eval()
    tail = nn.Sequential(supernet.conv_head, supernet.head).to(dev).eval()
    x_in = torch.randn(batch_size, cfg.in_channels, cfg.input_size, cfg.input_size, device=dev)
    last = shapes[-1]
    size = -(-last[1] // cfg.layers[-1][1])
    x_tail = torch.randn(batch_size, cfg.layers[-1][0], size, size, device=dev)
    fixed = median_ms(lambda: stem(x_in), dev, repeats) + median_ms(
        lambda: tail(x_tail), dev, repeats
    )
    supernet.to("cpu")
    return LatencyTable(
        list(cfg.candidates),
        entries,
        fixed,
        batch_size,
        cfg.input_size,
        provenance(BenchConfig(device=device, batch_sizes=(batch_size,), repeats=repeats)),
    )
