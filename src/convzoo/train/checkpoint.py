"""Atomic checkpoints that survive SIGKILL, and RNG state capture for exact resume.

``save_checkpoint`` writes to a temporary file in the same directory, fsyncs it, moves the
current ``last.pt`` to ``prev.pt``, renames the temporary file to ``last.pt`` (atomic on POSIX)
and fsyncs the directory. A kill at any instant leaves a complete ``last.pt`` or ``prev.pt``.
``load_checkpoint`` unpickles with ``weights_only=True``: only tensors and plain data (dicts,
lists, tuples, numbers, strings) load, so a crafted file cannot run code; RNG states are stored as
tensors for that reason (``rng_state``). A truncated or corrupt file, or one that is not a convzoo
checkpoint, is a ``CheckpointError`` naming the file (and the previous good checkpoint).
"""

from __future__ import annotations

import os
import pickle
import random
import re
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

LAST = "last.pt"
PREV = "prev.pt"
# 1: numpy's RNG state as an array (loads through the allow-list below); 2: as tensors.
FORMAT_VERSION = 2
# What every training checkpoint holds (``engine.checkpoint_state``).
REQUIRED_KEYS = ("model", "config", "classes", "epoch", "batch", "step", "rng")


class CheckpointError(ValueError):
    pass


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states as plain data and tensors."""
    name, keys, pos, has_gauss, gauss = cast(tuple[str, np.ndarray, int, int, float],
                                             np.random.get_state())  # fmt: skip
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    npy = state["numpy"]
    if isinstance(npy, dict):
        keys = npy["keys"].numpy().astype(np.uint32)
        np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["gauss"]))
    else:  # format 1
        np.random.set_state(npy)
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


def _numpy_globals() -> list[Any]:
    """What a format-1 checkpoint's numpy RNG state needs unpickled: an array of uint32."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed the module
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A convzoo training checkpoint, loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = re.search(r"GLOBAL (\S+)", str(err))  # the name torch refused to import
        if refused is None:
            raise _corrupt(path, err) from err
        raise CheckpointError(
            f"{path} is not a convzoo checkpoint: it holds objects other than tensors and plain "
            f"data ({refused.group(1)}), so it was not loaded"
        ) from err
    except Exception as err:  # torch.load raises many types on a damaged zip/pickle
        raise _corrupt(path, err) from err
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a convzoo checkpoint (no 'model' entry)")
    return state


def check_training_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Refuse a file that loads but is not a training checkpoint (resume, eval, predict)."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing or not isinstance(state.get("config"), dict):
        raise CheckpointError(
            f"{path} is not a convzoo training checkpoint (missing {', '.join(missing) or 'config'})"
        )


def _corrupt(path: Path, err: Exception) -> CheckpointError:
    prev = path.with_name(PREV) if path.name == LAST else None
    hint = (
        f"; the previous good checkpoint is kept at {prev}: resume from it with --resume {prev}"
        if prev is not None and prev.is_file()
        else ""
    )
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return CheckpointError(
        f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: {first}){hint}"
    )
