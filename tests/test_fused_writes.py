"""How many durable commits a workflow costs, counted on a real SQLite file (local mode, synchronous=FULL).

A step's settle waits for the worker's next write (``Fenced.defer``): the next step's start, another
write, or the end. The last one goes with the root's completion (``FulfillTask``) or with the callbacks
and the task's completion (``SuspendTask``), in one transaction. So a one-step workflow is two commits
(its start; the step with the workflow's end), and a crash between them re-runs only the step in flight.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from resonate import Context, Resonate

WAIT = 30


class WriteCounter:
    """Counts the store's transactions that changed something (a commit with data in it)."""

    def __init__(self, r: Resonate) -> None:
        store = r._transport.engine.store  # type: ignore[attr-defined]
        self.commits = 0
        self.lock = threading.Lock()
        real = store.transaction

        @contextlib.contextmanager
        def counted(durable: bool = True) -> Iterator[None]:
            conn = store.db.connection()
            before = conn.total_changes
            with real(durable):
                yield
            if conn.total_changes != before:
                with self.lock:
                    self.commits += 1

        store.transaction = counted

    def take(self) -> int:
        with self.lock:
            n, self.commits = self.commits, 0
            return n


@pytest.fixture
def local() -> Iterator[tuple[Resonate, WriteCounter]]:
    d = tempfile.mkdtemp(prefix="fw-", dir="/tmp")
    r = Resonate.local(os.path.join(d, "r.db"))
    counter = WriteCounter(r)
    try:
        yield r, counter
    finally:
        r.stop()


def inc(ctx: Context, x: int) -> int:
    return x + 1


def test_a_one_step_workflow_is_two_commits(local: Any) -> None:
    r, counter = local

    @r.register
    def one(ctx: Context, x: int):  # type: ignore[no-untyped-def]
        return (yield ctx.run(inc, x))

    one.run("warm", 0)  # the runtime starts (its own bookkeeping is not the workflow's)
    counter.take()
    assert one.run("w2", 1) == 2
    assert counter.take() == 2  # the start (created and claimed), then the step with the workflow's end
    assert r.promises.get("w2.1").value is not None  # the step's result is stored, under its id


def test_three_steps_are_four_commits(local: Any) -> None:
    r, counter = local

    @r.register
    def three(ctx: Context, x: int):  # type: ignore[no-untyped-def]
        for _ in range(3):
            x = yield ctx.run(inc, x)
        return x

    three.run("warm", 0)
    counter.take()
    assert three.run("w7", 0) == 3
    assert counter.take() == 4  # start, step 1 (before step 2 starts), step 2, step 3 with the end
    assert [r.promises.get(f"w7.{i}").state for i in (1, 2, 3)] == ["RESOLVED"] * 3


def test_a_step_then_a_wait_is_one_commit_for_the_suspension(local: Any) -> None:
    r, counter = local

    @r.register
    def approve(ctx: Context, x: int):  # type: ignore[no-untyped-def]
        y = yield ctx.run(inc, x)
        p = yield ctx.promise(id="approval")
        decision = yield p
        return y, decision

    r.register(inc)
    r.run("warm", inc, 0)  # the runtime starts (its own bookkeeping is not the workflow's)
    counter.take()
    handle = r.begin_run("a1", approve, 1)
    assert r.wait_idle(WAIT)
    # The start; the step's settle (sent before the next write, in its own commit); the promise created;
    # the suspension: the callback and the task's completion in one commit (they were two); and the
    # handle's subscription to the workflow's end (the handle's, not the workflow's).
    assert counter.take() == 5
    assert r.promises.get("approval").pending
    assert r.promises.get("a1.1").state == "RESOLVED"  # the step before the wait is durable
    r.promises.resolve(id="approval", data='"yes"')
    assert handle.result(timeout=WAIT) == (2, "yes")
