"""Which server processes are alive on a store: one lock file per process.

Every process that opens a store takes an exclusive ``flock`` on a file of its own,
``<store>.instances/<instance>.lock``, and holds it until it closes the store (or dies:
the kernel drops the lock with the process, kill -9 included). The rows a process
creates carry its instance id, so the start-up sweep can fail only the running rows
whose process is gone — a new server version starting during a rollout leaves the rows
of the old one, still running beside it, alone.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path


class InstanceLock:
    """This process's claim on a store, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, store_path: Path) -> None:
        self.folder = store_path.with_name(store_path.name + ".instances")
        self.instance = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / f"{self.instance}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        (self.folder / f"{self.instance}.lock").unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def is_alive(self, instance: str | None) -> bool:
        """Whether the process that wrote rows as ``instance`` still holds its lock.
        Rows with no instance (written before schema v2) count as a dead process's."""
        if instance is None:
            return False
        if instance == self.instance:
            return True
        path = self.folder / f"{instance}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        path.unlink(missing_ok=True)  # a dead process's leftover
        return False
