"""PROTOCOL.md "Promise transitions", one parametrized case per row, checked twice: against the pure
``transitions.promise_transition`` and through ``Engine`` on a real SQLite file (status, error class and
code, and the promise as stored afterwards).

Where PROTOCOL.md says "same-kind complete" for a completed promise, the code (like the legacy Resonate
server) answers 200 to any non-strict completion whose idempotency key matches the complete key; the
rows ``resolved/reject/same-complete-key`` pin that behaviour. Keys match when both are present and
equal: the ``both-null`` rows pin that two missing keys do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from resonate_daemon import errors
from resonate_daemon.clock import ManualClock
from resonate_daemon.core.engine import Engine
from resonate_daemon.core.transitions import Complete, Create, Verdict
from resonate_daemon.core.transitions import promise_transition as transition
from resonate_daemon.protocol import CompletePromise, CreatePromise, GetPromise, SearchPromises
from resonate_daemon.protocol.records import (
    EMPTY,
    PENDING,
    REJECTED,
    REJECTED_CANCELED,
    REJECTED_TIMEDOUT,
    RESOLVED,
    TAG_TIMEOUT,
    Promise,
    Value,
)

NOW = 1_700_000_000_000
TIMEOUT_MS = 1_000
CK, OTHER = "ik-create", "ik-other"
DK = "ik-complete"
SLEEP = {TAG_TIMEOUT: "true"}
KINDS = (RESOLVED, REJECTED, REJECTED_CANCELED)
NOT_FOUND, EXISTS = errors.PromiseNotFound, errors.PromiseAlreadyExists


@dataclass(frozen=True)
class Row:
    """``start``: None, PENDING, "TIMED_OUT" (pending past its timeout, not yet noticed) or a completed state."""

    id: str
    start: str | None
    request: Create | Complete
    status: int
    error: type[errors.ResonateError] | None
    after: str | None  # the state stored afterwards (None: still no promise)
    tags: dict[str, str] | None = None
    complete_key: str | None = DK  # the stored idempotencyKeyForComplete of a completed start
    create_key: str | None = CK  # the stored idempotencyKeyForCreate


def rows() -> list[Row]:
    out: list[Row] = [
        # none
        Row("none/create", None, Create(CK, False), 201, None, PENDING),
        Row("none/create/strict", None, Create(CK, True), 201, None, PENDING),
        *[Row(f"none/{k.lower()}", None, Complete(k, DK, False), 404, NOT_FOUND, None) for k in KINDS],
        # PENDING, not timed out: create
        Row("pending/create/same-ikey", PENDING, Create(CK, False), 200, None, PENDING),
        Row("pending/create/same-ikey/strict", PENDING, Create(CK, True), 200, None, PENDING),
        Row("pending/create/other-ikey", PENDING, Create(OTHER, False), 409, EXISTS, PENDING),
        Row("pending/create/no-ikey", PENDING, Create(None, False), 409, EXISTS, PENDING),
        Row("pending/create/both-null", PENDING, Create(None, False), 409, EXISTS, PENDING, create_key=None),
        # PENDING, timed out: create
        Row("timedout/create/same-ikey", "TIMED_OUT", Create(CK, False), 200, None, REJECTED_TIMEDOUT),
        Row("timedout/create/same-ikey/sleep", "TIMED_OUT", Create(CK, False), 200, None, RESOLVED, SLEEP),
        Row("timedout/create/same-ikey/strict", "TIMED_OUT", Create(CK, True), 409, EXISTS, REJECTED_TIMEDOUT),
        Row("timedout/create/other-ikey", "TIMED_OUT", Create(OTHER, False), 409, EXISTS, REJECTED_TIMEDOUT),
        # PENDING, not timed out: complete
        *[Row(f"pending/{k.lower()}", PENDING, Complete(k, DK, False), 201, None, k) for k in KINDS],
        *[Row(f"pending/{k.lower()}/strict", PENDING, Complete(k, DK, True), 201, None, k) for k in KINDS],
        Row("pending/resolve/no-ikey", PENDING, Complete(RESOLVED, None, False), 201, None, RESOLVED),
        # PENDING, timed out: complete
        *[Row(f"timedout/{k.lower()}", "TIMED_OUT", Complete(k, DK, False), 200, None, REJECTED_TIMEDOUT)
          for k in KINDS],
        *[Row(f"timedout/{k.lower()}/sleep", "TIMED_OUT", Complete(k, DK, False), 200, None, RESOLVED, SLEEP)
          for k in KINDS],
        *[Row(f"timedout/{k.lower()}/strict", "TIMED_OUT", Complete(k, DK, True), 403, errors.AlreadyTimedOut,
              REJECTED_TIMEDOUT) for k in KINDS],
        Row("timedout/resolve/strict/sleep", "TIMED_OUT", Complete(RESOLVED, DK, True), 403,
            errors.AlreadyTimedOut, RESOLVED, SLEEP),
    ]
    completed = (RESOLVED, REJECTED, REJECTED_CANCELED, REJECTED_TIMEDOUT)
    for s in completed:
        n = s.lower()
        out += [
            # completed: create
            Row(f"{n}/create/same-ikey", s, Create(CK, False), 200, None, s),
            Row(f"{n}/create/same-ikey/strict", s, Create(CK, True), 409, EXISTS, s),
            Row(f"{n}/create/other-ikey", s, Create(OTHER, False), 409, EXISTS, s),
        ]
    already = errors.ALREADY_COMPLETED
    for s in KINDS:
        n = s.lower()
        out += [
            # same-kind complete, not strict, complete key matches
            Row(f"{n}/{n}/same-complete-key", s, Complete(s, DK, False), 200, None, s),
            Row(f"{n}/{n}/other-complete-key", s, Complete(s, OTHER, False), 403, already[s], s),
            Row(f"{n}/{n}/create-key", s, Complete(s, CK, False), 403, already[s], s),
            # strict: ikey matches and same state
            Row(f"{n}/{n}/same-complete-key/strict", s, Complete(s, DK, True), 200, None, s),
            Row(f"{n}/{n}/other-complete-key/strict", s, Complete(s, OTHER, True), 403, already[s], s),
        ]
        for k in KINDS:
            if k == s:
                continue
            kn = k.lower()
            out += [
                # other kind, not strict, matching key: 200 in the code (PROTOCOL.md: "same-kind")
                Row(f"{n}/{kn}/same-complete-key", s, Complete(k, DK, False), 200, None, s),
                Row(f"{n}/{kn}/same-complete-key/strict", s, Complete(k, DK, True), 403, already[s], s),
                Row(f"{n}/{kn}/other-complete-key", s, Complete(k, OTHER, False), 403, already[s], s),
            ]
    # ikey match means "both present and equal": a completion without a key meets a promise completed
    # without one, and is refused (the legacy server's IdempotencyKey.Match)
    out.append(Row("resolved/resolve/both-null", RESOLVED, Complete(RESOLVED, None, False), 403,
                   errors.AlreadyResolved, RESOLVED, complete_key=None))
    out.append(Row("resolved/create/both-null", RESOLVED, Create(None, False), 409, EXISTS, RESOLVED,
                   create_key=None))
    out.append(Row("resolved/resolve/null-vs-key", RESOLVED, Complete(RESOLVED, None, False), 403,
                   errors.AlreadyResolved, RESOLVED))
    # REJECTED_TIMEDOUT: any non-strict completion is answered 200; a strict one is 403
    for k in KINDS:
        kn = k.lower()
        out += [
            Row(f"rejected_timedout/{kn}", REJECTED_TIMEDOUT, Complete(k, OTHER, False), 200, None,
                REJECTED_TIMEDOUT),
            Row(f"rejected_timedout/{kn}/strict", REJECTED_TIMEDOUT, Complete(k, None, True), 403,
                errors.AlreadyTimedOut, REJECTED_TIMEDOUT),
        ]
    return out


ROWS = rows()


def test_row_ids_are_unique() -> None:
    assert len({r.id for r in ROWS}) == len(ROWS)


# -- the pure function ----------------------------------------------------------------------------
def record(row: Row) -> Promise | None:
    if row.start is None:
        return None
    tags = dict(row.tags or {})
    if row.start in (PENDING, "TIMED_OUT"):
        timeout = NOW + TIMEOUT_MS if row.start == PENDING else NOW - 1
        return Promise("p", PENDING, EMPTY, EMPTY, timeout, tags, NOW - 5_000,
                       idempotency_key_for_create=row.create_key)
    key = None if row.start == REJECTED_TIMEDOUT else row.complete_key
    return Promise("p", row.start, EMPTY, EMPTY, NOW + TIMEOUT_MS, tags, NOW - 5_000, NOW - 10,
                   idempotency_key_for_create=row.create_key, idempotency_key_for_complete=key)


def state_after(current: Promise | None, verdict: Verdict) -> str | None:
    if verdict.write == "create":
        return PENDING
    if verdict.write == "complete":
        return verdict.state
    if verdict.timeout_state is not None:
        return verdict.timeout_state
    return current.state if current is not None else None



@pytest.fixture
def engine(backend_engine: Engine) -> Engine:
    """The engine tests of this table run on SQLite and on PostgreSQL (conftest's ``backend_engine``)."""
    return backend_engine

@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_transition_pure(row: Row) -> None:
    current = record(row)
    verdict = transition(current, row.request, NOW)
    assert verdict.status == row.status
    if row.error is None:
        assert verdict.error is None
    else:
        assert type(verdict.error) is row.error
        assert verdict.error.code // 100 == row.status
    assert state_after(current, verdict) == row.after


def test_transition_timeout_boundary_is_inclusive() -> None:
    p = Promise("p", PENDING, EMPTY, EMPTY, NOW, {}, NOW - 1, idempotency_key_for_create=CK)
    assert transition(p, Create(CK, False), NOW - 1) == Verdict(200)
    assert transition(p, Create(CK, False), NOW).timeout_state == REJECTED_TIMEDOUT


# -- the same table through the engine, on a file ---------------------------------------------------
def setup(engine: Engine, clock: ManualClock, row: Row) -> None:
    if row.start is None:
        return
    engine.create_promise(CreatePromise("p", clock.now() + TIMEOUT_MS, tags=dict(row.tags or {}),
                                        idempotency_key=row.create_key))
    if row.start == PENDING:
        return
    if row.start in ("TIMED_OUT", REJECTED_TIMEDOUT):
        clock.advance(TIMEOUT_MS)  # exactly at the timeout: it counts as passed
        if row.start == REJECTED_TIMEDOUT:
            engine.tick()
        return
    engine.complete_promise(CompletePromise("p", row.start, Value({}, "dmFsdWU="), idempotency_key=row.complete_key))
    clock.advance(10)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_transition_through_engine(row: Row, engine: Engine, clock: ManualClock) -> None:
    setup(engine, clock, row)
    before = engine.store.get_promise("p")
    req = row.request
    if row.error is not None:
        with pytest.raises(row.error) as info:
            if isinstance(req, Create):
                engine.create_promise(CreatePromise("p", clock.now() + TIMEOUT_MS,
                                                    idempotency_key=req.idempotency_key, strict=req.strict))
            else:
                engine.complete_promise(CompletePromise("p", req.state, idempotency_key=req.idempotency_key,
                                                        strict=req.strict))
        assert info.value.status == row.status
        assert info.value.code == row.error.code
    elif isinstance(req, Create):
        created = engine.create_promise(CreatePromise("p", clock.now() + TIMEOUT_MS,
                                                      idempotency_key=req.idempotency_key, strict=req.strict))
        assert created.status == row.status
        assert created.promise.state == row.after
    else:
        done = engine.complete_promise(CompletePromise("p", req.state, Value({}, "bmV3"),
                                                       idempotency_key=req.idempotency_key, strict=req.strict))
        assert done.status == row.status
        assert done.promise.state == row.after

    stored = engine.store.get_promise("p")
    if row.after is None:
        assert stored is None
        return
    assert stored is not None
    assert stored.state == row.after
    if row.status == 201 and isinstance(req, Complete):
        assert stored.idempotency_key_for_complete == req.idempotency_key
        assert stored.value == Value({}, "bmV3")
        assert stored.completed_on == clock.now()
    elif before is not None and before.state != PENDING:
        assert stored == before  # a completed promise never changes
    elif before is not None and row.after != PENDING:
        # a lazy timeout was stored (even when the request itself failed); a sleep resolves, with no value
        assert stored.value == EMPTY and stored.completed_on == clock.now()
        assert stored.idempotency_key_for_complete is None
    if row.start is None:
        assert stored.idempotency_key_for_create == row.request.idempotency_key
        assert stored.created_on == clock.now()


def test_engine_create_born_timed_out_is_stored_completed(engine: Engine, clock: ManualClock) -> None:
    created = engine.create_promise(CreatePromise("late", clock.now() - 1, idempotency_key="late"))
    assert created.status == 201 and created.promise.state == REJECTED_TIMEDOUT
    sleep = engine.create_promise(CreatePromise("nap", clock.now(), tags=SLEEP))
    assert sleep.promise.state == RESOLVED


def test_engine_get_applies_the_lazy_timeout(engine: Engine, clock: ManualClock) -> None:
    engine.create_promise(CreatePromise("p", clock.now() + TIMEOUT_MS))
    engine.create_promise(CreatePromise("s", clock.now() + TIMEOUT_MS, tags=SLEEP))
    clock.advance(TIMEOUT_MS - 1)
    assert engine.get_promise(GetPromise("p")).state == PENDING
    clock.advance(1)
    assert engine.get_promise(GetPromise("p")).state == REJECTED_TIMEDOUT
    assert engine.store.get_promise("p").state == REJECTED_TIMEDOUT  # stored, not only shown
    assert engine.store.get_promise("s").state == PENDING
    found = engine.search_promises(SearchPromises("s")).items
    assert [p.state for p in found] == [RESOLVED]


def test_engine_tick_times_out_eagerly_and_reports_the_next_deadline(engine: Engine, clock: ManualClock) -> None:
    engine.create_promise(CreatePromise("a", clock.now() + 100))
    engine.create_promise(CreatePromise("b", clock.now() + 300, tags=SLEEP))
    assert engine.tick() == clock.now() + 100
    clock.advance(100)
    assert engine.tick() == clock.now() + 200
    assert engine.store.get_promise("a").state == REJECTED_TIMEDOUT
    clock.advance(200)
    assert engine.tick() is None
    assert engine.store.get_promise("b").state == RESOLVED


@pytest.mark.parametrize("bad", ["", "x\n", "a" * 1025, 7])
def test_ops_reject_bad_ids(clock: ManualClock, bad: object) -> None:
    with pytest.raises(errors.InvalidRequest) as info:
        CreatePromise(bad, clock.now() + 1)  # type: ignore[arg-type]
    assert info.value.code == 40000


def test_engine_rejects_bad_complete_state(engine: Engine, clock: ManualClock) -> None:
    engine.create_promise(CreatePromise("p", clock.now() + 1))
    with pytest.raises(errors.InvalidRequest):
        CompletePromise("p", REJECTED_TIMEDOUT)
    with pytest.raises(errors.PromiseNotFound) as info:
        engine.complete_promise(CompletePromise("nope", RESOLVED))
    assert info.value.code == 40400 and "nope" in str(info.value)
