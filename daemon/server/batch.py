"""Group commit: the engine calls that arrive while a commit is on the disk share the next one.

The daemon's event loop owns the engine. Every engine call of a request (and of the scheduler and the
push streams) is queued here; a *drain* runs the queued calls one after another on the loop, each in a
savepoint of one open transaction (``Store.begin_batch``), then hands the COMMIT to a thread of its own,
so the loop goes on reading requests while the disk flushes. Calls that arrive meanwhile wait in the
queue and form the next batch when the commit is back. Nothing is acknowledged before its batch is
durable: a call's answer (or its error) is given to its caller, and the messages it made are pushed, only
after the commit returned. A failed commit (disk full, the file gone) fails every call of its batch;
nothing of it was kept.

A store whose commit does not wait for the disk (memory, ``--durability normal``) commits on the loop
right after the drain: the hop to a thread would cost more than the commit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..core.engine import Effects, Engine
from ..protocol.results import Collected

log = logging.getLogger("resonate.batch")
T = TypeVar("T")

MAX_BATCH = 256  # calls per commit: a bound on how long the first call of a burst waits for the last


@dataclass(slots=True)
class _Call:
    fn: Callable[[], Any]
    future: asyncio.Future[Any] | None  # None: nobody waits (posted)
    what: str = ""
    alone: bool = False  # run outside any batch, in its own transactions (see ``alone``)


@dataclass(slots=True)
class BatchStats:
    batches: int = 0
    calls: int = 0
    largest: int = 0


class Batcher:
    """The one way engine calls reach the store from the daemon's loop (see the module's docstring)."""

    def __init__(self, engine: Engine, *, max_batch: int = MAX_BATCH) -> None:
        self.engine = engine
        self.store = engine.store
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._queue: deque[_Call] = deque()
        self._busy = False  # a drain is due or its commit is on the disk
        self._committer = _Committer() if getattr(self.store, "slow_commit", False) else None
        self.inline_single = True

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` (an engine call) in the next batch; its value or error once the batch is durable."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(fn, future))
        self._kick()
        return await future

    async def alone(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` in its turn but outside any batch: it opens and commits its own transactions (on
        the loop) and may run what a transaction cannot contain (retention's VACUUM steps)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(fn, future, alone=True))
        self._kick()
        return await future

    def post(self, fn: Callable[[], Any], what: str) -> None:
        """Run ``fn()`` in the next batch, waiting for nothing; a failure is logged (``what`` failed)."""
        self._queue.append(_Call(fn, None, what))
        self._kick()

    def close(self) -> None:
        if self._committer is not None:
            self._committer.close()

    def _kick(self) -> None:
        if not self._busy:
            self._busy = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        if not self._queue:
            self._busy = False
            return
        if self._queue[0].alone:
            self._run_alone(self._queue.popleft())
            return
        calls: list[_Call] = []
        while self._queue and len(calls) < self.max_batch and not self._queue[0].alone:
            calls.append(self._queue.popleft())
        if len(calls) == 1 and self.inline_single:
            # Nothing to share a commit with: its own transaction, committed here on the loop, costs less
            # than a savepoint and two thread hand-offs (a sequential workflow's every step).
            self._run_alone(calls[0])
            return
        try:
            self.store.begin_batch()
        except Exception as exc:  # the store is gone or full: every call of the batch fails with it
            self._settle(calls, [], [], exc)
            return
        outcomes: list[tuple[bool, Any]] = []
        self.engine.hold()
        try:
            for c in calls:
                try:
                    outcomes.append((True, c.fn()))
                except Exception as exc:  # its savepoint was undone; the others stand
                    outcomes.append((False, exc))
        finally:
            held = self.engine.unhold()
            commit = self.store.end_batch()
        if self._committer is None:
            try:
                commit()
            except Exception as exc:
                self._settle(calls, outcomes, held, exc)
            else:
                self._settle(calls, outcomes, held, None)
            return
        loop = asyncio.get_running_loop()
        self._committer.run(commit, lambda failed: loop.call_soon_threadsafe(self._settle, calls, outcomes, held,
                                                                           failed))

    def _run_alone(self, c: _Call) -> None:
        """Outside any batch: the call opens and commits its own transactions, and is answered at once."""
        try:
            outcome = (True, c.fn())
        except Exception as exc:
            outcome = (False, exc)
        self._settle([c], [outcome], [], None)

    def _settle(self, calls: list[_Call], outcomes: list[tuple[bool, Any]], held: list[Effects],
                failed: BaseException | None) -> None:
        """The batch is durable (``failed`` None) or was not kept: answer every call of it."""
        self.stats.batches += 1
        self.stats.calls += len(calls)
        self.stats.largest = max(self.stats.largest, len(calls))
        try:
            if failed is None:
                self.engine.deliver(held)
        finally:
            for i, c in enumerate(calls):
                ok, value = (False, failed) if failed is not None else outcomes[i]
                if c.future is None:
                    if not ok and failed is None:
                        log.error("%s failed", c.what, exc_info=value)
                elif not c.future.done():  # done: its caller went away (cancelled)
                    if ok:
                        c.future.set_result(value)
                    else:
                        c.future.set_exception(value)
            self._busy = False
            if self._queue:
                self._kick()


async def collect(engine: Engine, batch: Batcher, older_than: int, dry_run: bool = False) -> Collected:
    """Retention's steps (``Engine.gc_steps``), each alone in its turn (a VACUUM step cannot be part of a
    batch), other requests in between."""
    steps = engine.gc_steps(older_than, dry_run)
    total = Collected()
    while (step := await batch.alone(lambda: next(steps, None))) is not None:
        total = step
    return total


class _Committer:
    """The thread that runs each batch's COMMIT, handed over with a plain queue: cheaper for the loop than
    a ThreadPoolExecutor and run_in_executor (a tenth of the loop's time in W7 went to submitting)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], Callable[[BaseException | None], Any]] | None] = (
            queue.SimpleQueue())
        self._thread = threading.Thread(target=self._work, name="resonate-commit", daemon=True)
        self._thread.start()

    def run(self, commit: Callable[[], None], then: Callable[[BaseException | None], Any]) -> None:
        self._jobs.put((commit, then))

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            commit, then = job
            failed: BaseException | None = None
            try:
                commit()
            except BaseException as exc:  # handed to the loop: every call of the batch fails with it
                failed = exc
            try:
                then(failed)
            except RuntimeError:  # the loop closed (the daemon stopping): nobody waits for the answer
                pass
