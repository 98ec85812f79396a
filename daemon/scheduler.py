"""The scheduler: applies deadlines (promise timeouts, sleeps, lapsed leases, resends) when they fall due.

It sleeps until the engine's next deadline and is woken early by any write that makes an earlier one
(``Engine.wake``), so it never scans on a fixed tick. Used by local mode and by the daemon alike.
"""

from __future__ import annotations

import logging
import threading

from .engine import Engine

log = logging.getLogger("resonate.scheduler")

IDLE_WAIT_S = 3600.0  # nothing scheduled: wait until a write wakes us


class Scheduler:
    def __init__(self, engine: Engine, *, max_wait_s: float = IDLE_WAIT_S) -> None:
        self.engine = engine
        self.max_wait_s = max_wait_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        engine.wake = self._wake.set

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="resonate-scheduler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def poke(self) -> None:
        """Re-read the deadlines now (tests call this after moving a manual clock)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                nxt = self.engine.tick()
            except Exception:  # a store hiccup must not kill the scheduler; try again shortly
                log.exception("scheduler tick failed")
                nxt = self.engine.clock.now() + 1000
            self.engine.wake_at = nxt
            if nxt is None:
                wait = self.max_wait_s
            else:
                wait = max(0.0, (nxt - self.engine.clock.now()) / 1000.0)
                wait = min(wait, self.max_wait_s)
            if wait > 0:
                self._wake.wait(wait)
