"""The daemon's scheduler: an asyncio task of the event loop that owns the engine.

It applies deadlines (promise timeouts, sleeps, lapsed leases, resends, cron ticks) when they fall due:
it sleeps until the engine's next deadline and is woken early by any write that makes an earlier one
(``Engine.wake``), so it never scans on a fixed tick. Being on the loop, it shares no lock with anyone.
"""

from __future__ import annotations

import asyncio
import logging

from .. import errors
from ..core.engine import Engine

log = logging.getLogger("resonate.scheduler")

IDLE_WAIT_S = 3600.0  # nothing scheduled: wait until a write wakes us
RETRY_AFTER_MS = 1000  # a failed tick (a store hiccup) is tried again this much later
STORE_DOWN = (errors.StoreGone, errors.StoreFull, errors.StoreCorrupt)


class Scheduler:
    def __init__(self, engine: Engine, *, max_wait_s: float = IDLE_WAIT_S) -> None:
        self.engine = engine
        self.max_wait_s = max_wait_s
        self._wake = asyncio.Event()
        engine.wake = self._wake.set

    async def run(self) -> None:
        """Tick, sleep until the next deadline or a wake-up, repeat; until cancelled."""
        engine = self.engine
        while True:
            self._wake.clear()
            try:
                nxt = engine.tick()
            except STORE_DOWN:  # the store says so itself, once: no traceback per retry
                nxt = engine.clock.now() + RETRY_AFTER_MS
            except Exception:  # a store hiccup must not kill the scheduler; try again shortly
                log.exception("scheduler tick failed")
                nxt = engine.clock.now() + RETRY_AFTER_MS
            engine.wake_at = nxt
            wait = self.max_wait_s if nxt is None else min(max(0.0, (nxt - engine.clock.now()) / 1000.0),
                                                           self.max_wait_s)
            if wait > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)  # let requests in between batches of due work
