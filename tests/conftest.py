"""Shared test helpers. Test modules import the plain functions (``from conftest import ...``);
pytest puts this directory on ``sys.path`` because ``tests/`` is not a package."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

# Inductor compiles in a pool of subprocesses by default; in a long-lived xdist worker that later
# forks DataLoader workers or runs torchrun, the worker died (three full runs, each at a test that
# starts child processes). Compiling in-process keeps the suite's workers free of that pool.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import convzoo
from convzoo.registry import get_entry

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def widest_int8_weight(path: Path) -> int:
    """The largest |value| among an ONNX file's int8 initializers (its quantized weights)."""
    import onnx

    ints = [onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
            if t.data_type == onnx.TensorProto.INT8]  # fmt: skip
    assert ints, f"no int8 weights in {path}"
    return max(int(abs(a.astype("int32")).max()) for a in ints)


def load_benchmark(name: str) -> ModuleType:
    """A script of ``benchmarks/`` imported as a module (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses in the script look their module up here
    spec.loader.exec_module(module)
    return module


def pytest_configure(config):
    # Tiny models lose more to thread start-up and contention than they gain from a second
    # thread; the suite runs one process per core instead (pytest -n 2).
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def tiny_model(name: str, **overrides: Any) -> nn.Module:
    """The registered model ``name`` at its tiny test size; ``overrides`` win over the tiny ones."""
    return convzoo.create_model(name, **{**get_entry(name).tiny.overrides, **overrides})


def tiny_input(name: str, batch: int | None = None, size: int | None = None) -> torch.Tensor:
    """A random input batch of the shape the tiny model ``name`` accepts."""
    entry = get_entry(name)
    s = size or entry.tiny.input_size
    return torch.randn(batch or entry.tiny.batch_size, entry.info.in_channels, s, s)


@torch.no_grad()
def randomize_bn(model: nn.Module, seed: int = 0, affine: bool = True) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics (and, with ``affine``, scale and
    shift), drawn from a private generator: a fresh BatchNorm is the identity in eval mode and
    would hide a mis-mapped or mis-folded norm. Returns ``model`` for chaining."""
    g = torch.Generator().manual_seed(seed)

    def uniform(t: torch.Tensor, low: float, high: float) -> None:
        t.copy_(torch.rand(t.shape, generator=g) * (high - low) + low)

    for m in model.modules():
        if isinstance(m, _BatchNorm) and m.track_running_stats:
            uniform(m.running_mean, -0.5, 0.5)
            uniform(m.running_var, 0.5, 1.5)
            if affine and m.affine:
                uniform(m.weight, 0.5, 1.5)
                uniform(m.bias, -0.5, 0.5)
    return model
