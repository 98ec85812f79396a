"""Per-id serialisation on PostgreSQL, proven by racing two engines, each with its own store and
connection, on one database (what two daemons on it will be): they complete the same promise, or claim
the same task, at the same instant, round after round. Exactly one wins each round; the other gets the
protocol's answer for a promise already completed, or a task already claimed; what is stored is the
winner's. Without the per-id lock both would read the row before either wrote it, and both would "win"
(a lost update; a task run twice at once): with the lock taken out, the first two tests fail at once.

The stores are opened ``exclusive=False`` (no one-writer lock: today's daemon takes it, the several-daemons
work will not). Threads start together at a barrier; every wait is bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from resonate_daemon import errors
from resonate_daemon.clock import ManualClock
from resonate_daemon.core.engine import Engine
from resonate_daemon.protocol import ClaimTask, CompletePromise, CreatePromise
from resonate_daemon.protocol.records import REJECTED, RESOLVED, TAG_INVOKE, Value
from resonate_daemon.protocol.results import Claimed, Completed

FAR = 4_102_444_800_000
ROUNDS = 40


@pytest.fixture
def two(pg_url: str) -> Iterator[tuple[Engine, Engine]]:
    from resonate_daemon.store.postgres import PostgresStore

    clock = ManualClock()
    stores = [PostgresStore(pg_url, exclusive=False) for _ in range(2)]
    try:
        yield Engine(stores[0], clock), Engine(stores[1], clock)
    finally:
        for s in stores:
            s.close()


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released together; each result, or the ResonateError it raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait(timeout=10)
        try:
            results[i] = calls[i]()
        except errors.ResonateError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a racing call never returned"
    return results


def test_two_engines_completing_one_promise_are_serialised(two: tuple[Engine, Engine]) -> None:
    a, b = two
    for n in range(ROUNDS):
        id = f"p{n}"
        a.create_promise(CreatePromise(id, FAR))
        results = race(lambda id=id: a.complete_promise(CompletePromise(id, RESOLVED, Value({}, "YQ=="), "from-a")),
                       lambda id=id: b.complete_promise(CompletePromise(id, REJECTED, Value({}, "Yg=="), "from-b")))
        won = [r for r in results if isinstance(r, Completed) and r.status == 201]
        lost = [r for r in results if isinstance(r, errors.AlreadyResolved | errors.AlreadyRejected)]
        assert (len(won), len(lost)) == (1, 1), f"round {n}: {results}"
        stored = b.store.get_promise(id)
        assert stored is not None and stored == won[0].promise
        assert type(lost[0]) is (errors.AlreadyResolved if stored.state == RESOLVED else errors.AlreadyRejected)


def test_two_engines_claiming_one_task_never_both_hold_it(two: tuple[Engine, Engine]) -> None:
    a, b = two
    for n in range(ROUNDS):
        root = f"w{n}"
        a.create_promise(CreatePromise(root, FAR, tags={TAG_INVOKE: "poll://any@g"}))
        task = f"__invoke:{root}"
        results = race(lambda task=task: a.claim_task(ClaimTask(task, 1, "process-a", 60_000)),
                       lambda task=task: b.claim_task(ClaimTask(task, 1, "process-b", 60_000)))
        claimed = [r for r in results if isinstance(r, Claimed)]
        refused = [r for r in results if isinstance(r, errors.TaskAlreadyClaimed | errors.InvalidCounter)]
        assert (len(claimed), len(refused)) == (1, 1), f"round {n}: {results}"
        stored = a.store.get_task(task)
        assert stored is not None and stored.process_id == claimed[0].task.process_id


@pytest.mark.parametrize("locks", [True, False], ids=["locked", "retried"])
def test_two_engines_creating_one_id_make_it_once(two: tuple[Engine, Engine], locks: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Locked: the second waits for the first and finds its promise. Retried: with the per-id lock off,
    both read nothing and both insert; the loser's unique-key violation is a ``Conflict``, its whole
    transaction runs again (``store.retrying``) and finds the promise: the same answers either way."""
    a, b = two
    if not locks:
        for engine in two:
            monkeypatch.setattr(engine.store, "_locking", lambda: False)
    for n in range(ROUNDS):
        id = f"c{n}"
        results = race(lambda id=id: a.create_promise(CreatePromise(id, FAR, idempotency_key="a")),
                       lambda id=id: b.create_promise(CreatePromise(id, FAR, idempotency_key="b")))
        made = [r for r in results if not isinstance(r, errors.ResonateError) and r.status == 201]
        refused = [r for r in results if isinstance(r, errors.PromiseAlreadyExists)]
        assert (len(made), len(refused)) == (1, 1), f"round {n}: {results}"
