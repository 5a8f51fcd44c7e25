"""A Trio run on a thread of its own, for services that outlive one test.

pytest-trio gives every test its own ``trio.run`` and has no session-scoped async
fixtures, so a long-lived service (a server, the real engine) runs in a thread:
:class:`TrioThread` starts it, waits until the subclass's :meth:`TrioThread.body` says it
is up, and on :meth:`TrioThread.stop` sets the stop event ``body`` waits on and joins the
thread. A failure while starting, or in the run, is raised in the caller's thread.
``call`` / ``run`` reach into the run from outside it.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, Self, TypeVar

import trio

T = TypeVar("T")


class TrioThread:
    # Named in thread listings and error messages.
    what = "the Trio thread"

    def __init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=self.what, daemon=True)

    async def body(self, started: Callable[[], None], stop: trio.Event) -> None:
        """The service: call ``started()`` once it is up, return after ``stop`` is set."""
        raise NotImplementedError

    def start(self, timeout: float = 600) -> Self:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"{self.what} did not start")
        if self._error is not None:
            raise RuntimeError(f"{self.what} failed to start") from self._error
        return self

    def stop(self, timeout: float = 60) -> None:
        if self._token is not None and self._stop is not None:
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"{self.what} did not stop")

    @property
    def error(self) -> BaseException | None:
        """What ended the run with an exception, if anything did."""
        return self._error

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the Trio thread and return its result."""
        assert self._token is not None
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def run(self, async_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``async_fn(*args)`` in the Trio run; call from outside it."""
        assert self._token is not None
        return trio.from_thread.run(async_fn, *args, trio_token=self._token)

    def _main(self) -> None:
        try:
            trio.run(self._run)
        except BaseException as exc:  # reported to the caller's thread
            self._error = exc
            self._ready.set()

    async def _run(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        await self.body(self._ready.set, self._stop)
