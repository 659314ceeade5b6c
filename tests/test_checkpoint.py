"""Atomic checkpoints, corrupt-file errors, and resume after SIGKILL == an uninterrupted run."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

from convzoo.cli import main
from convzoo.train.checkpoint import (
    CheckpointError,
    atomic_save,
    find_resume,
    load_checkpoint,
    save_checkpoint,
)
from convzoo.train.config import TrainConfig
from convzoo.train.engine import train

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY_NIN = {"blocks": ((3, 8, 8, 8), (3, 8, 8, 8), (3, 8, 8, 0)), "batch_norm": True}


def test_save_keeps_previous_and_leaves_no_temp_files(tmp_path):
    save_checkpoint({"model": {"w": torch.zeros(2)}}, tmp_path)
    save_checkpoint({"model": {"w": torch.ones(2)}}, tmp_path)
    assert torch.equal(load_checkpoint(tmp_path / "last.pt")["model"]["w"], torch.ones(2))
    assert torch.equal(load_checkpoint(tmp_path / "prev.pt")["model"]["w"], torch.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "prev.pt"]
    # Killed between moving last.pt away and renaming the new one in: resume finds prev.pt.
    (tmp_path / "last.pt").unlink()
    assert find_resume(tmp_path) == tmp_path / "prev.pt"


def test_truncated_checkpoint_is_a_clear_error_naming_file_and_previous(tmp_path):
    save_checkpoint({"model": {"w": torch.zeros(1000)}}, tmp_path)
    save_checkpoint({"model": {"w": torch.ones(1000)}}, tmp_path)
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(last)
    msg = str(err.value)
    assert str(last) in msg and "corrupt or truncated" in msg and str(tmp_path / "prev.pt") in msg
    assert load_checkpoint(tmp_path / "prev.pt")["model"]["w"].sum() == 0  # still good
    garbage = tmp_path / "x.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"x\.pt is corrupt"):
        load_checkpoint(garbage)


def test_failed_write_leaves_the_old_file(tmp_path):
    atomic_save({"a": 1}, tmp_path / "f.pt")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"a": Unpicklable()}, tmp_path / "f.pt")
    assert torch.load(tmp_path / "f.pt") == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.pt"]


# The child trains with step checkpoints; right after the one at (epoch 2, batch 4) it trains two
# more batches (progress that the kill throws away), then announces itself and waits to be killed.
_CHILD = textwrap.dedent(
    """
    import sys, time, torch
    torch.set_num_threads(1)
    import convzoo.train.engine as engine
    from convzoo.cli import main

    state = {"armed": False, "forwards": 0}
    real_save = engine.save_checkpoint

    def save(st, out):
        path = real_save(st, out)
        if st["epoch"] == 1 and st["batch"] == 4:
            state["armed"] = True
        return path

    def pre_hook(module, args):
        if state["armed"] and hasattr(module, "model_name") and module.training:
            state["forwards"] += 1
            if state["forwards"] == 3:
                print("READY-TO-KILL", flush=True)
                time.sleep(120)

    engine.save_checkpoint = save
    torch.nn.modules.module.register_module_forward_pre_hook(pre_hook)
    sys.exit(main(sys.argv[1:]))
    """
)


def _cli_args(out: Path) -> list[str]:
    return ["train", "nin_cifar", "--output", str(out), "--image-size", "8", "--crop-padding", "1",
            "--batch-size", "16", "--max-train-samples", "128", "--epochs", "2",
            "--checkpoint-every-steps", "3", "--deterministic", "--no-progress", "--no-plots",
            "--lr", "0.05", "--ema-decay", "0.9", "--model-arg", f"blocks={TINY_NIN['blocks']}",
            "--model-arg", "batch_norm=True"]  # fmt: skip


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, *_cli_args(killed)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    watchdog = threading.Timer(180, child.kill)  # never hang the suite on a stuck child
    watchdog.start()
    try:
        for line in child.stdout:
            if "READY-TO-KILL" in line:
                break
        else:
            pytest.fail(f"child ended before the kill point: {child.wait()} {child.stderr.read()}")
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
    ckpt = load_checkpoint(killed / "last.pt")
    assert (ckpt["epoch"], ckpt["batch"], ckpt["step"]) == (1, 4, 12)  # mid-epoch 2

    # Resume in this process (the kill above is the part that needs a real process).
    torch.set_num_threads(1)
    try:
        assert main(["train", "--resume", str(killed)]) == 0
    finally:
        torch.use_deterministic_algorithms(False)

    # The uninterrupted run, in this process with the same settings.
    full = TrainConfig(model="nin_cifar", model_args=TINY_NIN, image_size=8, crop_padding=1,
                       batch_size=16, max_train_samples=128, epochs=2, checkpoint_every_steps=3,
                       deterministic=True, progress=False, plots=False, lr=0.05, ema_decay=0.9,
                       output=str(tmp_path / "full"))  # fmt: skip
    try:
        train(full)
    finally:
        torch.use_deterministic_algorithms(False)
    a = load_checkpoint(killed / "last.pt")
    b = load_checkpoint(tmp_path / "full" / "last.pt")
    assert a["step"] == b["step"] == 16
    for part in ("model", "ema"):
        for k in b[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    # The metrics log holds each epoch once, with identical numbers.
    assert (killed / "metrics.jsonl").read_text().count('"kind": "epoch"') == 2
