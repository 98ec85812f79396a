"""The same random operation sequences against three implementations that must agree: the engine on
SQLite, the engine on PostgreSQL, and the pure promise state machine (``promise_transition`` applied to
a dict). Seeded, so a failure names its seed and replays exactly.

Each step is a create, a complete, a get, a search, a clock advance or a timer tick, on a few ids (so
they collide), with idempotency keys that sometimes match; the answers (status and state, or the error
code) of the three must be equal at every step, and the stored promises of the two stores equal at the
end, field by field.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from resonate_daemon import errors
from resonate_daemon.clock import ManualClock
from resonate_daemon.core.engine import Engine
from resonate_daemon.core.transitions import Complete, Create, Read, promise_transition
from resonate_daemon.protocol import CompletePromise, CreatePromise, GetPromise
from resonate_daemon.protocol.records import (
    EMPTY,
    PENDING,
    REJECTED,
    REJECTED_CANCELED,
    RESOLVED,
    Promise,
    Value,
)
from resonate_daemon.store import glob_match, open_store

IDS = ["a", "b", "a/1", "a/2", "b/1"]
KEYS = [None, "k1", "k2"]
TARGETS = [RESOLVED, REJECTED, REJECTED_CANCELED]
STEPS = 60


@dataclass
class Model:
    """The pure model: promises as the state machine says they are, with nothing stored anywhere."""

    promises: dict[str, Promise]

    def answer(self, request: Create | Complete | Read, id: str, now: int, timeout: int = 0) -> tuple[int, str | None]:
        current = self.promises.get(id)
        verdict = promise_transition(current, request, now)
        if current is not None and verdict.timeout_state is not None:
            current = self.promises[id] = replace(current, state=verdict.timeout_state, completed_on=now)
        if verdict.error is not None:
            return verdict.error.code, None
        if verdict.write == "create":
            assert isinstance(request, Create)
            current = self.promises[id] = Promise(id, PENDING, EMPTY, EMPTY, timeout, {}, now,
                                                  idempotency_key_for_create=request.idempotency_key)
        elif verdict.write == "complete":
            assert current is not None and isinstance(request, Complete)
            current = self.promises[id] = replace(current, state=request.state, completed_on=now,
                                                  idempotency_key_for_complete=request.idempotency_key)
        assert current is not None
        return verdict.status, current.state


def through(engine: Engine, call: str, *args: object) -> tuple[int, str | None]:
    """The engine's answer as (status, state), or (error code, None)."""
    try:
        if call == "create":
            created = engine.create_promise(args[0])  # type: ignore[arg-type]
            return created.status, created.promise.state
        if call == "complete":
            done = engine.complete_promise(args[0])  # type: ignore[arg-type]
            return done.status, done.promise.state
        got = engine.get_promise(args[0])  # type: ignore[arg-type]
        return 200, got.state
    except errors.ResonateError as exc:
        return exc.code, None


@pytest.fixture
def engines(db_path: str, pg_url: str) -> Iterator[tuple[Engine, Engine, ManualClock]]:
    clock = ManualClock()
    stores = [open_store(db_path), open_store(pg_url)]
    try:
        yield Engine(stores[0], clock), Engine(stores[1], clock), clock
    finally:
        for s in stores:
            s.close()


@pytest.mark.parametrize("seed", range(12))
def test_sqlite_postgres_and_the_model_agree(seed: int, engines: tuple[Engine, Engine, ManualClock]) -> None:
    lite, pg, clock = engines
    model = Model({})
    rng = random.Random(seed)
    for step in range(STEPS):
        now = clock.now()
        id = rng.choice(IDS)
        kind = rng.choices(["create", "complete", "get", "search", "advance", "tick"], [5, 4, 3, 2, 2, 1])[0]
        where = f"seed {seed} step {step}: {kind} {id}"
        if kind == "create":
            key, strict, timeout = rng.choice(KEYS), rng.random() < 0.3, now + rng.randint(1, 40)
            op = CreatePromise(id, timeout, idempotency_key=key, strict=strict)
            expected = model.answer(Create(key, strict), id, now, timeout)
            assert through(lite, "create", op) == through(pg, "create", op) == expected, where
        elif kind == "complete":
            key, strict, target = rng.choice(KEYS), rng.random() < 0.3, rng.choice(TARGETS)
            op2 = CompletePromise(id, target, Value({"n": str(step)}, "eA=="), idempotency_key=key, strict=strict)
            expected = model.answer(Complete(target, key, strict), id, now)
            assert through(lite, "complete", op2) == through(pg, "complete", op2) == expected, where
        elif kind == "get":
            expected = model.answer(Read(), id, now)
            if expected[0] == 404:
                expected = (errors.PromiseNotFound.code, None)
            assert through(lite, "get", GetPromise(id)) == through(pg, "get", GetPromise(id)) == expected, where
        elif kind == "search":
            glob = rng.choice(["*", "a*", "a/*", "*1", "b", "*/*"])
            states = rng.choice([None, (PENDING,), (RESOLVED, REJECTED)])
            newest = sorted(model.promises.values(), key=lambda p: (p.created_on, p.id), reverse=True)
            expected_ids = [p.id for p in newest if glob_match(glob, p.id) and (states is None or p.state in states)]
            found = [[p.id for p in e.store.search_promises(glob, states, None, 100, None)[0]] for e in (lite, pg)]
            assert found[0] == found[1] == expected_ids, where
        elif kind == "advance":
            clock.advance(rng.randint(0, 15))
        else:
            lite.tick()
            pg.tick()
            for id_ in list(model.promises):  # the sweep applies every due timeout
                model.answer(Read(), id_, now)
    for id in IDS:
        assert lite.store.get_promise(id) == pg.store.get_promise(id), f"seed {seed}: {id} differs at the end"
