"""Heartbeats: every run's pings from one task, with a heap of due times.

A run that sends heartbeats pings after every ``ping_interval`` seconds of silence
(runtime/run.py). One sleeping task per run did that at a cost paid by every stream for
its whole life: a task, its coroutine frames, a nursery and the cancel scope of each
``sleep_until`` (about 4 KiB of a ~50 KiB idle stream, benchmarks/README.md), and one
timer wake-up per ping. Here one task per process serves them all: it sleeps until the
earliest due time, then pings every run that is due and schedules each run's next one.

Entries are not moved when a run sends an event (that would cost a heap operation per
event): a run's entry keeps its old due time, and when it comes up the run is asked
again (:meth:`Beating.beat`), pings only if it really was silent that long, and gives
its new due time. So each run costs one heap operation per interval, whatever it
streams. A run that ends is removed at once (its entry lets go of it, and is dropped
when it comes up).
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Any, Protocol

import trio


class Beating(Protocol):
    def next_beat(self) -> float:
        """When the next ping is due, if nothing is sent meanwhile."""
        ...

    def beat(self, now: float) -> float | None:
        """Ping if due at ``now``; the next due time, or None: no more pings."""
        ...


# A heap entry: [due time, order of addition (no two entries ever compare their runs),
# the run, or None once it is removed]. Mutable, so a run that ends lets go of its run at
# once (its buffer and builder with it) instead of when its entry would come up.
Entry = list[Any]


class Heartbeats:
    """Pings every run added, from :meth:`serve` (one task, which never returns)."""

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._order = itertools.count()
        self._removed = 0  # entries in the heap whose run was removed
        # The scope :meth:`serve` sleeps in, while it sleeps: its deadline is the
        # earliest due time, moved earlier when a run due sooner is added.
        self._sleep: trio.CancelScope | None = None

    def __len__(self) -> int:
        """How many runs it pings."""
        return len(self._heap) - self._removed

    def add(self, run: Beating) -> Entry:
        """Ping ``run`` from now on, until :meth:`remove` or its :meth:`Beating.beat`
        says no more."""
        entry: Entry = [run.next_beat(), next(self._order), run]
        heapq.heappush(self._heap, entry)
        if self._sleep is not None and entry[0] < self._sleep.deadline:
            self._sleep.deadline = entry[0]
        return entry

    def remove(self, entry: Entry) -> None:
        """No more pings for the run of ``entry`` (from :meth:`add`)."""
        if entry[2] is None:
            return
        entry[2] = None
        self._removed += 1
        if self._removed > 64 and 2 * self._removed > len(self._heap):
            # Mostly removed runs (many short streams): rebuilt without them, so the
            # heap stays the size of the live ones.
            self._heap = [e for e in self._heap if e[2] is not None]
            heapq.heapify(self._heap)
            self._removed = 0

    async def serve(self) -> None:
        while True:
            with trio.CancelScope(deadline=self._heap[0][0] if self._heap else math.inf
                                  ) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None
            # Everything due now goes in one pass: no await until the next sleep, so a
            # run cannot end (or be added) halfway through.
            now = trio.current_time()
            heap = self._heap
            while heap and heap[0][0] <= now:
                entry = heapq.heappop(heap)
                run = entry[2]
                if run is None:
                    self._removed -= 1
                    continue
                due = run.beat(now)
                if due is None:
                    entry[2] = None
                else:
                    entry[0], entry[1] = due, next(self._order)
                    heapq.heappush(heap, entry)
