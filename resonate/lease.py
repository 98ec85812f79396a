"""Fencing: an execution writes only while its task is still this worker's.

A worker paused (SIGSTOP, a long GC, a suspended laptop) past its lease loses its tasks: the daemon
gives them to another worker, with the next counter. When the paused worker continues, it must not act
on work it lost. So every write an execution makes carries its task id and counter (``fence``), and the
store refuses it (``TaskFenced``) if the task has moved on; the execution then stops at once. A write
happens only when a step ends, though, so before it *starts* a step an execution also makes sure its
lease is fresh: if this process has not confirmed its leases for 3/4 of a lease or more (it may have
been paused), it confirms with a fenced heartbeat before running any user code.
"""

from __future__ import annotations

import threading
import time
from typing import Any, TypeVar

from resonate_daemon.protocol import (
    CompletePromise,
    CompleteTask,
    CreateCallback,
    DropTask,
    FulfillTask,
    Heartbeat,
    Op,
    SettleStep,
    SuspendTask,
)
from resonate_daemon.protocol.results import Completed, Suspension

from .transport import Transport

R = TypeVar("R")


class Lease:
    """When this process last knew it held all its tasks (monotonic seconds), and for how long a lease
    runs. The runtime's heartbeat and claims renew it; executions read it."""

    def __init__(self, ttl_ms: int) -> None:
        self.ttl_s = ttl_ms / 1000.0
        self._confirmed = time.monotonic()
        self._lock = threading.Lock()

    def confirm(self, at: float | None = None) -> None:
        with self._lock:
            self._confirmed = max(self._confirmed, time.monotonic() if at is None else at)

    def fresh(self) -> bool:
        """Confirmed (by a request sent at that time) within 3/4 of a lease: the daemon's leases run to at
        least that time plus a whole lease, so no task can have been lost since. The heartbeat confirms
        every half lease, so in normal running this never costs a request."""
        return time.monotonic() - self._confirmed < self.ttl_s * 0.75


class Fenced:
    """The transport as one execution sees it: its writes carry its task's fence.

    It also holds back the settle of a step that just ended (``defer``) until the execution's next write,
    next step, or end, and sends it with that: with the root's completion (``fulfill``) or the task's
    suspension (``suspend``) in one request, otherwise alone just before. Only the workflow's own code
    runs meanwhile, which a replay runs again anyway, so at most the step in flight re-runs after a crash.
    """

    def __init__(self, transport: Transport, task_id: str, counter: int, process_id: str | None, lease: Lease) -> None:
        self.t = transport
        self.fence = (task_id, counter)
        self.process_id = process_id
        self.lease = lease
        self.in_process = transport.in_process
        self.deferred: list[SettleStep] = []

    def defer(self, op: SettleStep) -> None:
        self.deferred.append(op)

    def flush(self) -> None:
        """Send the deferred settles, oldest first (each is kept until its answer came)."""
        while self.deferred:
            self.t.call(self.deferred[0], fence=self.fence)
            self.deferred.pop(0)

    def fulfill(self, complete: CompletePromise) -> Completed:
        """The deferred settles and the root's completion, in one request (it completes the task)."""
        result: Completed = self.t.call(FulfillTask(tuple(self.deferred), complete), fence=self.fence)
        self.deferred.clear()
        return result

    def suspend(self, callbacks: tuple[CreateCallback, ...]) -> Suspension:
        """The deferred settles, a resume callback per promise waited on, and the task's completion (unless
        one of them is already complete: see ``Suspension.ready``), in one request."""
        op = SuspendTask(self.fence[0], self.fence[1], tuple(self.deferred), callbacks)
        result: Suspension = self.t.call(op, fence=self.fence)
        self.deferred.clear()
        return result

    @property
    def where(self) -> str:
        return self.t.where

    def now(self) -> int:
        return self.t.now()

    def call(self, op: Op[R], fence: tuple[str, int] | None = None) -> R:
        if op.METHOD == "GET":  # type: ignore[attr-defined]
            return self.t.call(op)  # reads
        self.flush()
        held = isinstance(op, (CompleteTask, DropTask))  # task ops carry their own counter
        return self.t.call(op, fence=None if held else fence or self.fence)

    def before_step(self) -> None:
        """Send the deferred settles (a step starts only once the ones before it are durable); raise
        TaskFenced, before any user code runs, if this execution's task may have moved on."""
        self.flush()
        if self.lease.fresh() or not self.process_id:
            return
        started = time.monotonic()
        self.t.call(Heartbeat(self.process_id), fence=self.fence)
        self.lease.confirm(started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.t, name)
