"""One contract, two transports: every operation of the protocol through ``LocalTransport`` (the engine in
this process, SQLite in memory) and ``RemoteTransport`` (a real daemon on a real Unix socket).

Each test runs once per transport and asserts the same observable results on both: statuses (201 new,
200 deduplicated), record fields, error classes and codes, paging, trees, claims, push messages. The
daemon is shared by the module, so every test names its promises, groups and processes with its own
uuid prefix and looks only at what it made; counts are compared as differences. Timeouts are far in the
future (or long past, on purpose), so nothing depends on how fast a test runs; messages are awaited with
a bounded ``queue.get(timeout=...)``. A test marked ``diverges`` records a difference between the
transports found here: it is expected to fail on that transport until the difference is fixed.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import resonate_daemon
from daemon_proc import FAR, Daemon
from resonate_daemon import errors
from resonate_daemon import protocol as P
from resonate_daemon.core.schedules import next_after
from resonate_daemon.core.transitions import LEASE_GRACE_MS
from resonate_daemon.protocol.records import EMPTY, Message, Task, Value

from resonate.local import LocalTransport
from resonate.remote import RemoteTransport
from resonate.transport import Transport

INVOKE, ROOT, PARENT = "resonate:invoke", "resonate:root", "resonate:parent"
WAIT_S = 10.0  # the bound on waiting for one push message; a healthy run takes milliseconds


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = Daemon().start()
    yield d
    d.stop()
    d.cleanup()


@pytest.fixture(params=["local", "remote"])
def transport(request: pytest.FixtureRequest) -> Iterator[Transport]:
    t: Transport
    if request.param == "local":
        t = LocalTransport()
    else:
        t = RemoteTransport(socket=request.getfixturevalue("daemon").socket, retry_for=5)
    yield t
    t.close()


@pytest.fixture
def u() -> str:
    """This test's prefix for every id, group and process id it makes."""
    return f"t{uuid.uuid4().hex[:12]}-"


def diverges(request: pytest.FixtureRequest, kind: str, reason: str) -> None:
    """Expect this test to fail on the ``kind`` transport (strict: it must fail there, and pass elsewhere)."""
    if request.node.callspec.params["transport"] == kind:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


def fails(t: Transport, op: Any, cls: type[errors.ResonateError], code: int) -> errors.ResonateError:
    """``t.call(op)`` raises exactly ``cls`` with ``code``."""
    with pytest.raises(errors.ResonateError) as info:
        t.call(op)
    assert type(info.value) is cls, f"{type(info.value).__name__}: {info.value}"
    assert info.value.code == code
    return info.value


def task_of(t: Transport, task_id: str) -> Task:
    """A task as stored, through SearchTasks (the shared daemon holds other tests' tasks too)."""
    return next(x for x in t.call(P.SearchTasks(limit=1000)) if x.id == task_id)


def next_message(q: queue.Queue[Message], match: Callable[[Message], bool]) -> Message:
    """The next message ``match`` accepts, waiting at most WAIT_S overall (queue.Empty past that)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        msg = q.get(timeout=max(deadline - time.monotonic(), 0.001))
        if match(msg):
            return msg


def about(root: str) -> Callable[[Message], bool]:
    return lambda m: (m.task is not None and m.task.root_promise_id == root) or (
        m.promise is not None and m.promise.id == root)


def test_create_get_dedupe_and_conflicts(transport: Transport, u: str) -> None:
    t = transport
    param = Value.of_text('{"a": 1}', {"h": "v"})
    before = t.now()
    first = t.call(P.CreatePromise(u + "p", FAR, param, {"k": "v"}, idempotency_key="ik"))
    after = t.now()
    p = first.promise
    assert (first.status, first.task, first.callback) == (201, None, None)
    assert (p.id, p.state, p.param, p.value, p.timeout) == (u + "p", "PENDING", param, EMPTY, FAR)
    assert p.tags == {"k": "v"}
    assert (p.idempotency_key_for_create, p.idempotency_key_for_complete, p.completed_on) == ("ik", None, None)
    assert before <= p.created_on <= after
    again = t.call(P.CreatePromise(u + "p", FAR, param, {"k": "v"}, idempotency_key="ik"))
    assert (again.status, again.promise) == (200, p)
    assert t.call(P.GetPromise(u + "p")) == p
    fails(t, P.CreatePromise(u + "p", FAR, idempotency_key="other"), errors.PromiseAlreadyExists, 40900)
    fails(t, P.CreatePromise(u + "p", FAR), errors.PromiseAlreadyExists, 40900)  # two missing keys never match
    fails(t, P.GetPromise(u + "missing"), errors.PromiseNotFound, 40400)
    # A timeout already past (1 ms after the epoch): born timed out; a sleep's timer resolves instead.
    late = t.call(P.CreatePromise(u + "late", 1))
    assert (late.status, late.promise.state, late.promise.timeout) == (201, "REJECTED_TIMEDOUT", 1)
    timer = t.call(P.CreatePromise(u + "timer", 1, tags={"resonate:timeout": "true"}))
    assert (timer.status, timer.promise.state) == (201, "RESOLVED")


def test_complete_promise_outcomes(transport: Transport, u: str) -> None:
    t = transport
    for name in ("res", "rej", "can"):
        t.call(P.CreatePromise(u + name, FAR))
    value = Value.of_text('"done"', {"enc": "json"})
    res = t.call(P.CompletePromise(u + "res", "RESOLVED", value, idempotency_key="c"))
    assert (res.status, res.promise.state, res.promise.value) == (201, "RESOLVED", value)
    assert res.promise.idempotency_key_for_complete == "c"
    assert res.promise.completed_on is not None and res.promise.completed_on >= res.promise.created_on
    assert t.call(P.GetPromise(u + "res")) == res.promise
    dup = t.call(P.CompletePromise(u + "res", "RESOLVED", idempotency_key="c"))
    assert (dup.status, dup.promise) == (200, res.promise)
    fails(t, P.CompletePromise(u + "res", "RESOLVED", idempotency_key="d"), errors.AlreadyResolved, 40301)
    strict = P.CompletePromise(u + "res", "REJECTED", idempotency_key="c", strict=True)
    fails(t, strict, errors.AlreadyResolved, 40301)
    assert t.call(P.CompletePromise(u + "rej", "REJECTED")).promise.state == "REJECTED"
    fails(t, P.CompletePromise(u + "rej", "RESOLVED"), errors.AlreadyRejected, 40302)
    assert t.call(P.CompletePromise(u + "can", "REJECTED_CANCELED")).status == 201
    fails(t, P.CompletePromise(u + "can", "RESOLVED"), errors.AlreadyCanceled, 40303)
    fails(t, P.CompletePromise(u + "missing", "RESOLVED"), errors.PromiseNotFound, 40400)
    late = t.call(P.CreatePromise(u + "late", 1)).promise
    fails(t, P.CompletePromise(u + "late", "RESOLVED", strict=True), errors.AlreadyTimedOut, 40304)
    lenient = t.call(P.CompletePromise(u + "late", "RESOLVED"))  # non-strict: the timed-out promise, 200
    assert (lenient.status, lenient.promise) == (200, late)


def test_settle_step_and_canceled_ancestors(transport: Transport, u: str) -> None:
    t = transport
    tags = {ROOT: u + "r", PARENT: u + "r"}
    value = Value.of_text("7")
    new = t.call(P.SettleStep(u + "s", FAR, "RESOLVED", value, Value.of_text("[6]"), tags))
    p = new.promise
    assert (new.status, p.state, p.value, p.tags) == (201, "RESOLVED", value, tags)
    assert p.param == Value.of_text("[6]")
    assert (p.idempotency_key_for_create, p.idempotency_key_for_complete) == (u + "s", u + "s")
    again = t.call(P.SettleStep(u + "s", FAR, "REJECTED", Value.of_text("8")))  # the stored outcome wins
    assert (again.status, again.promise) == (200, p)
    t.call(P.CreatePromise(u + "pending", FAR))
    done = t.call(P.SettleStep(u + "pending", FAR, "REJECTED", value))
    assert (done.status, done.promise.state, done.promise.value) == (201, "REJECTED", value)
    # Nothing new is created below a canceled root or parent; the error names it in its details.
    t.call(P.CreatePromise(u + "c", FAR))
    t.call(P.CompletePromise(u + "c", "REJECTED_CANCELED"))
    err = fails(t, P.CreatePromise(u + "c.1", FAR, tags={PARENT: u + "c"}), errors.AlreadyCanceled, 40303)
    assert err.details == {"canceled": u + "c"}
    under = P.SettleStep(u + "c.2", FAR, "RESOLVED", tags={ROOT: u + "c"})
    err = fails(t, under, errors.AlreadyCanceled, 40303)
    assert err.details == {"canceled": u + "c"}
    fails(t, P.GetPromise(u + "c.1"), errors.PromiseNotFound, 40400)


def test_search_promises_pages_and_filters(transport: Transport, u: str) -> None:
    t = transport
    ids = [f"{u}p{i}" for i in range(5)]
    for id in ids:
        t.call(P.CreatePromise(id, FAR, tags={"batch": u}))
    t.call(P.CreatePromise(u + "other", FAR))
    for id in ids[:2]:
        t.call(P.CompletePromise(id, "RESOLVED"))
    pages, cursor = [], None
    while True:
        page = t.call(P.SearchPromises(u + "p*", limit=2, cursor=cursor))
        pages.append(page.items)
        cursor = page.cursor
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    found = [p for page in pages for p in page]
    assert sorted(p.id for p in found) == ids  # every one once, and nothing else matches the glob
    assert found == sorted(found, key=lambda p: (p.created_on, p.id), reverse=True)  # newest first
    assert found == [t.call(P.GetPromise(p.id)) for p in found]
    whole = t.call(P.SearchPromises(u + "*", limit=100))
    assert whole.cursor is None and len(whole.items) == 6
    assert {p.id for p in t.call(P.SearchPromises(u + "*", state="resolved")).items} == set(ids[:2])
    assert {p.id for p in t.call(P.SearchPromises(u + "*", state="RESOLVED")).items} == set(ids[:2])
    assert {p.id for p in t.call(P.SearchPromises(u + "*", state="pending")).items} == {*ids[2:], u + "other"}
    assert {p.id for p in t.call(P.SearchPromises("*", tags={"batch": u})).items} == set(ids)
    assert t.call(P.SearchPromises(u + "*", state="rejected")).items == []
    fails(t, P.SearchPromises(u + "*", cursor="not-a-cursor"), errors.InvalidRequest, 40000)


def test_callbacks_subscriptions_and_listing(transport: Transport, u: str) -> None:
    t = transport
    root, leaf, recv = u + "root", u + "leaf", f"poll://any@{u}g"
    t.call(P.CreatePromise(root, FAR))
    t.call(P.CreatePromise(leaf, FAR))
    reg = t.call(P.CreateCallback(leaf, root, FAR, recv))
    cb = reg.callback
    assert (reg.status, reg.promise.id, reg.promise.state) == (201, leaf, "PENDING")
    assert cb is not None and (cb.id, cb.promise_id, cb.root_promise_id, cb.recv, cb.timeout, cb.kind) == (
        f"__resume:{root}:{leaf}", leaf, root, recv, FAR, "resume")
    sub = t.call(P.CreateSubscription(leaf, "s1", FAR, f"poll://uni@{u}g/w"))
    sc = sub.callback
    assert sub.status == 201 and sc is not None
    assert (sc.id, sc.promise_id, sc.root_promise_id, sc.recv, sc.kind) == (
        f"__notify:{leaf}:s1", leaf, leaf, f"poll://uni@{u}g/w", "notify")
    assert t.call(P.CreateCallback(leaf, root, FAR, recv)).status == 200
    assert t.call(P.CreateSubscription(leaf, "s1", FAR, f"poll://uni@{u}g/w")).status == 200
    listed = sorted(t.call(P.GetCallbacks(leaf)), key=lambda c: c.id)
    assert listed == sorted([cb, sc], key=lambda c: c.id)
    assert t.call(P.GetCallbacks(root)) == []
    t.call(P.CompletePromise(leaf, "RESOLVED"))
    assert t.call(P.GetCallbacks(leaf)) == []  # fired, so gone
    late = t.call(P.CreateCallback(leaf, root, FAR, recv))  # on a completed promise: nothing to wait for
    assert (late.status, late.promise.state, late.callback) == (200, "RESOLVED", None)
    assert t.call(P.CreateSubscription(leaf, "s2", FAR, recv)).callback is None
    fails(t, P.CreateCallback(u + "missing", root, FAR, recv), errors.PromiseNotFound, 40400)
    fails(t, P.CreateSubscription(u + "missing", "s", FAR, recv), errors.PromiseNotFound, 40400)
    fails(t, P.GetCallbacks(u + "missing"), errors.PromiseNotFound, 40400)


def test_duplicate_registration_answers_no_callback(transport: Transport, u: str,
                                                    request: pytest.FixtureRequest) -> None:
    t = transport
    t.call(P.CreatePromise(u + "p", FAR))
    t.call(P.CreateCallback(u + "p", u + "r", FAR, "poll://any@x"))
    t.call(P.CreateSubscription(u + "p", "s", FAR, "poll://any@x"))
    assert t.call(P.CreateCallback(u + "p", u + "r", FAR, "poll://any@x")).callback is None
    assert t.call(P.CreateSubscription(u + "p", "s", FAR, "poll://any@x")).callback is None


def test_create_and_subscribe(transport: Transport, u: str) -> None:
    t = transport
    recv = f"poll://uni@{u}g/w"
    made = t.call(P.CreateAndSubscribe(u + "p", FAR, "sub", recv, Value.of_text("1"), {"k": "v"},
                                       idempotency_key="ik", subscription_timeout=FAR))
    cb = made.callback
    assert (made.status, made.task, made.promise.state, made.promise.tags) == (201, None, "PENDING", {"k": "v"})
    assert cb is not None and (cb.id, cb.promise_id, cb.recv, cb.timeout, cb.kind) == (
        f"__notify:{u}p:sub", u + "p", recv, FAR, "notify")
    assert t.call(P.GetCallbacks(u + "p")) == [cb]
    again = t.call(P.CreateAndSubscribe(u + "p", FAR, "sub", recv, idempotency_key="ik"))
    assert (again.status, again.promise, again.callback) == (200, made.promise, None)  # as a duplicate subscribe
    other = P.CreateAndSubscribe(u + "p", FAR, "sub", recv, idempotency_key="no")
    fails(t, other, errors.PromiseAlreadyExists, 40900)
    t.call(P.CompletePromise(u + "p", "RESOLVED", idempotency_key="c"))
    done = t.call(P.CreateAndSubscribe(u + "p", FAR, "sub2", recv, idempotency_key="ik"))
    assert (done.status, done.promise.state, done.callback) == (200, "RESOLVED", None)


def test_create_promise_and_task_claims_at_once(transport: Transport, u: str) -> None:
    t = transport
    pid, tags = u + "w", {INVOKE: f"poll://any@{u}g", ROOT: u + "r"}
    made = t.call(P.CreatePromiseAndTask(u + "r", FAR, pid, 30_000, Value.of_text("{}"), tags,
                                         idempotency_key="ik"))
    task = made.task
    assert (made.status, made.promise.state, made.promise.tags) == (201, "PENDING", tags)
    assert task is not None
    assert (task.id, task.counter, task.root_promise_id, task.type, task.state, task.recv, task.process_id) == (
        f"__invoke:{u}r", 1, u + "r", "invoke", "CLAIMED", f"poll://any@{u}g", pid)
    assert (task.ttl, task.attempt, task.timeout, task.leaf_promise_id) == (30_000, 1, FAR, None)
    assert task.expires_at == task.created_on + 30_000 + LEASE_GRACE_MS  # the lease, and its grace
    assert task_of(t, task.id) == task
    again = t.call(P.CreatePromiseAndTask(u + "r", FAR, pid, 30_000, tags=tags, idempotency_key="ik"))
    assert (again.status, again.promise, again.task) == (200, made.promise, None)
    other = P.CreatePromiseAndTask(u + "r", FAR, pid, tags=tags, idempotency_key="x")
    fails(t, other, errors.PromiseAlreadyExists, 40900)
    fails(t, P.ClaimTask(task.id, 1, u + "other"), errors.TaskAlreadyClaimed, 40306)
    assert t.call(P.Heartbeat(pid)) == 1
    # Completing the root completes its task: a later claim or drop finds it done.
    t.call(P.CompletePromise(u + "r", "RESOLVED"))
    assert task_of(t, task.id).state == "COMPLETED"
    fails(t, P.ClaimTask(task.id, 1, pid), errors.TaskAlreadyCompleted, 40307)
    fails(t, P.DropTask(task.id, 1), errors.TaskAlreadyCompleted, 40307)
    assert t.call(P.Heartbeat(pid)) == 0


def test_claim_drop_complete_and_heartbeat(transport: Transport, u: str) -> None:
    t = transport
    root, pid, tid = u + "r", u + "w", f"__invoke:{u}r"
    t.call(P.CreatePromise(root, FAR, tags={INVOKE: f"poll://any@{u}g", ROOT: root}))
    init = task_of(t, tid)
    assert (init.state, init.counter, init.type, init.root_promise_id) == ("INIT", 1, "invoke", root)
    assert tid in {x.id for x in t.call(P.SearchTasks(("INIT",), limit=1000))}
    assert tid not in {x.id for x in t.call(P.SearchTasks(("CLAIMED", "COMPLETED"), limit=1000))}
    step = t.call(P.SettleStep(u + "r.1", FAR, "RESOLVED", Value.of_text("1"), tags={ROOT: root, PARENT: root}))
    child = t.call(P.CreatePromise(u + "r.2", FAR, tags={ROOT: root, PARENT: root}))
    t.call(P.CreatePromise(u + "stranger", FAR, tags={ROOT: u + "elsewhere"}))
    fails(t, P.ClaimTask(tid, 2, pid), errors.InvalidCounter, 40308)
    fails(t, P.ClaimTask(u + "missing", 1, pid), errors.TaskNotFound, 40403)
    fails(t, P.CompleteTask(tid, 1), errors.TaskNotClaimed, 40309)
    claimed = t.call(P.ClaimTask(tid, 1, pid, 20_000, graph=True))
    task = claimed.task
    assert (task.id, task.counter, task.state, task.process_id, task.ttl, task.attempt, task.type) == (
        tid, 1, "CLAIMED", pid, 20_000, 1, "invoke")
    assert task == task_of(t, tid)
    assert claimed.root == t.call(P.GetPromise(root)) and claimed.leaf is None
    assert claimed.graph == {root: claimed.root, u + "r.1": step.promise, u + "r.2": child.promise}
    fails(t, P.ClaimTask(tid, 1, u + "other"), errors.TaskAlreadyClaimed, 40306)
    assert (t.call(P.Heartbeat(pid)), t.call(P.Heartbeat(u + "other"))) == (1, 0)
    fails(t, P.DropTask(tid, 2), errors.InvalidCounter, 40308)
    dropped = t.call(P.DropTask(tid, 1))
    back = dropped.task
    assert (dropped.status, back.state, back.counter, back.process_id) == (201, "INIT", 2, None)
    fails(t, P.DropTask(tid, 2), errors.TaskNotClaimed, 40309)
    fails(t, P.ClaimTask(tid, 1, pid), errors.InvalidCounter, 40308)  # the old holder is fenced out
    again = t.call(P.ClaimTask(tid, 2, pid))
    assert (again.task.id, again.task.counter, again.task.state) == (tid, 2, "CLAIMED")
    assert again.task.process_id == pid
    assert (again.root, again.leaf, again.graph) == (claimed.root, None, None)
    fails(t, P.CompleteTask(tid, 1), errors.InvalidCounter, 40308)
    done = t.call(P.CompleteTask(tid, 2))
    assert (done.status, done.task.id, done.task.state, done.task.counter) == (201, tid, "COMPLETED", 2)
    assert done.task.completed_on is not None and done.task == task_of(t, tid)
    assert (t.call(P.CompleteTask(tid, 2)).status, t.call(P.Heartbeat(pid))) == (200, 0)
    fails(t, P.DropTask(u + "missing", 1), errors.TaskNotFound, 40403)
    fails(t, P.CompleteTask(u + "missing", 1), errors.TaskNotFound, 40403)


def test_claim_without_graph_returns_the_stored_task(transport: Transport, u: str,
                                                     request: pytest.FixtureRequest) -> None:
    t = transport
    t.call(P.CreatePromise(u + "r", FAR, tags={INVOKE: f"poll://any@{u}g"}))
    claimed = t.call(P.ClaimTask(f"__invoke:{u}r", 1, u + "w", 20_000))
    assert claimed.task == task_of(t, f"__invoke:{u}r")


def test_resume_claim_carries_the_completed_leaf(transport: Transport, u: str) -> None:
    t = transport
    root, leaf, pid, recv = u + "r", u + "r.1", u + "w", f"poll://any@{u}g"
    made = t.call(P.CreatePromiseAndTask(root, FAR, pid, tags={INVOKE: recv, ROOT: root}))
    assert made.task is not None
    t.call(P.CreatePromise(leaf, FAR, tags={ROOT: root, PARENT: root}))
    assert t.call(P.CreateCallback(leaf, root, FAR, recv)).status == 201
    assert t.call(P.CompleteTask(made.task.id, 1)).task.state == "COMPLETED"  # suspended on the leaf
    resolved = t.call(P.CompletePromise(leaf, "RESOLVED", Value.of_text('"x"'))).promise
    rid = f"__resume:{root}:{leaf}"
    waiting = task_of(t, rid)
    assert (waiting.type, waiting.state, waiting.counter, waiting.leaf_promise_id, waiting.recv) == (
        "resume", "INIT", 1, leaf, recv)
    claimed = t.call(P.ClaimTask(rid, 1, pid, graph=True))
    assert (claimed.task.type, claimed.task.leaf_promise_id, claimed.task.state) == ("resume", leaf, "CLAIMED")
    assert claimed.root == made.promise and claimed.leaf == resolved
    assert claimed.graph == {root: made.promise, leaf: resolved}
    assert t.call(P.DropTask(rid, 1)).task.counter == 2
    plain = t.call(P.ClaimTask(rid, 2, pid))  # the legacy shape (no graph) carries the leaf too
    assert (plain.task.type, plain.task.leaf_promise_id) == ("resume", leaf)
    assert (plain.leaf, plain.graph) == (resolved, None)
    t.call(P.CompletePromise(root, "RESOLVED"))
    assert task_of(t, rid).state == "COMPLETED"


def test_children_and_tree(transport: Transport, u: str) -> None:
    t = transport
    root = u + "r"
    t.call(P.CreatePromise(root, FAR, tags={ROOT: root}))
    # Ids sort in creation order, so the order holds even when two share a millisecond.
    c1 = t.call(P.CreatePromise(u + "r/1", FAR, tags={ROOT: root, PARENT: root})).promise
    c2 = t.call(P.SettleStep(u + "r/2", FAR, "RESOLVED", tags={ROOT: root, PARENT: root})).promise
    g1 = t.call(P.CreatePromise(u + "r/3", FAR, tags={ROOT: root, PARENT: u + "r/1"})).promise
    t.call(P.CreatePromise(u + "r/4", FAR, tags={ROOT: root}))  # same root, no parent: not in the tree
    top = t.call(P.GetPromise(root))
    assert t.call(P.GetChildren(root)) == [c1, c2]
    assert t.call(P.GetChildren(u + "r/1")) == [g1]
    assert t.call(P.GetChildren(u + "r/3")) == []
    whole = t.call(P.GetTree(root))
    assert (whole.promises, whole.truncated) == ([top, c1, c2, g1], False)
    assert t.call(P.GetTree(root, limit=4)).truncated is False
    cut = t.call(P.GetTree(root, limit=3))
    assert (cut.promises, cut.truncated) == ([top, c1, c2], True)
    alone = t.call(P.GetTree(root, limit=1))
    assert (alone.promises, alone.truncated) == ([top], True)
    sub = t.call(P.GetTree(u + "r/1"))
    assert (sub.promises, sub.truncated) == ([c1, g1], False)
    fails(t, P.GetChildren(u + "missing"), errors.PromiseNotFound, 40400)
    fails(t, P.GetTree(u + "missing"), errors.PromiseNotFound, 40400)


def test_status_counts(transport: Transport, u: str, request: pytest.FixtureRequest) -> None:
    t = transport
    before = t.call(P.GetStatus())
    t.call(P.CreatePromise(u + "a", FAR, tags={INVOKE: f"poll://any@{u}g"}))
    t.call(P.CreatePromise(u + "b", FAR))
    t.call(P.CreatePromise(u + "c", FAR))
    t.call(P.CompletePromise(u + "a", "RESOLVED"))
    after = t.call(P.GetStatus())

    def delta(field: str, state: str) -> int:
        return int(getattr(after, field).get(state, 0)) - int(getattr(before, field).get(state, 0))

    assert [delta("promises", s) for s in ("PENDING", "RESOLVED", "REJECTED")] == [2, 1, 0]
    # Task totals and COMPLETED only: a released lease elsewhere on the shared daemon moves CLAIMED to INIT.
    assert sum(after.tasks.values()) - sum(before.tasks.values()) == 1 and delta("tasks", "COMPLETED") == 1
    assert after.version == resonate_daemon.__version__ and after.db
    if request.node.callspec.params["transport"] == "local":
        assert (after.mode, after.db, t.where, after.socket, after.pid) == ("embedded", ":memory:", ":memory:",
                                                                            None, None)
    else:
        d = request.getfixturevalue("daemon")
        assert (after.mode, after.db, after.socket, t.where) == ("daemon", d.db, d.socket, d.socket)
        assert d.proc is not None and after.pid == d.proc.pid


def test_schedules(transport: Transport, u: str) -> None:
    t = transport
    cron = "0 0 1 1 *"  # yearly: never fires during a test
    op = P.CreateSchedule(u + "s", cron, "{{.id}}.{{.timestamp}}", 60_000, Value.of_text("[1]"),
                          {INVOKE: f"poll://any@{u}g"}, "nightly", {"team": "a"}, idempotency_key="k")
    made = t.call(op)
    s = made.schedule
    assert made.status == 201
    assert (s.id, s.cron, s.promise_id, s.promise_timeout, s.promise_param) == (
        u + "s", cron, "{{.id}}.{{.timestamp}}", 60_000, Value.of_text("[1]"))
    assert (s.promise_tags, s.description, s.tags) == ({INVOKE: f"poll://any@{u}g"}, "nightly", {"team": "a"})
    assert (s.idempotency_key, s.last_run_time) == ("k", None)
    assert s.next_run_time == next_after(cron, s.created_on) > s.created_on
    again = t.call(op)
    assert (again.status, again.schedule) == (200, s)
    other = P.CreateSchedule(u + "s", cron, "x", 1, idempotency_key="other")
    fails(t, other, errors.ScheduleAlreadyExists, 40901)
    fails(t, P.CreateSchedule(u + "bad", "not a cron", "x", 1), errors.InvalidRequest, 40000)
    assert t.call(P.GetSchedule(u + "s")) == s
    for i in (1, 2):
        t.call(P.CreateSchedule(f"{u}s{i}", cron, "x", 1))
    first = t.call(P.SearchSchedules(u + "s*", limit=2))
    assert len(first.items) == 2 and first.cursor is not None
    rest = t.call(P.SearchSchedules(u + "s*", limit=2, cursor=first.cursor))
    assert len(rest.items) == 1 and rest.cursor is None
    found = first.items + rest.items
    assert sorted(x.id for x in found) == [u + "s", u + "s1", u + "s2"]
    assert found == sorted(found, key=lambda x: (x.created_on, x.id), reverse=True)
    assert s in found
    fails(t, P.SearchSchedules(u + "*", cursor="not-a-cursor"), errors.InvalidRequest, 40000)
    for id in (u + "s", u + "s1", u + "s2"):
        assert t.call(P.DeleteSchedule(id)) is None
    fails(t, P.GetSchedule(u + "s"), errors.ScheduleNotFound, 40401)
    fails(t, P.DeleteSchedule(u + "s"), errors.ScheduleNotFound, 40401)
    assert t.call(P.SearchSchedules(u + "*")).items == []


def test_push_invoke_and_resume(transport: Transport, u: str) -> None:
    t = transport
    pid, root, leaf = u + "w", u + "r", u + "r.1"
    q: queue.Queue[Message] = queue.Queue()
    t.connect("g", pid, q.put)
    t.call(P.CreatePromise(root, FAR, Value.of_text("{}"), {INVOKE: f"poll://any@g/{pid}", ROOT: root}))
    msg = next_message(q, about(root))
    assert msg.type == "invoke" and msg.task is not None
    assert (msg.task.id, msg.task.counter, msg.task.root_promise_id, msg.task.type, msg.task.timeout) == (
        f"__invoke:{root}", 1, root, "invoke", FAR)
    claimed = t.call(P.ClaimTask(msg.task.id, msg.task.counter, pid, graph=True))
    assert claimed.root.id == root and claimed.task.state == "CLAIMED"
    t.call(P.CreatePromise(leaf, FAR, tags={ROOT: root, PARENT: root}))
    t.call(P.CreateCallback(leaf, root, FAR, f"poll://uni@g/{pid}"))
    t.call(P.CompleteTask(msg.task.id, 1))
    t.call(P.CompletePromise(leaf, "RESOLVED"))
    resume = next_message(q, about(root))
    assert resume.type == "resume" and resume.task is not None
    assert (resume.task.id, resume.task.counter, resume.task.type) == (f"__resume:{root}:{leaf}", 1, "resume")
    assert t.call(P.ClaimTask(resume.task.id, 1, pid)).leaf == t.call(P.GetPromise(leaf))
    t.call(P.CompletePromise(root, "RESOLVED"))  # nothing of this test is left to be dispatched


def test_push_notify_on_completion(transport: Transport, u: str) -> None:
    t = transport
    pid = u + "w"
    q: queue.Queue[Message] = queue.Queue()
    t.connect("g", pid, q.put)
    t.call(P.CreatePromise(u + "p", FAR))
    assert t.call(P.CreateSubscription(u + "p", "s", FAR, f"poll://uni@g/{pid}")).status == 201
    t.call(P.CreateAndSubscribe(u + "q", FAR, "s", f"poll://uni@g/{pid}"))
    done = t.call(P.CompletePromise(u + "p", "RESOLVED", Value.of_text('{"ok": true}'))).promise
    msg = next_message(q, about(u + "p"))
    assert (msg.type, msg.task, msg.promise) == ("notify", None, done)
    rejected = t.call(P.CompletePromise(u + "q", "REJECTED", Value.of_text('"no"'))).promise
    msg = next_message(q, about(u + "q"))
    assert (msg.type, msg.promise) == ("notify", rejected)


def test_messages_follow_their_address(transport: Transport, u: str, request: pytest.FixtureRequest) -> None:
    """Through a daemon a message goes only where its address says. Local mode is one process, the only
    one there is to run anything: it receives every message (an rpc to any group runs here)."""
    t = transport
    local = request.node.callspec.params["transport"] == "local"
    q: queue.Queue[Message] = queue.Queue()
    t.connect(u + "g", u + "w", q.put)
    t.call(P.CreatePromise(u + "elsewhere", FAR, tags={INVOKE: f"poll://any@{u}other"}))
    t.call(P.CreatePromise(u + "other-pid", FAR))
    t.call(P.CreateSubscription(u + "other-pid", "s", FAR, f"poll://uni@{u}g/{u}nobody"))
    t.call(P.CompletePromise(u + "other-pid", "RESOLVED"))
    if local:
        first, second = q.get(timeout=WAIT_S), q.get(timeout=WAIT_S)
        assert first.task is not None and first.task.root_promise_id == u + "elsewhere"
        assert second.promise is not None and second.promise.id == u + "other-pid"
    t.call(P.CreatePromise(u + "mine", FAR, tags={INVOKE: f"poll://any@{u}g/{u}w"}))
    msg = q.get(timeout=WAIT_S)  # by ordering, not by waiting: the next message must be the last one sent
    assert msg.task is not None and msg.task.root_promise_id == u + "mine"


def test_empty_data_is_stored_as_none(transport: Transport, u: str, request: pytest.FixtureRequest) -> None:
    t = transport
    made = t.call(P.CreatePromise(u + "p", FAR, Value.of_text("")))
    assert made.promise.param == Value({}, None)
    done = t.call(P.CompletePromise(u + "p", "RESOLVED", Value({"h": "v"}, "")))
    assert done.promise.value == Value({"h": "v"}, None)


def test_workflows_search_retry_and_fork(transport: Transport, u: str) -> None:
    t = transport
    root, func, recv, pid = u + "r", u + "f", f"poll://any@{u}g", u + "w"
    tid = f"__invoke:{root}"
    param = Value.of_text(json.dumps({"func": func, "args": [1], "kwargs": {}}))
    tags = {INVOKE: recv, ROOT: root}
    t.call(P.CreatePromise(root, FAR, param, tags))
    t.call(P.ClaimTask(tid, 1, pid))
    one = t.call(P.SettleStep(root + ".1", FAR, "RESOLVED", Value.of_text("1"), tags={ROOT: root, PARENT: root}))
    t.call(P.SettleStep(root + ".2", FAR, "REJECTED", Value.of_text('"boom"'), tags={ROOT: root, PARENT: root}))
    t.call(P.SettleStep(root + ".2.1", FAR, "RESOLVED", tags={ROOT: root, PARENT: root + ".2"}))
    t.call(P.CreatePromise(u + "plain", FAR))  # not an invocation: never a workflow
    fails(t, P.RetryWorkflow(root), errors.WorkflowRunning, 40903)
    fails(t, P.ForkWorkflow(root, 1), errors.WorkflowRunning, 40903)
    fails(t, P.RetryWorkflow(u + "plain"), errors.InvalidRequest, 40000)
    fails(t, P.RetryWorkflow(u + "missing"), errors.PromiseNotFound, 40400)
    t.call(P.CompletePromise(root, "REJECTED", Value.of_text('"boom"')))
    t.call(P.CompleteTask(tid, 1))

    page = t.call(P.SearchWorkflows(state="failed", func=func))
    assert ([p.id for p in page.items], page.total, page.cursor) == ([root], 1, None)
    assert t.call(P.SearchWorkflows(state="resolved", func=func)).total == 0
    assert t.call(P.SearchWorkflows(func=func, since=t.now() + 60_000)).items == []
    with pytest.raises(errors.InvalidRequest):
        P.SearchWorkflows(state="sideways")

    again = t.call(P.RetryWorkflow(root))
    assert (again.id, again.state, again.param) == (root, "PENDING", param)
    assert t.call(P.GetPromise(root + ".1")) == one.promise  # resolved: kept, the replay returns it
    fails(t, P.GetPromise(root + ".2"), errors.PromiseNotFound, 40400)  # failed: runs again
    fails(t, P.GetPromise(root + ".2.1"), errors.PromiseNotFound, 40400)  # below a failed step: too
    task = task_of(t, tid)
    assert (task.state, task.counter) == ("INIT", 2)
    fails(t, P.RetryWorkflow(root), errors.WorkflowRunning, 40903)

    t.call(P.ClaimTask(tid, 2, pid))
    t.call(P.SettleStep(root + ".2", FAR, "RESOLVED", Value.of_text("2"), tags={ROOT: root, PARENT: root}))
    t.call(P.CompletePromise(root, "RESOLVED", Value.of_text("3")))
    t.call(P.CompleteTask(tid, 2))
    fails(t, P.RetryWorkflow(root), errors.AlreadyResolved, 40301)

    fork = t.call(P.ForkWorkflow(root, 1, u + "fk"))
    assert (fork.id, fork.state, fork.param, fork.tags[ROOT], fork.tags[INVOKE]) == (
        u + "fk", "PENDING", param, u + "fk", recv)
    copied = t.call(P.GetPromise(u + "fk.1"))
    assert (copied.state, copied.value, copied.tags[ROOT], copied.tags[PARENT]) == (
        "RESOLVED", one.promise.value, u + "fk", u + "fk")
    fails(t, P.GetPromise(u + "fk.2"), errors.PromiseNotFound, 40400)
    assert task_of(t, f"__invoke:{u}fk").state == "INIT"
    assert t.call(P.GetPromise(root)).state == "RESOLVED"  # the original stays as it was
    fails(t, P.ForkWorkflow(root, 0, u + "fk"), errors.PromiseAlreadyExists, 40900)
    fails(t, P.ForkWorkflow(root, 3), errors.InvalidRequest, 40000)
    auto = t.call(P.ForkWorkflow(root, 0))
    assert auto.id == root + "-fork-1"
    assert t.call(P.SearchWorkflows(func=func)).total == 3


def test_watch_wakes_on_changes_under_the_graph(transport: Transport, u: str) -> None:
    t = transport
    root = u + "r"
    t.call(P.CreatePromise(root, FAR, tags={ROOT: root}))
    changed = threading.Event()
    stop = t.watch(root, changed.set)
    try:
        t.call(P.CreatePromise(u + "elsewhere", FAR, tags={ROOT: u + "elsewhere"}))
        t.call(P.GetPromise(root))
        assert not changed.is_set()  # another graph's change is not ours
        t.call(P.CreatePromise(root + ".1", FAR, tags={ROOT: root, PARENT: root}))
        assert changed.wait(WAIT_S)
        changed.clear()
        t.call(P.CompletePromise(root + ".1", "RESOLVED"))
        assert changed.wait(WAIT_S)
        changed.clear()
        # an rpc child runs as a root of its own: its steps carry its id, and are watched too
        t.call(P.CreatePromise(root + ".2", FAR, tags={ROOT: root, PARENT: root, INVOKE: f"poll://any@{u}g"}))
        assert changed.wait(WAIT_S)
        changed.clear()
        t.call(P.SettleStep(root + ".2.1", FAR, "RESOLVED", tags={ROOT: root + ".2", PARENT: root + ".2"}))
        assert changed.wait(WAIT_S)
    finally:
        stop()
    changed.clear()
    t.call(P.CreatePromise(root + ".3", FAR, tags={ROOT: root, PARENT: root}))
    t.call(P.GetPromise(root))
    assert not changed.is_set()  # stopped
    with pytest.raises(errors.PromiseNotFound):
        t.watch(u + "missing", changed.set)


def test_a_write_with_a_stale_fence_is_refused(transport: Transport, u: str) -> None:
    t = transport
    root, tid = u + "r", f"__invoke:{u}r"
    t.call(P.CreatePromise(root, FAR, tags={INVOKE: f"poll://any@{u}g", ROOT: root}))
    t.call(P.ClaimTask(tid, 1, u + "old", 60_000))
    step = P.SettleStep(root + ".1", FAR, "RESOLVED", Value.of_text("1"), tags={ROOT: root, PARENT: root})
    assert t.call(step, fence=(tid, 1)).status == 201  # the holder writes
    t.call(P.DropTask(tid, 1))  # its lease lapsed: the task goes back with the next counter
    with pytest.raises(errors.TaskFenced) as info:
        t.call(P.CreatePromise(root + ".2", FAR, tags={ROOT: root, PARENT: root}), fence=(tid, 1))
    assert info.value.code == 40310
    fails(t, P.GetPromise(root + ".2"), errors.PromiseNotFound, 40400)  # nothing written
    t.call(P.ClaimTask(tid, 2, u + "new", 60_000))
    with pytest.raises(errors.TaskFenced):
        t.call(P.CompletePromise(root, "RESOLVED"), fence=(tid, 1))
    assert t.call(P.CompletePromise(root, "RESOLVED"), fence=(tid, 2)).status == 201
    with pytest.raises(errors.TaskFenced):  # the task ended with the root: nobody holds it now
        t.call(P.CreatePromise(root + ".3", FAR, tags={ROOT: root, PARENT: root}), fence=(tid, 2))


def test_gc_answers_what_it_collected(transport: Transport, u: str) -> None:
    """Both transports carry a collection and its counts. Nothing here completed 30 years ago, so nothing
    is deleted (the daemon is shared by this module's tests); what goes is tested in test_retention.py."""
    t = transport
    t.call(P.CreatePromise(u + "p", FAR))
    thirty_years = 30 * 365 * 86_400_000
    dry = t.call(P.CollectGarbage(thirty_years, dry_run=True))
    assert (dry.promises, dry.tasks, dry.callbacks, dry.dry_run) == (0, 0, 0, True)
    assert abs(dry.before - (t.now() - thirty_years)) < 60_000
    done = t.call(P.CollectGarbage(thirty_years))
    assert (done.promises, done.dry_run) == (0, False) and done.size > 0
    assert t.call(P.GetPromise(u + "p")).pending
    with pytest.raises(errors.InvalidRequest):
        P.CollectGarbage(-1)


def test_start_many_answers_each_start_on_its_own(transport: Transport, u: str) -> None:
    t = transport
    recv = f"poll://uni@{u}g/w"
    t.call(P.CreatePromise(u + "taken", FAR, idempotency_key="theirs"))
    starts = (P.CreateAndSubscribe(u + "a", FAR, "s", recv, Value.of_text("1"), idempotency_key="a"),
              P.CreateAndSubscribe(u + "taken", FAR, "s", recv, idempotency_key="mine"),
              P.CreateAndSubscribe(u + "b", FAR, "s", recv, idempotency_key="b", subscription_timeout=FAR))
    a, taken, b = t.call(P.StartMany(starts))
    assert isinstance(a, P.Created) and isinstance(b, P.Created)
    assert (a.status, a.promise.state, a.promise.param) == (201, "PENDING", Value.of_text("1"))
    assert a.callback is not None and a.callback.id == f"__notify:{u}a:s"
    assert type(taken) is errors.PromiseAlreadyExists and taken.code == 40900  # its error; the others stand
    assert t.call(P.GetPromise(u + "b")) == b.promise
    again = t.call(P.StartMany(starts[:1]))[0]  # the same start again: deduplicated by its key
    assert isinstance(again, P.Created) and (again.status, again.promise) == (200, a.promise)
    with pytest.raises(errors.InvalidRequest):
        P.StartMany(())


def test_fulfill_task_settles_and_completes_in_one_write(transport: Transport, u: str) -> None:
    t = transport
    root, tid = u + "r", f"__invoke:{u}r"
    t.call(P.CreatePromise(root, FAR, tags={INVOKE: f"poll://any@{u}g", ROOT: root}))
    t.call(P.ClaimTask(tid, 1, u + "w", 60_000))
    tags = {ROOT: root, PARENT: root}
    settles = (P.SettleStep(root + ".1", FAR, "RESOLVED", Value.of_text("1"), tags=tags),
               P.SettleStep(root + ".2", FAR, "RESOLVED", Value.of_text("2"), tags=tags))
    done = t.call(P.FulfillTask(settles, P.CompletePromise(root, "RESOLVED", Value.of_text("3"), root)), fence=(tid, 1))
    assert (done.status, done.promise.state, done.promise.value) == (201, "RESOLVED", Value.of_text("3"))
    assert [t.call(P.GetPromise(s.id)).value for s in settles] == [Value.of_text("1"), Value.of_text("2")]
    assert task_of(t, tid).state == "COMPLETED"  # the root's completion completed its task
    # All or nothing: a settle refused (under a canceled root) undoes the whole request.
    other, otid = u + "o", f"__invoke:{u}o"
    t.call(P.CreatePromise(other, FAR, tags={INVOKE: f"poll://any@{u}g", ROOT: other}))
    t.call(P.ClaimTask(otid, 1, u + "w", 60_000))
    t.call(P.CreatePromise(u + "gone", FAR))
    t.call(P.CompletePromise(u + "gone", "REJECTED_CANCELED"))
    bad = (P.SettleStep(other + ".1", FAR, "RESOLVED", tags={ROOT: other, PARENT: other}),
           P.SettleStep(u + "gone.1", FAR, "RESOLVED", tags={PARENT: u + "gone"}))
    with pytest.raises(errors.AlreadyCanceled):
        t.call(P.FulfillTask(bad, P.CompletePromise(other, "RESOLVED")), fence=(otid, 1))
    fails(t, P.GetPromise(other + ".1"), errors.PromiseNotFound, 40400)
    assert t.call(P.GetPromise(other)).pending and task_of(t, otid).state == "CLAIMED"
    with pytest.raises(errors.TaskFenced):  # a stale holder writes nothing
        t.call(P.FulfillTask((), P.CompletePromise(other, "RESOLVED")), fence=(otid, 2))


def test_suspend_task_registers_callbacks_then_completes_the_task(transport: Transport, u: str) -> None:
    t = transport
    root, tid, recv = u + "r", f"__invoke:{u}r", f"poll://any@{u}g/w"
    t.call(P.CreatePromise(root, FAR, tags={INVOKE: f"poll://any@{u}g", ROOT: root}))
    t.call(P.ClaimTask(tid, 1, u + "w", 60_000))
    tags = {ROOT: root, PARENT: root}
    t.call(P.CreatePromise(root + ".2", FAR, tags=tags))
    t.call(P.CreatePromise(root + ".3", FAR, tags=tags))
    t.call(P.CompletePromise(root + ".3", "RESOLVED", Value.of_text("9")))
    step = P.SettleStep(root + ".1", FAR, "RESOLVED", Value.of_text("1"), tags=tags)
    cbs = tuple(P.CreateCallback(root + f".{i}", root, FAR, recv) for i in (2, 3))
    # .3 is already complete: nothing suspends, the task stays claimed, and the answer hands .3 over.
    going = t.call(P.SuspendTask(tid, 1, (step,), cbs), fence=(tid, 1))
    assert not going.suspended and [p.id for p in going.ready] == [root + ".3"]
    assert going.ready[0].value == Value.of_text("9")
    assert t.call(P.GetPromise(root + ".1")).state == "RESOLVED" and task_of(t, tid).state == "CLAIMED"
    waiting = t.call(P.SuspendTask(tid, 1, (), cbs[:1]), fence=(tid, 1))
    assert (waiting.suspended, waiting.ready) == (True, [])
    assert task_of(t, tid).state == "COMPLETED"
    assert [c.id for c in t.call(P.GetCallbacks(root + ".2"))] == [f"__resume:{root}:{root}.2"]
    assert t.call(P.SuspendTask(tid, 1)).suspended  # again: already done, as CompleteTask answers 200
    with pytest.raises(errors.TaskFenced):  # through the fence: nobody holds the task now, nothing written
        t.call(P.SuspendTask(tid, 1, (P.SettleStep(root + ".4", FAR, "RESOLVED", tags=tags),)), fence=(tid, 1))
    fails(t, P.GetPromise(root + ".4"), errors.PromiseNotFound, 40400)


def test_every_op_is_covered() -> None:
    """A new op in the route table needs a case here (docs/architecture.md, "Adding a verb")."""
    with open(__file__) as f:
        source = f.read()
    assert [op.__name__ for op in P.OPS if f"P.{op.__name__}(" not in source] == []
