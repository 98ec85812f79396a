"""Time for the engine and scheduler: injected, so tests move it by hand instead of sleeping.

The engine runs on ``MonotonicClock``: wall time read once at start, then moved only by the monotonic
clock, so a wall-clock step while it runs (an admin, NTP stepping, a VM resumed) neither freezes leases
and timers (a step back) nor fires them all at once (a step forward). Timestamps stay epoch
milliseconds, so the store is readable and a restart picks up the wall clock again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def now(self) -> int:
        """Milliseconds since the epoch."""
        ...


class SystemClock:
    """The wall clock as it is, steps and all (what a client shows a person)."""

    def now(self) -> int:
        return time.time_ns() // 1_000_000


class MonotonicClock:
    """Epoch milliseconds that only move forward, at the monotonic clock's pace.

    Example::

        clock = MonotonicClock()
        a = clock.now()   # the wall time at start ...
        b = clock.now()   # ... plus the monotonic time since: b >= a, whatever the wall clock did
    """

    def __init__(self, wall: Callable[[], int] = time.time_ns, mono: Callable[[], int] = time.monotonic_ns) -> None:
        self._mono = mono
        self._base = wall() // 1_000_000 - mono() // 1_000_000

    def now(self) -> int:
        return self._base + self._mono() // 1_000_000


class ManualClock:
    """A clock that moves only when told to; ``advance`` wakes anything waiting on ``changed``."""

    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self._now = start
        self.changed = threading.Condition()

    def now(self) -> int:
        return self._now

    def advance(self, ms: int) -> int:
        with self.changed:
            self._now += ms
            self.changed.notify_all()
        return self._now

    def set(self, ms: int) -> None:
        with self.changed:
            self._now = ms
            self.changed.notify_all()
