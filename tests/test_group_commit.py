"""Group commit (daemon/server/batch.py) on a real SQLite file at synchronous=FULL.

The commit of a batch is held on its thread by an event the test releases, so what happens while a
commit is on the disk is decided by the test, not by timing: calls that arrive meanwhile wait and form the
next batch; nothing is answered and nothing is pushed before its batch is durable; a failed commit fails
every call of its batch and keeps nothing of it. The loop is spun with ``asyncio.sleep(0)``, never a
timed sleep; every wait on the commit thread is bounded.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from resonate_daemon import errors
from resonate_daemon.core.engine import Engine
from resonate_daemon.protocol import CreatePromise, GetPromise
from resonate_daemon.protocol.records import Message
from resonate_daemon.server.batch import Batcher
from resonate_daemon.store import open_store
from resonate_daemon.store.sqlite import SqliteStore

FAR = 2**62
WAIT_S = 10.0


class HeldCommits:
    """Wraps the store's ``end_batch``: each commit waits for ``release()`` (or fails with ``fail``)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.started = threading.Semaphore(0)
        self.go = threading.Semaphore(0)
        self.fail: Exception | None = None
        self.sizes: list[int] = []
        real = store.end_batch

        def end_batch() -> Callable[[], None]:
            ctx = store._batch
            commit = real()

            def held() -> None:
                self.started.release()
                assert self.go.acquire(timeout=WAIT_S), "the test never released the commit"
                if self.fail is not None:  # as a COMMIT that failed: rolled back, nothing kept
                    error, self.fail = self.fail, None
                    try:
                        ctx.__exit__(type(error), error, None)
                    finally:
                        store._idle.set()
                    raise error
                commit()

            return held

        store.end_batch = end_batch  # type: ignore[method-assign]

    def release(self) -> None:
        self.go.release()


@pytest.fixture
def setup() -> Iterator[tuple[Engine, Batcher, HeldCommits, list[Message]]]:
    d = tempfile.mkdtemp(prefix="gc-", dir="/tmp")
    store = open_store(os.path.join(d, "r.db"), "full")
    assert isinstance(store, SqliteStore) and store.slow_commit
    pushed: list[Message] = []
    engine = Engine(store, sink=pushed.extend)
    held = HeldCommits(store)
    batch = Batcher(engine)
    yield engine, batch, held, pushed
    batch.close()
    store.close()


async def spin(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def committing(held: HeldCommits) -> None:
    """Wait (bounded, off the loop) until a batch's commit has started on its thread."""
    ok = await asyncio.get_running_loop().run_in_executor(None, held.started.acquire, True, WAIT_S)
    assert ok, "no commit started"


def create(engine: Engine, id: str, tags: dict[str, str] | None = None) -> Callable[[], Any]:
    return lambda: engine.create_promise(CreatePromise(id, FAR, tags=tags or {}))


def test_calls_that_arrive_during_a_commit_share_the_next_one(setup: Any) -> None:
    engine, batch, held, pushed = setup

    async def scenario() -> None:
        first = asyncio.ensure_future(batch.call(create(engine, "a", {"resonate:invoke": "poll://any@g"})))
        await committing(held)
        later = [asyncio.ensure_future(batch.call(create(engine, f"b{i}", {"resonate:invoke": "poll://any@g"})))
                 for i in range(10)]
        await spin()
        assert not first.done() and not any(f.done() for f in later)  # nothing answered before durable
        assert pushed == []  # and nothing pushed: the invoke task of "a" waits for its commit
        held.release()
        assert (await first).status == 201
        assert [m.task.root_promise_id for m in pushed if m.task] == ["a"]
        await committing(held)  # the ten form one batch, committed together
        await spin()
        assert not any(f.done() for f in later)
        held.release()
        assert [(await f).status for f in later] == [201] * 10
        assert sorted(m.task.root_promise_id for m in pushed if m.task)[1:] == sorted(f"b{i}" for i in range(10))
        assert (batch.stats.batches, batch.stats.calls, batch.stats.largest) == (2, 11, 10)

    asyncio.run(scenario())
    assert engine.get_promise(GetPromise("b9")).pending


def test_an_error_is_its_own_and_the_batch_still_commits(setup: Any) -> None:
    engine, batch, held, _ = setup

    async def scenario() -> None:
        calls = [batch.call(create(engine, "x")), batch.call(create(engine, "x")),  # the second conflicts
                 batch.call(create(engine, "y"))]
        futures = [asyncio.ensure_future(c) for c in calls]
        await committing(held)
        held.release()
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert [type(r).__name__ for r in results] == ["Created", "PromiseAlreadyExists", "Created"]

    asyncio.run(scenario())
    assert engine.store.get_promise("x") is not None and engine.store.get_promise("y") is not None


def test_a_failed_commit_fails_every_call_of_its_batch_and_keeps_nothing(setup: Any) -> None:
    engine, batch, held, pushed = setup

    async def scenario() -> None:
        held.fail = errors.StoreFull("disk full (the test's)")
        futures = [asyncio.ensure_future(batch.call(create(engine, f"lost{i}", {"resonate:invoke": "poll://any@g"})))
                   for i in range(3)]
        await committing(held)
        held.release()
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert all(isinstance(r, errors.StoreFull) for r in results)
        assert pushed == []  # no push for a task that was never stored
        after = asyncio.ensure_future(batch.call(create(engine, "after")))  # the next batch works
        await committing(held)
        held.release()
        assert (await after).status == 201

    asyncio.run(scenario())
    assert [engine.store.get_promise(f"lost{i}") for i in range(3)] == [None] * 3
    assert engine.store.get_promise("after") is not None


def test_a_call_outside_the_batcher_waits_for_the_commit_on_the_disk(setup: Any) -> None:
    """The UI's direct engine calls: one that comes while a batch commits waits for it (the connection is the
    commit's), then runs in a transaction of its own."""
    engine, batch, held, _ = setup

    async def scenario() -> None:
        first = asyncio.ensure_future(batch.call(create(engine, "a")))
        await committing(held)
        direct = asyncio.get_running_loop().run_in_executor(None, create(engine, "direct"))
        await spin()
        assert not direct.done()
        held.release()
        assert (await first).status == 201
        assert (await direct).status == 201

    asyncio.run(scenario())
