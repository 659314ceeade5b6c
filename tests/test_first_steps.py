"""benchmarks/first_steps.py trains on real image files and prints the loss of each block of steps."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import load_benchmark


def _load():
    return load_benchmark("first_steps")


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog", "ship"):
        (root / "train" / cls).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "train" / cls / f"{i}.jpg")
    return root


def test_prints_the_loss_of_every_block_of_steps(tmp_path, capsys):
    mod = _load()
    data = _folder(tmp_path / "data")
    argv = [
        "nin_cifar", "--data", str(data), "--steps", "4", "--every", "2", "--batch-size", "4",
        "--image-size", "16", "--model-args", '{"batch_norm": true}', "--init", "fan_in",
    ]  # fmt: skip
    assert mod.main(argv) == 0
    out = capsys.readouterr().out
    assert f"ln 3 = {math.log(3):.4f}" in out  # chance, from the folder's three classes
    losses = [float(v) for v in re.findall(r"step \d+ mean loss (\S+)", out)]
    assert len(losses) == 2 and all(math.isfinite(v) and v > 0 for v in losses)


def test_bad_input_is_one_line(tmp_path, capsys):
    mod = _load()
    with pytest.raises(SystemExit):
        mod.main(["nin_cifar", "--data", str(tmp_path / "missing")])
    assert "--data: no such folder" in capsys.readouterr().err
    data = _folder(tmp_path / "data")
    with pytest.raises(SystemExit):
        mod.main(["nin_cifar", "--data", str(data), "--model-args", "{batch_norm"])
    assert "--model-args is not JSON" in capsys.readouterr().err
