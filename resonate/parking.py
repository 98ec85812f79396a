"""Executions parked on a short sleep, in memory, until the sleep ends (see ``execution.Parked``).

A workflow that sleeps for less than ``PARK_MS`` keeps its task (the heartbeat keeps its lease) and waits
here instead of suspending: at its deadline, on the daemon's clock, ``wake`` hands it back to the
runtime's pool. One thread for all of them, started when the first parks and gone when none is left. If
the process dies meanwhile, its lease lapses and another worker replays the workflow: the sleep's
promise has timed out by then, so it goes on at once. Waking costs one read, and is on time to within
the daemon's load, where a suspended sleep waited for the daemon's timer, a push and a claim.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from typing import Any

MAX_WAIT_S = 1.0  # the longest the thread waits before looking again (the clock it reads can move)


class Parker:
    def __init__(self, now: Callable[[], int], stopping: threading.Event, wake: Callable[[Any], None]) -> None:
        self._now = now
        self._stopping = stopping
        self._wake = wake
        self._heap: list[tuple[int, int, Any]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def park(self, at: int, execution: Any) -> bool:
        """Wake ``execution`` at ``at`` (ms, the transport's clock); False when stopping (not parked)."""
        with self._cond:
            if self._stopping.is_set():
                return False
            heapq.heappush(self._heap, (at, next(self._seq), execution))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="resonate-parked", daemon=True)
                self._thread.start()
            self._cond.notify()
            return True

    def drain(self) -> list[Any]:
        """Stop: every execution still parked, for the caller to let go of."""
        with self._cond:
            out = [e for _, _, e in self._heap]
            self._heap.clear()
            self._cond.notify()
            return out

    def __len__(self) -> int:
        return len(self._heap)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._heap or self._stopping.is_set():
                        self._thread = None
                        return
                    delay = (self._heap[0][0] - self._now()) / 1000.0
                    if delay <= 0:
                        due = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(min(delay, MAX_WAIT_S))
            self._wake(due)
