"""The daemon's scheduler: an asyncio task of the event loop that owns the engine.

It applies deadlines (promise timeouts, sleeps, lapsed leases, resends, cron ticks) when they fall due:
it sleeps until the engine's next deadline and is woken early by any write that makes an earlier one
(``Engine.wake``), so it never scans on a fixed tick. Being on the loop, it shares no lock with anyone.

Retention is a second task of the same loop (``retain``): every ``gc_interval_s`` it collects what
completed longer ago than the retention, one small batch per transaction, yielding to the loop between
batches so requests are not held up behind it.
"""

from __future__ import annotations

import asyncio
import logging

from .. import errors
from ..core.engine import Engine
from .batch import Batcher, collect

log = logging.getLogger("resonate.scheduler")

IDLE_WAIT_S = 3600.0  # nothing scheduled: wait until a write wakes us
RETRY_AFTER_MS = 1000  # a failed tick (a store hiccup) is tried again this much later
MAX_GC_INTERVAL_S = 600.0  # a week's retention is checked every ten minutes: a day's deletes, in pieces
MIN_GC_INTERVAL_S = 1.0


def gc_interval_s(retention_ms: int) -> float:
    """How often retention runs: a tenth of the retention, from a second to ten minutes."""
    return min(max(retention_ms / 10_000.0, MIN_GC_INTERVAL_S), MAX_GC_INTERVAL_S)


class Scheduler:
    def __init__(self, engine: Engine, batch: Batcher, *, max_wait_s: float = IDLE_WAIT_S) -> None:
        self.engine = engine
        self.batch = batch
        self.max_wait_s = max_wait_s
        self._wake = asyncio.Event()
        engine.wake = self._wake.set

    async def run(self) -> None:
        """Tick, sleep until the next deadline or a wake-up, repeat; until cancelled."""
        engine = self.engine
        while True:
            self._wake.clear()
            try:
                nxt = await self.batch.call(engine.tick)
            except errors.STORE_DOWN:  # the store says so itself, once: no traceback per retry
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

    async def retain(self, retention_ms: int) -> None:
        """Every ``gc_interval_s``, collect what completed more than ``retention_ms`` ago; until cancelled."""
        interval = gc_interval_s(retention_ms)
        while True:
            await asyncio.sleep(interval)
            try:  # requests in between: each batch is one short transaction of a group commit
                total = await collect(self.engine, self.batch, retention_ms)
            except errors.STORE_DOWN:  # the store says so itself, once
                continue
            except Exception:  # a store hiccup must not end retention; the next pass tries again
                log.exception("retention pass failed")
                continue
            if total.promises:
                log.info("retention: deleted %d promises, %d tasks, %d callbacks; %d bytes given back",
                         total.promises, total.tasks, total.callbacks, total.reclaimed)
