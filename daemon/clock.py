"""Time for the engine and scheduler: injected, so tests move it by hand instead of sleeping."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> int:
        """Milliseconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> int:
        return time.time_ns() // 1_000_000


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
