"""Read connections for SQLiteStore: a slow read blocks neither a write nor another read.

Issue 13, finding 3: with one connection and one lock for everything, 8 concurrent
``input_tokens`` calls on a long ``previous_response_id`` chain raised another key's
``GET`` median from 13 ms to 1,058 ms. In WAL mode readers and the writer do not block
each other (a reader sees the last commit before its transaction began), so the store's
reads run on a small pool of their own connections, each in a worker thread (where
``sqlite3`` releases the GIL while it steps), while writes keep the one writer
connection and its FIFO lock.

Each connection is used by one thread at a time: a read takes an idle one (waiting,
FIFO, when all are busy), runs its work in a thread and gives it back. A call that has
reached its thread runs to the end even if its caller is cancelled (``to_thread`` does
not abandon it), so a connection is only given back idle. Connections are
``query_only``: a write through one is refused by SQLite itself.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio

_T = TypeVar("_T")


def connect_reader(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA foreign_keys = ON")
        # A first read opens the WAL and its index now, not on some request later: the
        # files a connection holds are all there once the store is open.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


class ReadPool:
    """``size`` read-only connections to a WAL file (opened by :meth:`open_sync`, after
    the writer has set WAL and migrated the schema)."""

    def __init__(self, path: Path, size: int) -> None:
        if size < 1:
            raise ValueError("a read pool needs at least one connection")
        self.path = path
        self.size = size
        self._idle: list[sqlite3.Connection] = []
        self._slots = trio.Semaphore(size)
        self._closed = False

    def open_sync(self) -> None:
        try:
            for _ in range(self.size):
                self._idle.append(connect_reader(self.path))
        except BaseException:
            self._close_idle()
            raise

    async def run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        async with self._slots:
            if self._closed:
                raise RuntimeError(f"store {self.path} is closed")
            conn = self._idle.pop()
            try:
                return await trio.to_thread.run_sync(work, conn)
            finally:
                self._idle.append(conn)

    @property
    def busy(self) -> int:
        """Connections in use now."""
        return self.size - len(self._idle)

    async def aclose(self) -> None:
        """Wait for the reads in flight and those already waiting (FIFO), then close
        every connection; later reads are refused."""
        with trio.CancelScope(shield=True):
            for _ in range(self.size):
                await self._slots.acquire()
            self._closed = True
            await trio.to_thread.run_sync(self._close_idle)
            # Anyone still waiting for a connection wakes up to "closed".
            for _ in range(self.size):
                self._slots.release()

    def _close_idle(self) -> None:
        while self._idle:
            self._idle.pop().close()
