"""A run folder belongs to one live run: ``RunLock`` holds ``<run>/run.lock`` while it trains.

The lock is an exclusive ``flock`` on the file, so the kernel releases it when its process dies
however it dies (SIGKILL included): a lock file left behind by a dead run is stale and the next
run takes it over. The file records the owner's pid, host and start time, which the refusal
message of a second run names. ``flock`` on a network file system may not exclude runs on other
hosts; the host in the message says where the owner runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

LOCK = "run.lock"


class RunInUse(OSError):
    """Another live run holds the folder. An ``OSError``: the CLI reports it in one line."""


class RunLock:
    """``with RunLock(folder):`` the only run writing into ``folder``."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(fd)
                os.close(fd)
                raise RunInUse(
                    f"{self.path.parent} is in use by another live run ({owner}); wait for it, "
                    f"or choose another --output (copy the folder to branch the run)"
                ) from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the owner released and unlinked the file we opened: open it afresh
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}  # fmt: skip
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(me).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink before unlocking: a run waiting to start then creates a fresh file.
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino)


def _read_owner(fd: int) -> str:
    try:
        owner = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {owner['pid']} on {owner['host']}, started {owner['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "owner unknown"


def run_dir_of(resume: str | Path) -> Path:
    """The run folder a ``--resume`` argument names: the folder itself, or a checkpoint's folder."""
    path = Path(resume)
    return path if path.is_dir() else path.parent
