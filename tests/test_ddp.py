"""Two real gloo processes under torchrun == one process on the combined batch.

The model is a tiny residual net with *batch-mode* stochastic depth (dropped blocks are skipped,
so DDP sees unused parameters): the run must not fail, and because every rank draws the same drop
decisions, two optimizer steps on two ranks give the weights of one process with twice the batch.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from convzoo.layers.drop import DropPath
from convzoo.train.checkpoint import load_checkpoint
from convzoo.train.distributed import has_batch_drop_path

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Registers "sdnet_tiny" (test-only), then runs the CLI: the same file for torchrun and one process.
_SCRIPT = textwrap.dedent(
    """
    import sys
    from dataclasses import dataclass
    import torch
    from torch import nn
    torch.set_num_threads(1)
    from convzoo.layers.conv import ConvNormAct
    from convzoo.layers.drop import DropPath, drop_path_rates
    from convzoo.layers.head import ClassifierHead
    from convzoo.models.base import ZooModel
    from convzoo.registry import ModelInfo, Paper, register_model

    @dataclass(frozen=True)
    class Cfg:
        width: int = 8
        depth: int = 4
        drop_path_rate: float = 0.0
        drop_path_mode: str = "batch"
        num_classes: int = 10
        in_channels: int = 3

    class Block(nn.Module):
        def __init__(self, w, p, mode):
            super().__init__()
            self.conv = ConvNormAct(w, w, 3, norm_layer=None)
            self.drop = DropPath(p, mode)
        def forward(self, x):
            return self.drop.add_branch(x, lambda: self.conv(x))

    class SDNet(ZooModel):
        def __init__(self, cfg):
            super().__init__(in_channels=cfg.in_channels, num_classes=cfg.num_classes,
                             num_features=cfg.width, min_input_size=1)
            self.stem = ConvNormAct(cfg.in_channels, cfg.width, 3, norm_layer=None)
            rates = drop_path_rates(cfg.drop_path_rate, cfg.depth)
            self.stages = nn.Sequential(*[Block(cfg.width, p, cfg.drop_path_mode) for p in rates])
            self.head = ClassifierHead(cfg.width, cfg.num_classes)

    register_model("sdnet_tiny", SDNet, Cfg(), info=ModelInfo(family="test", paper=Paper("t", "0"),
                   table="-", dataset="cifar", input_size=8, num_classes=10))
    from convzoo.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _args(out: Path, batch: int) -> list[str]:
    return ["train", "sdnet_tiny", "--output", str(out), "--batch-size", str(batch),
            "--max-train-samples", "64", "--epochs", "1", "--lr", "0.2", "--drop-path-rate", "0.7",
            "--crop-padding", "1", "--no-progress", "--no-plots", "--deterministic"]  # fmt: skip


@pytest.mark.isolated
def test_two_gloo_processes_equal_one_process_on_the_combined_batch(tmp_path):
    script = tmp_path / "run_sdnet.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    # Both at once: each is mostly interpreter start-up and imports. Each in its own session:
    # torchrun's agent signals its process group on shutdown, which must not reach pytest's worker.
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
             "2", str(script), *_args(tmp_path / "ddp", 16), "--device", "cpu"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        ),
        subprocess.Popen(
            [sys.executable, str(script), *_args(tmp_path / "one", 32), "--device", "cpu"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        ),
    ]  # fmt: skip
    try:
        (ddp_out, ddp_err), (one_out, one_err) = (p.communicate(timeout=240) for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[0].returncode == 0, ddp_out[-3000:] + ddp_err[-3000:]
    assert procs[1].returncode == 0, one_err[-3000:]
    assert "world size 2" in ddp_out and "world size 1" in one_out
    a = load_checkpoint(tmp_path / "ddp" / "last.pt")
    b = load_checkpoint(tmp_path / "one" / "last.pt")
    assert a["step"] == b["step"] == 2  # 64 samples, global batch 32
    for k in b["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6), k
    # Validation is sharded over the ranks and reduced: the same numbers as one process.
    fa = json.loads((tmp_path / "ddp" / "final.json").read_text())
    fb = json.loads((tmp_path / "one" / "final.json").read_text())
    assert abs(fa["val_loss"] - fb["val_loss"]) < 1e-5 and fa["val_acc"] == fb["val_acc"]
    assert abs(fa["train_loss"] - fb["train_loss"]) < 1e-5


def test_batch_mode_drop_path_is_detected_for_ddp():
    assert has_batch_drop_path(nn.Sequential(nn.Linear(2, 2), DropPath(0.5, "batch")))
    assert not has_batch_drop_path(nn.Sequential(DropPath(0.5, "sample"), DropPath(0.0, "batch")))
