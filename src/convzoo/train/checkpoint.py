"""Atomic checkpoints that survive SIGKILL, and RNG state capture for exact resume.

``save_checkpoint`` writes to a temporary file in the same directory, fsyncs it, moves the
current ``last.pt`` to ``prev.pt``, renames the temporary file to ``last.pt`` (atomic on POSIX)
and fsyncs the directory. A kill at any instant leaves a complete ``last.pt`` or ``prev.pt``.
``load_checkpoint`` turns a truncated or corrupt file into a ``CheckpointError`` naming the file
and the previous good checkpoint.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

LAST = "last.pt"
PREV = "prev.pt"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    pass


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: str | Path, previous: str | Path | None = None) -> Path:
    """``torch.save`` so that a reader (or a resume after SIGKILL) never sees half a file.

    With ``previous``, the file being replaced is first moved there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)  # the last good one survives until the new one is in place
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def save_checkpoint(state: dict[str, Any], directory: str | Path) -> Path:
    """Write ``state`` as ``directory/last.pt``, keeping the previous one as ``prev.pt``."""
    directory = Path(directory)
    state = {"format_version": FORMAT_VERSION, **state}
    return atomic_save(state, directory / LAST, previous=directory / PREV)


def find_resume(directory: str | Path) -> Path | None:
    """The checkpoint to resume a run directory from: last.pt, or prev.pt if killed mid-swap."""
    directory = Path(directory)
    for name in (LAST, PREV):
        if (directory / name).is_file():
            return directory / name
    return None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        # weights_only=False: the checkpoint holds RNG states (numpy arrays, tuples) and the config.
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch.load raises many types on a damaged zip/pickle
        prev = path.with_name(PREV) if path.name == LAST else None
        hint = (
            f"; the previous good checkpoint is kept at {prev}: resume from it with --resume {prev}"
            if prev is not None and prev.is_file()
            else ""
        )
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: {err}){hint}"
        ) from err
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a convzoo checkpoint (no 'model' entry)")
    return state
