"""Tasks, leases, callbacks and subscriptions in the engine (ARCHITECTURE.md "Task", "Callback").

Time moves only through ``ManualClock`` and ``engine.tick()``; races use real threads and a barrier.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from conftest import Sink
from resonate_daemon import errors
from resonate_daemon.clock import ManualClock
from resonate_daemon.core.engine import Engine
from resonate_daemon.core.transitions import LEASE_GRACE_MS, RESEND_AFTER_MS
from resonate_daemon.protocol import (
    ClaimTask,
    CompletePromise,
    CompleteTask,
    CreateCallback,
    CreatePromise,
    CreatePromiseAndTask,
    CreateSubscription,
    DropTask,
    GetCallbacks,
    GetPromise,
    Heartbeat,
    SearchTasks,
)
from resonate_daemon.protocol.records import (
    CLAIMED,
    COMPLETED,
    ENQUEUED,
    INIT,
    PENDING,
    REJECTED,
    RESOLVED,
    TAG_INVOKE,
    Message,
    Task,
    Value,
)
from resonate_daemon.protocol.results import (
    Completed,
)
from resonate_daemon.store import open_store

from resonate.local import LocalTransport

HOUR = 3_600_000
RECV = "poll://any@workers/p1"


def invoke(engine: Engine, clock: ManualClock, id: str = "foo") -> str:
    engine.create_promise(CreatePromise(id, clock.now() + HOUR, Value({}, "e30="), {TAG_INVOKE: RECV},
                                        idempotency_key=id))
    return f"__invoke:{id}"


def task(engine: Engine, id: str) -> Task:
    found = engine.store.get_task(id)
    assert found is not None
    return found


def claim(engine: Engine, id: str, counter: int, pid: str, ttl: int):  # type: ignore[no-untyped-def]
    return engine.claim_task(ClaimTask(id, counter, pid, ttl))


def complete(engine: Engine, id: str, counter: int) -> int:
    return engine.complete_task(CompleteTask(id, counter)).status


def drop(engine: Engine, id: str, counter: int) -> int:
    return engine.drop_task(DropTask(id, counter)).status


def test_invoke_task_is_created_with_its_promise(engine: Engine, clock: ManualClock, sink: Sink) -> None:
    tid = invoke(engine, clock)
    t = task(engine, tid)
    assert (t.state, t.counter, t.type, t.root_promise_id, t.recv) == (INIT, 1, "invoke", "foo", RECV)
    [msg] = sink.take()
    assert (msg.type, msg.recv, msg.task) == ("invoke", RECV, t)
    assert msg.to_json()["task"] == {"id": tid, "counter": 1, "timeout": t.timeout, "rootPromiseId": "foo",
                                     "createdOn": clock.now()}
    # a deduplicated create makes no second task and sends nothing
    assert invoke(engine, clock) == tid
    assert sink.take() == [] and len(engine.search_tasks(SearchTasks())) == 1
    # a plain promise has no task
    engine.create_promise(CreatePromise("plain", clock.now() + HOUR))
    assert len(engine.search_tasks(SearchTasks())) == 1


def test_invoke_task_and_promise_share_one_transaction(engine: Engine, clock: ManualClock, sink: Sink,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(task: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(engine.store, "insert_task", broken)
    with pytest.raises(RuntimeError):
        invoke(engine, clock)
    assert engine.store.get_promise("foo") is None  # rolled back with the task
    assert sink.take() == []  # nothing is sent for a transaction that did not commit


def test_create_and_claim_at_once(engine: Engine, clock: ManualClock, sink: Sink) -> None:
    created = engine.create_promise_and_task(CreatePromiseAndTask("foo", clock.now() + HOUR, "p1", 5_000,
                                                                  tags={TAG_INVOKE: RECV}))
    assert created.task is not None
    assert (created.task.state, created.task.process_id, created.task.expires_at) == (CLAIMED, "p1",
                                                                                       clock.now() + 5_000 + LEASE_GRACE_MS)
    assert sink.take() == []  # the caller holds it; nobody else is told


def test_claim_needs_the_current_counter(engine: Engine, clock: ManualClock) -> None:
    tid = invoke(engine, clock)
    with pytest.raises(errors.InvalidCounter) as info:
        claim(engine, tid, 2, "p1", 1_000)
    assert info.value.code == 40308
    claimed = claim(engine, tid, 1, "p1", 1_000)
    assert claimed.task.type == "invoke" and claimed.root.id == "foo" and claimed.leaf is None
    t = claimed.task
    assert (t.state, t.process_id, t.ttl, t.expires_at, t.attempt) == (CLAIMED, "p1", 1_000, clock.now() + 1_000 + LEASE_GRACE_MS, 1)
    with pytest.raises(errors.TaskAlreadyClaimed) as info2:
        claim(engine, tid, 1, "p2", 1_000)
    assert info2.value.code == 40306
    with pytest.raises(errors.TaskNotFound):
        claim(engine, "__invoke:nope", 1, "p1", 1_000)


def test_drop_fences_out_the_old_counter(engine: Engine, clock: ManualClock, sink: Sink) -> None:
    tid = invoke(engine, clock)
    claim(engine, tid, 1, "p1", 1_000)
    sink.take()
    assert drop(engine, tid, 1) == 201
    t = task(engine, tid)
    assert (t.state, t.counter, t.process_id) == (INIT, 2, None)
    [msg] = sink.take()
    assert (msg.type, msg.task.counter) == ("invoke", 2)  # sent again, with the new counter
    for op in (lambda: claim(engine, tid, 1, "p1", 1_000), lambda: complete(engine, tid, 1),
               lambda: drop(engine, tid, 1)):
        with pytest.raises(errors.InvalidCounter) as info:
            op()
        assert info.value.code == 40308
    with pytest.raises(errors.TaskNotClaimed) as info3:
        complete(engine, tid, 2)
    assert info3.value.code == 40309
    claim(engine, tid, 2, "p2", 1_000)
    assert complete(engine, tid, 2) == 201
    assert complete(engine, tid, 2) == 200  # completing twice is harmless
    with pytest.raises(errors.TaskAlreadyCompleted) as info4:
        drop(engine, tid, 2)
    assert info4.value.code == 40307


def test_heartbeat_extends_leases_and_a_lapsed_lease_is_redispatched(engine: Engine, clock: ManualClock,
                                                                      sink: Sink) -> None:
    tid = invoke(engine, clock)
    other = invoke(engine, clock, "bar")
    claim(engine, tid, 1, "p1", 1_000)
    claim(engine, other, 1, "p2", 1_000)
    sink.take()
    clock.advance(800)
    assert engine.heartbeat(Heartbeat("p1")) == 1
    assert task(engine, tid).expires_at == clock.now() + 1_000 + LEASE_GRACE_MS
    assert engine.heartbeat(Heartbeat("nobody")) == 0
    clock.advance(300 + LEASE_GRACE_MS)  # p2's lease (and its grace) lapsed; p1's was extended
    engine.tick()
    assert task(engine, tid).state == CLAIMED
    bar = task(engine, other)
    assert (bar.state, bar.counter) == (INIT, 2)
    [msg] = sink.take()
    assert (msg.type, msg.task.id, msg.task.counter) == ("invoke", other, 2)
    clock.advance(1_000)
    engine.tick()
    assert (task(engine, tid).state, task(engine, tid).counter) == (INIT, 2)
    with pytest.raises(errors.InvalidCounter):  # the old holder is fenced out
        complete(engine, tid, 1)
    assert [m.task.id for m in sink.take()] == [tid]


def test_a_sent_task_not_claimed_is_sent_again_with_the_same_counter(engine: Engine, clock: ManualClock,
                                                                     sink: Sink) -> None:
    tid = invoke(engine, clock)
    sink.take()
    engine.mark_sent(tid, 1, "p1")
    assert task(engine, tid).state == ENQUEUED
    assert engine.tick() == clock.now() + RESEND_AFTER_MS
    clock.advance(RESEND_AFTER_MS)
    engine.tick()
    t = task(engine, tid)
    assert (t.state, t.counter) == (INIT, 1)
    assert [m.task.counter for m in sink.take()] == [1]


def test_marking_sent_skips_the_fsync_and_only_that_commit(engine: Engine, clock: ManualClock, sink: Sink) -> None:
    def synchronous() -> int:
        return int(engine.store.db.execute_sql("PRAGMA synchronous").fetchone()[0])

    syncs: list[int] = []
    real = engine.store.db.execute_sql

    def spy(sql: str, params: object = None) -> object:
        if sql.upper().startswith("UPDATE") and "task" in sql.lower():
            syncs.append(synchronous())  # the level in force while the task row is written
        return real(sql, params)

    tid = invoke(engine, clock)
    engine.store.db.execute_sql = spy  # type: ignore[method-assign]
    try:
        engine.mark_sent(tid, 1, "p1")
    finally:
        engine.store.db.execute_sql = real  # type: ignore[method-assign]
    assert syncs == [1]  # NORMAL for mark_sent's own commit...
    assert synchronous() == 2  # ...and FULL again for every commit after it
    assert task(engine, tid).state == ENQUEUED


def test_one_task_per_root_is_out_at_a_time(engine: Engine, clock: ManualClock, sink: Sink) -> None:
    tid = invoke(engine, clock, "root")
    claim(engine, tid, 1, "p1", 10_000)
    for leaf in ("root.1", "root.2"):
        engine.create_promise(CreatePromise(leaf, clock.now() + HOUR))
        assert engine.create_callback(CreateCallback(leaf, "root", clock.now() + HOUR, RECV)).status == 201
    sink.take()
    engine.complete_promise(CompletePromise("root.1", RESOLVED))
    engine.complete_promise(CompletePromise("root.2", RESOLVED))
    assert sink.take() == []  # the invoke task is still out: the resume waits
    assert [t.type for t in engine.store.tasks_of_root("root") if t.state == INIT] == ["resume"]  # one, not two
    assert complete(engine, tid, 1) == 201
    [msg] = sink.take()
    assert (msg.type, msg.task.root_promise_id) == ("resume", "root")
    claimed = claim(engine, msg.task.id, msg.task.counter, "p1", 10_000)
    assert claimed.task.type == "resume" and claimed.leaf is not None and claimed.leaf.id == "root.1"
    assert engine.dispatchable() == []


def test_completing_the_root_completes_its_tasks(engine: Engine, clock: ManualClock) -> None:
    tid = invoke(engine, clock)
    claim(engine, tid, 1, "p1", 10_000)
    engine.complete_promise(CompletePromise("foo", RESOLVED, idempotency_key="foo"))
    t = task(engine, tid)
    assert (t.state, t.process_id, t.completed_on) == (COMPLETED, None, clock.now())
    assert complete(engine, tid, 1) == 200
    with pytest.raises(errors.TaskAlreadyCompleted):
        claim(engine, tid, 1, "p1", 10_000)
    assert engine.heartbeat(Heartbeat("p1")) == 0


def test_claim_of_a_task_whose_root_timed_out_completes_it(engine: Engine, clock: ManualClock) -> None:
    tid = invoke(engine, clock)
    clock.advance(HOUR)
    with pytest.raises(errors.TaskAlreadyCompleted):
        claim(engine, tid, 1, "p1", 10_000)
    assert task(engine, tid).state == COMPLETED
    assert engine.store.get_promise("foo").state == "REJECTED_TIMEDOUT"


def test_callback_on_a_completed_promise_is_answered_at_once(engine: Engine, clock: ManualClock) -> None:
    engine.create_promise(CreatePromise("root", clock.now() + HOUR))
    engine.create_promise(CreatePromise("leaf", clock.now() + HOUR))
    engine.complete_promise(CompletePromise("leaf", REJECTED))
    reg = engine.create_callback(CreateCallback("leaf", "root", clock.now() + HOUR, RECV))
    assert (reg.status, reg.callback, reg.promise.state) == (200, None, REJECTED)
    with pytest.raises(errors.PromiseNotFound):
        engine.create_subscription(CreateSubscription("nope", "s", clock.now() + HOUR, RECV))
    with pytest.raises(errors.InvalidRequest):
        CreateCallback("leaf", "root", clock.now() + HOUR, "poll://uni@g")


def race(n: int, fn) -> list[object]:
    """Run ``fn(i)`` on ``n`` threads released together; return results or raised errors, by thread."""
    barrier = threading.Barrier(n, timeout=10)
    out: list[object] = [None] * n

    def body(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:  # collected and asserted on by the caller
            out[i] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    return out


@pytest.fixture
def local(db_path: str, clock: ManualClock) -> Iterator[tuple[LocalTransport, list[Message]]]:
    """The engine behind the local transport, which serialises its callers (the engine itself is not
    thread-safe: in the daemon only the event loop calls it), collecting what it pushes."""
    transport = LocalTransport(db_path, clock=clock)
    messages: list[Message] = []
    transport.connect("g", "p", messages.append)
    try:
        yield transport, messages
    finally:
        transport.close()


def test_racing_completions_fire_callbacks_and_subscriptions_exactly_once(
        local: tuple[LocalTransport, list[Message]], clock: ManualClock) -> None:
    t, sink = local
    t.call(CreatePromise("root", clock.now() + HOUR))
    t.call(CreatePromise("leaf", clock.now() + HOUR))
    t.call(CreateCallback("leaf", "root", clock.now() + HOUR, RECV))
    t.call(CreateCallback("leaf", "root", clock.now() + HOUR, RECV))  # the same callback twice: one
    for s in ("s1", "s2", "s3"):
        t.call(CreateSubscription("leaf", s, clock.now() + HOUR, f"poll://uni@g/{s}"))
    assert len(t.call(GetCallbacks("leaf"))) == 4

    results = race(8, lambda i: t.call(CompletePromise("leaf", RESOLVED, Value({}, str(i)), f"k{i}")))
    winners = [r for r in results if isinstance(r, Completed)]
    assert len(winners) == 1 and winners[0].status == 201
    assert all(isinstance(r, errors.AlreadyResolved) for r in results if not isinstance(r, Completed))
    messages = list(sink)
    assert sorted(m.type for m in messages) == ["notify", "notify", "notify", "resume"]
    assert sorted(m.recv for m in messages if m.type == "notify") == [f"poll://uni@g/s{i}" for i in (1, 2, 3)]
    assert all(m.promise is not None and m.promise.state == RESOLVED for m in messages if m.type == "notify")
    assert t.call(GetCallbacks("leaf")) == []


def test_racing_completions_across_many_promises(local: tuple[LocalTransport, list[Message]],
                                                 clock: ManualClock) -> None:
    t, sink = local
    n = 60
    for i in range(n):
        t.call(CreatePromise(f"root{i}", clock.now() + HOUR))
        t.call(CreatePromise(f"leaf{i}", clock.now() + HOUR))
        t.call(CreateCallback(f"leaf{i}", f"root{i}", clock.now() + HOUR, RECV))
        t.call(CreateSubscription(f"leaf{i}", "sub", clock.now() + HOUR, RECV))
    sink.clear()

    def complete_all(thread: int) -> int:
        order = list(range(n))
        random.Random(thread).shuffle(order)
        won = 0
        for i in order:
            won += t.call(CompletePromise(f"leaf{i}", RESOLVED, idempotency_key="same")).status == 201
        return won

    assert sum(race(8, complete_all)) == n  # type: ignore[arg-type]
    messages = list(sink)
    resumes = sorted(m.task.root_promise_id for m in messages if m.type == "resume" and m.task)
    notifies = sorted(m.promise.id for m in messages if m.type == "notify" and m.promise)
    assert resumes == sorted(f"root{i}" for i in range(n))
    assert notifies == sorted(f"leaf{i}" for i in range(n))
    assert len(messages) == 2 * n


def test_release_process_gives_back_claimed_and_sent_tasks(engine: Engine, clock: ManualClock,
                                                           sink: Sink) -> None:
    a, b, c = invoke(engine, clock, "a"), invoke(engine, clock, "b"), invoke(engine, clock, "c")
    claim(engine, a, 1, "p1", 10_000)
    engine.mark_sent(b, 1, "p1")
    claim(engine, c, 1, "p2", 10_000)
    sink.take()
    assert engine.release_process("p1") == 2
    assert [(task(engine, t).state, task(engine, t).counter) for t in (a, b, c)] == [
        (INIT, 2), (INIT, 1), (CLAIMED, 1)]
    assert sorted((m.task.id, m.task.counter) for m in sink.take()) == [(a, 2), (b, 1)]
    assert engine.release_process("p1") == 0


def test_release_all_after_a_crash(db_path: str, clock: ManualClock) -> None:
    store = open_store(db_path)
    engine = Engine(store, clock)
    tid = invoke(engine, clock)
    claim(engine, tid, 1, "dead", 10_000)
    store.close()
    store = open_store(db_path)  # the next process on the same file
    try:
        engine = Engine(store, clock)
        assert engine.release_all() == 1
        t = task(engine, tid)
        assert (t.state, t.counter) == (INIT, 2)
        assert [m.task.id for m in engine.dispatchable() if m.task] == [tid]
        assert engine.get_promise(GetPromise("foo")).state == PENDING
    finally:
        store.close()


LOCKED_PROBE = """
import sys
from resonate_daemon.errors import StoreLocked
from resonate_daemon.store import open_store
try:
    open_store(sys.argv[1])
except StoreLocked as exc:
    print(exc.code, exc)
    sys.exit(3)
print("opened")
"""


def test_a_file_store_is_locked_against_another_process(db_path: str) -> None:
    store = open_store(db_path)
    try:
        proc = subprocess.run([sys.executable, "-c", LOCKED_PROBE, db_path], capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode == 3, proc.stderr
        assert proc.stdout.startswith("50300 ") and str(os.getpid()) in proc.stdout
    finally:
        store.close()
    proc = subprocess.run([sys.executable, "-c", LOCKED_PROBE, db_path], capture_output=True, text=True,
                          timeout=30)
    assert (proc.returncode, proc.stdout.strip()) == (0, "opened")
