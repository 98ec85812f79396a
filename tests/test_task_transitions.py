"""ARCHITECTURE.md "Task": the task state machine as a table, one parametrized case per (state, request),
checked twice: against the pure ``transitions.task_transition`` and through ``Engine`` on a real SQLite
file (the stored task, the error class and code, and what the engine pushes afterwards).

Starts: ``none`` (no task), ``init``, ``enqueued`` (sent, not yet due again), ``enqueued-due`` (sent a
minute ago), ``claimed`` (a live lease), ``lapsed`` (CLAIMED, lease lapsed, not yet swept), ``completed``.
Every start has a history in ``record()`` that ``engine_setup()`` reproduces through public ops; the engine
test checks that the task it built equals ``record()``, so both halves test the same rows.

Rows marked ``engine=False`` cannot be reached through the engine: it only looks a task up by id in a
claim, complete or drop; and completing a root completes its tasks in the same transaction (so a CLAIMED
task never meets a finished root).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import product
from typing import NamedTuple

import pytest
from conftest import Sink
from resonate_daemon import errors
from resonate_daemon.clock import ManualClock
from resonate_daemon.core import engine as engine_module
from resonate_daemon.core.engine import Engine
from resonate_daemon.core.transitions import (
    LEASE_GRACE_MS,
    RESEND_AFTER_MS,
    Beat,
    Claim,
    Drop,
    Expire,
    Finish,
    Release,
    Reopen,
    Requeue,
    RootDone,
    Sent,
    TaskRequest,
    TaskVerdict,
    task_transition,
)
from resonate_daemon.protocol import (
    ClaimTask,
    CompletePromise,
    CompleteTask,
    CreateCallback,
    CreatePromise,
    DropTask,
    Heartbeat,
)
from resonate_daemon.protocol.records import (
    CLAIMED,
    COMPLETED,
    ENQUEUED,
    INIT,
    RESOLVED,
    TAG_INVOKE,
    Message,
    Task,
)

T0 = 1_700_000_000_000  # ManualClock's start: every history begins here
GAP, TTL, HOUR, RESEND = 1_000, 30_000, 3_600_000, RESEND_AFTER_MS
LEASE = TTL + LEASE_GRACE_MS  # a claim or a beat holds the task this long
ROOT, ID = "p", "__invoke:p"
RECV, RECV2 = "poll://any@g/p1", "poll://any@g/p9"
P1, P2 = "p1", "p2"  # P1: the process the task was sent to / claimed by; P2: another one
# How long after T0 each start's request comes (a lapsed lease is due exactly at its expiry).
ADV = {"none": GAP, "init": GAP, "enqueued": GAP, "enqueued-due": RESEND, "claimed": GAP, "lapsed": LEASE,
       "completed": GAP}
CODES: dict[type[errors.ResonateError], int] = {
    errors.TaskAlreadyClaimed: 40306, errors.TaskAlreadyCompleted: 40307, errors.InvalidCounter: 40308,
    errors.TaskNotClaimed: 40309, errors.TaskNotFound: 40403,
}
TAKEN, DONE, COUNTER = errors.TaskAlreadyClaimed, errors.TaskAlreadyCompleted, errors.InvalidCounter
NOT_CLAIMED, NOT_FOUND = errors.TaskNotClaimed, errors.TaskNotFound
REQUESTS: dict[str, TaskRequest] = {
    "claim": Claim(1, P2, TTL), "claim/wrong-counter": Claim(2, P2, TTL),
    "claim/root-done": Claim(1, P2, TTL, root_pending=False),
    "finish": Finish(1), "finish/wrong-counter": Finish(2), "drop": Drop(1), "drop/wrong-counter": Drop(2),
    "beat/holder": Beat(P1), "beat/other": Beat(P2), "sent": Sent(1, P1), "sent/stale": Sent(0, P1),
    "expire": Expire(), "release": Release(), "requeue": Requeue(), "root-done": RootDone(),
    "reopen": Reopen(RECV2),
}


class Stored(NamedTuple):
    state: str
    counter: int
    process_id: str | None
    expires_at: int


@dataclass(frozen=True)
class Row:
    start: str
    name: str  # a key of REQUESTS
    status: int
    error: type[errors.ResonateError] | None
    after: Stored | None  # what is written (None: nothing)
    released: bool
    engine: bool

    @property
    def id(self) -> str:
        return f"{self.start}/{self.name}"

    @property
    def request(self) -> TaskRequest:
        return REQUESTS[self.name]


def rows() -> list[Row]:
    out: list[Row] = []

    def r(start: str, name: str, status: int, error: type[errors.ResonateError] | None = None,
          after: Stored | None = None, released: bool = False, engine: bool = True) -> None:
        out.append(Row(start, name, status, error, after, released, engine))

    by_id = ("claim", "claim/wrong-counter", "claim/root-done", "finish", "finish/wrong-counter", "drop",
             "drop/wrong-counter")
    for name in REQUESTS:
        r("none", name, 404, NOT_FOUND, engine=name in by_id)

    s, now = "init", T0 + ADV["init"]
    r(s, "claim", 201, None, Stored(CLAIMED, 1, P2, now + LEASE))
    r(s, "claim/wrong-counter", 403, COUNTER)
    r(s, "claim/root-done", 403, DONE, Stored(COMPLETED, 1, None, 0))
    r(s, "finish", 403, NOT_CLAIMED)
    r(s, "finish/wrong-counter", 403, COUNTER)
    r(s, "drop", 403, NOT_CLAIMED)
    r(s, "drop/wrong-counter", 403, COUNTER)
    r(s, "beat/holder", 200)
    r(s, "beat/other", 200)
    r(s, "sent", 200, None, Stored(ENQUEUED, 1, P1, now + RESEND))
    r(s, "sent/stale", 200)
    r(s, "expire", 200)
    r(s, "release", 200)
    r(s, "requeue", 200)
    r(s, "root-done", 200, None, Stored(COMPLETED, 1, None, 0))
    r(s, "reopen", 200, engine=False)  # only a finished task runs again

    for s in ("enqueued", "enqueued-due"):  # they differ only in whether the sweep expires the send
        now, due = T0 + ADV[s], s == "enqueued-due"
        back = Stored(INIT, 1, None, 0)  # sent again with the same counter
        r(s, "claim", 201, None, Stored(CLAIMED, 1, P2, now + LEASE))
        r(s, "claim/wrong-counter", 403, COUNTER)
        r(s, "claim/root-done", 403, DONE, Stored(COMPLETED, 1, None, T0 + RESEND))
        r(s, "finish", 403, NOT_CLAIMED)
        r(s, "finish/wrong-counter", 403, COUNTER)
        r(s, "drop", 403, NOT_CLAIMED)
        r(s, "drop/wrong-counter", 403, COUNTER)
        r(s, "beat/holder", 200)
        r(s, "beat/other", 200)
        r(s, "sent", 200)
        r(s, "sent/stale", 200)
        r(s, "expire", 200, None, back if due else None, released=due)
        r(s, "release", 200, None, back, released=True)
        r(s, "requeue", 200, None, back, released=True)
        r(s, "root-done", 200, None, Stored(COMPLETED, 1, None, T0 + RESEND))
        r(s, "reopen", 200, engine=False)

    for s in ("claimed", "lapsed"):  # a lapsed lease still blocks claims and takes beats until swept
        now, due = T0 + ADV[s], s == "lapsed"
        fenced = Stored(INIT, 2, None, 0)  # back with counter+1: the old holder is fenced out
        r(s, "claim", 403, TAKEN)
        r(s, "claim/wrong-counter", 403, COUNTER)
        r(s, "claim/root-done", 403, TAKEN, engine=False)
        r(s, "finish", 201, None, Stored(COMPLETED, 1, None, T0 + LEASE), released=True)
        r(s, "finish/wrong-counter", 403, COUNTER)
        r(s, "drop", 201, None, fenced, released=True)
        r(s, "drop/wrong-counter", 403, COUNTER)
        r(s, "beat/holder", 200, None, Stored(CLAIMED, 1, P1, now + LEASE))
        r(s, "beat/other", 200)
        r(s, "sent", 200)
        r(s, "sent/stale", 200)
        r(s, "expire", 200, None, fenced if due else None, released=due)
        r(s, "release", 200, None, fenced, released=True)
        r(s, "requeue", 200)  # a claimed task keeps its lease over a daemon restart
        r(s, "root-done", 200, None, Stored(COMPLETED, 1, None, T0 + LEASE))
        r(s, "reopen", 200, engine=False)

    s = "completed"
    for name in ("claim", "claim/wrong-counter", "claim/root-done", "drop", "drop/wrong-counter"):
        r(s, name, 403, DONE)  # completed is checked before the counter
    for name in ("finish", "finish/wrong-counter"):
        r(s, name, 200)  # completing twice is harmless, whatever the counter
    for name in ("beat/holder", "beat/other", "sent", "sent/stale", "expire", "release", "requeue", "root-done"):
        r(s, name, 200)
    # a retried workflow: its finished invoke task goes back to INIT with the next counter, to the new recv
    r(s, "reopen", 200, None, Stored(INIT, 2, None, 0), released=True, engine=False)
    return out


ROWS = rows()


def test_row_ids_are_unique_and_cover_every_state_and_request() -> None:
    assert len({r.id for r in ROWS}) == len(ROWS)
    assert {(r.start, r.name) for r in ROWS} == set(product(ADV, REQUESTS))
    assert len(ROWS) == 7 * 16


def record(start: str, timeout: int = T0 + HOUR) -> Task | None:
    """The task as stored when ``start``'s request comes (``engine_setup`` builds the same)."""
    init = Task(ID, 1, ROOT, "invoke", INIT, RECV, timeout, T0)
    claimed = replace(init, state=CLAIMED, process_id=P1, ttl=TTL, expires_at=T0 + LEASE, attempt=1, claimed_on=T0,
                      last_process_id=P1)
    return {
        "none": None, "init": init, "claimed": claimed, "lapsed": claimed,
        "enqueued": replace(init, state=ENQUEUED, process_id=P1, expires_at=T0 + RESEND),
        "enqueued-due": replace(init, state=ENQUEUED, process_id=P1, expires_at=T0 + RESEND),
        "completed": replace(claimed, state=COMPLETED, process_id=None, completed_on=T0),
    }[start]


def stored(task: Task) -> Stored:
    return Stored(task.state, task.counter, task.process_id, task.expires_at)


def check_error(error: errors.ResonateError | None, row: Row) -> None:
    if row.error is None:
        assert error is None
        return
    assert type(error) is row.error
    assert error.code == CODES[row.error]
    assert error.status == row.status


# -- the pure function ----------------------------------------------------------------------------
@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_task_transition_pure(row: Row) -> None:
    task, now = record(row.start), T0 + ADV[row.start]
    verdict = task_transition(task, row.request, now)
    assert verdict.status == row.status
    check_error(verdict.error, row)
    assert verdict.released is row.released
    if row.after is None:
        assert verdict.task is None
        return
    assert task is not None and verdict.task is not None
    assert stored(verdict.task) == row.after
    assert (verdict.task.id, verdict.task.root_promise_id, verdict.task.type) == (ID, ROOT, "invoke")
    if row.after.state == COMPLETED:
        assert verdict.task.completed_on == now
    if isinstance(row.request, Claim) and row.status == 201:
        assert (verdict.task.ttl, verdict.task.attempt) == (TTL, task.attempt + 1)
        # the history: the first claim's time is kept, the holder is remembered after it lets go
        assert verdict.task.claimed_on == (task.claimed_on or now) and verdict.task.last_process_id == P2
    if isinstance(row.request, Reopen):
        assert (verdict.task.recv, verdict.task.completed_on) == (RECV2, None)


def test_task_transition_clamps_deadlines_to_int64() -> None:
    task = record("init")
    assert task is not None
    verdict = task_transition(task, Claim(1, P1, 2**63 - 1), T0)
    assert verdict.task is not None and verdict.task.expires_at == 2**63 - 1


# -- the same table through the engine, on a file ---------------------------------------------------
ENGINE_ROWS = [r for r in ROWS if r.engine]


def engine_setup(engine: Engine, clock: ManualClock, row: Row) -> int:
    """Build ``record(row.start)`` through public ops; returns the root's timeout. For ``claim/root-done``
    the root times out exactly when the request comes, and the claim finds it out lazily."""
    assert clock.now() == T0
    timeout = T0 + (ADV[row.start] if row.name == "claim/root-done" else HOUR)
    if row.start != "none":
        engine.create_promise(CreatePromise(ROOT, timeout, tags={TAG_INVOKE: RECV}))
    if row.start in ("enqueued", "enqueued-due"):
        engine.mark_sent(ID, 1, P1)
    if row.start in ("claimed", "lapsed", "completed"):
        engine.claim_task(ClaimTask(ID, 1, P1, TTL))
    if row.start == "completed":
        engine.complete_task(CompleteTask(ID, 1))
    clock.advance(ADV[row.start])
    return timeout


def perform(engine: Engine, request: TaskRequest) -> object:
    """Make the engine carry out ``request`` the way the daemon would."""
    if isinstance(request, Claim):
        return engine.claim_task(ClaimTask(ID, request.counter, request.process_id, request.ttl))
    if isinstance(request, Finish):
        return engine.complete_task(CompleteTask(ID, request.counter))
    if isinstance(request, Drop):
        return engine.drop_task(DropTask(ID, request.counter))
    if isinstance(request, Beat):
        return engine.heartbeat(Heartbeat(request.process_id))
    if isinstance(request, Sent):
        engine.mark_sent(ID, request.counter, request.process_id)
        return None
    if isinstance(request, Expire):
        return engine.tick()
    if isinstance(request, Release):
        return engine.release_process(P1)
    if isinstance(request, Requeue):
        return engine.requeue_sent()
    if isinstance(request, RootDone):
        return engine.complete_promise(CompletePromise(ROOT, RESOLVED))
    raise AssertionError(f"no engine path for {request!r}")



@pytest.fixture
def engine(backend_engine: Engine) -> Engine:
    """The engine tests of this table run on SQLite and on PostgreSQL (conftest's ``backend_engine``)."""
    return backend_engine

@pytest.mark.parametrize("row", ENGINE_ROWS, ids=lambda r: r.id)
def test_task_transition_through_engine(row: Row, engine: Engine, clock: ManualClock, sink: Sink,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    timeout = engine_setup(engine, clock, row)
    before = engine.store.get_task(ID)
    assert before == record(row.start, timeout)  # the engine built the row's start, to the millisecond
    sink.take()
    seen: list[tuple[TaskRequest, TaskVerdict]] = []

    def spy(task: Task | None, request: TaskRequest, now: int) -> TaskVerdict:
        verdict = task_transition(task, request, now)
        if isinstance(request, type(row.request)) and (task is None or task.id == ID):
            seen.append((request, verdict))
        return verdict

    monkeypatch.setattr(engine_module, "task_transition", spy)
    if row.error is not None:
        with pytest.raises(row.error) as info:
            perform(engine, row.request)
        check_error(info.value, row)
        result: object = None
    else:
        result = perform(engine, row.request)

    after = engine.store.get_task(ID)
    if row.after is None:
        assert after == before
    else:
        assert after is not None and stored(after) == row.after

    if isinstance(row.request, Beat):
        pass  # carried out as one statement for every task of the process (Store.extend_leases): the
        # stored task (checked above) and the count (below) are the row's; test_extend_leases_is_beat
    elif not seen:  # the engine skipped the request (wrong state for the sweep, another process...)
        assert (row.status, row.error, row.after, row.released) == (200, None, None, False)
    else:
        request, verdict = seen[-1]
        if row.start != "none":  # an unknown task has no root: the engine asks with root_pending=False
            assert request == row.request
        assert (verdict.status, verdict.released) == (row.status, row.released)
        check_error(verdict.error, row)

    if isinstance(row.request, Finish | Drop) and row.error is None:
        assert getattr(result, "status", None) == row.status
    if isinstance(row.request, Beat | Release | Requeue):
        assert result == (0 if row.after is None else 1)  # how many tasks it changed

    # Dispatch: a released task lets the root's next task go (here its only task, if it is back in INIT).
    messages = sink.take()
    if row.released and after is not None and after.state == INIT:
        assert messages == [Message("invoke", RECV, task=after)]
    else:
        assert messages == []


@pytest.mark.parametrize("how", ["finish", "drop", "release", "expire", "root-done"])
def test_a_released_task_sends_the_roots_next_task(engine: Engine, clock: ManualClock, sink: Sink,
                                                    how: str) -> None:
    """With a resume task waiting behind a claimed invoke task, whatever releases the invoke task sends the
    root's oldest live task; completing the root sends nothing."""
    engine.create_promise(CreatePromise(ROOT, T0 + HOUR, tags={TAG_INVOKE: RECV}))
    engine.claim_task(ClaimTask(ID, 1, P1, TTL))
    engine.create_promise(CreatePromise("c", T0 + HOUR))
    engine.create_callback(CreateCallback("c", ROOT, T0 + HOUR, RECV2))
    sink.take()
    clock.advance(1)  # the resume task is younger than the invoke task
    engine.complete_promise(CompletePromise("c", RESOLVED))
    resume_id = f"__resume:{ROOT}:c"
    resume = engine.store.get_task(resume_id)
    assert resume is not None and resume.state == INIT
    assert sink.take() == []  # held back: the root's invoke task is out
    if how == "expire":
        clock.advance(LEASE)
    requests: dict[str, TaskRequest] = {"finish": Finish(1), "drop": Drop(1), "release": Release(),
                                        "expire": Expire(), "root-done": RootDone()}
    perform(engine, requests[how])
    invoke, resume = engine.store.get_task(ID), engine.store.get_task(resume_id)
    assert invoke is not None and resume is not None
    messages = sink.take()
    if how == "finish":
        assert invoke.state == COMPLETED and messages == [Message("resume", RECV2, task=resume)]
    elif how == "root-done":
        assert (invoke.state, resume.state, messages) == (COMPLETED, COMPLETED, [])
    else:
        assert (invoke.state, invoke.counter, resume.state) == (INIT, 2, INIT)
        assert messages == [Message("invoke", RECV, task=invoke)]


def test_extend_leases_is_beat_for_every_task_of_every_state(engine: Engine, clock: ManualClock) -> None:
    """The store's one-statement heartbeat stores exactly what the Beat row of the pure table decides, for
    tasks of the process in each state, another process's task, and a ttl whose sum overflows int64."""
    from resonate_daemon.protocol.records import INT64_MAX

    now = T0 + 5
    tasks = [Task(id=f"t-{state}-{pid}-{ttl}", counter=2, root_promise_id="r", type="invoke", state=state,
                  recv=RECV, timeout=T0 + HOUR, created_on=T0, process_id=pid if state == "CLAIMED" else None,
                  ttl=ttl, expires_at=T0 + 1)
             for state in ("INIT", "ENQUEUED", "CLAIMED", "COMPLETED") for pid in (P1, P2)
             for ttl in (TTL, INT64_MAX)]
    with engine.store.transaction():
        for t in tasks:
            engine.store.insert_task(t)
        n = engine.store.extend_leases(P1, now, LEASE_GRACE_MS)
    expected = {t.id: task_transition(t, Beat(P1), now).task or t for t in tasks}
    assert n == sum(1 for t in tasks if task_transition(t, Beat(P1), now).task is not None)
    assert {t.id: engine.store.get_task(t.id) for t in tasks} == expected
