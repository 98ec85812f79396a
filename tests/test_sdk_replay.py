"""Replays: a resumed execution re-runs its generator from the top against the recorded history.

Each test runs a workflow until it suspends on a promise, stops that Resonate (as a process would exit),
opens the same file with a new one and lets the replay happen; events, never sleeps, say when the first
run has reached its wait.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

from resonate import Context, NondeterminismError, Resonate

WAIT = 30


def charge(ctx: Context) -> str:
    return "charged"


def refund(ctx: Context) -> str:
    return "refunded"


def suspend_first(db: str, flow: Callable[[threading.Event], Callable[..., Any]], id: str) -> None:
    """Run ``flow(reached)`` under ``id`` in a first Resonate until it sets ``reached``, then stop it."""
    first = Resonate.local(path=db)
    reached = threading.Event()
    first.register(flow(reached), name="flow")
    handle = first.begin_run(id, "flow")
    assert reached.wait(WAIT)
    first.stop()  # waits for the execution to suspend
    assert not handle.done()


def test_nondeterministic_replay_names_both_functions(short_dir: str) -> None:
    db = os.path.join(short_dir, "nd.db")
    first = Resonate.local(path=db)
    waiting = threading.Event()

    @first.register(name="flow")
    def flow_v1(ctx: Context) -> Any:
        yield ctx.run(charge)
        p = yield ctx.promise()
        yield ctx.run(lambda _ctx: waiting.set())
        return (yield p)

    handle = flow_v1.begin_run("order-1")
    assert waiting.wait(WAIT)
    first.stop()  # waits for the execution to suspend
    assert not handle.done()

    second = Resonate.local(path=db)
    try:
        @second.register(name="flow")
        def flow_v2(ctx: Context) -> Any:
            yield ctx.run(refund)  # a different function where the history records charge
            p = yield ctx.promise()
            return (yield p)

        handle = second.get("order-1")
        second.promises.resolve("order-1.2", data='"ok"')
        with pytest.raises(NondeterminismError) as info:
            handle.result(timeout=WAIT)
        assert (info.value.position, info.value.recorded, info.value.called) == ("order-1.1", "charge", "refund")
        assert "charge" in str(info.value) and "refund" in str(info.value)
    finally:
        second.stop()


def test_random_and_time_are_recorded(short_dir: str) -> None:
    db = os.path.join(short_dir, "rt.db")
    seen: list[tuple[float, float]] = []
    waiting = threading.Event()

    def make(r: Resonate) -> Any:
        @r.register
        def draw(ctx: Context) -> Any:
            x = yield ctx.random.random()
            t = yield ctx.time.time()
            seen.append((x, t))
            p = yield ctx.promise()
            yield ctx.run(lambda _ctx: waiting.set())
            yield p
            return [x, t]
        return draw

    r1 = Resonate.local(path=db)
    make(r1).begin_run("draw")
    assert waiting.wait(WAIT)
    r1.stop()
    with Resonate.local(path=db) as r2:
        make(r2)
        handle = r2.get("draw")
        r2.promises.resolve("draw.3", data="null")
        assert handle.result(timeout=WAIT) == list(seen[0])
    assert len(seen) == 2 and seen[0] == seen[1]  # the replay saw the recorded values


def test_a_step_where_the_history_has_a_bare_promise(short_dir: str) -> None:
    """The replay must not run the step and complete the outside world's promise with its result."""
    db = os.path.join(short_dir, "p2r.db")
    ran: list[str] = []

    def v1(reached: threading.Event) -> Callable[..., Any]:
        def flow(ctx: Context) -> Any:
            approval = yield ctx.promise()  # .1: someone outside answers this
            go = yield ctx.promise()  # .2
            yield ctx.run(lambda _ctx: reached.set())
            yield go
            return (yield approval)
        return flow

    suspend_first(db, v1, "a")

    def step(ctx: Context) -> str:
        ran.append("step")
        return "from the step"

    with Resonate.local(path=db) as second:
        @second.register(name="flow")
        def v2(ctx: Context) -> Any:
            return (yield ctx.run(step))  # .1 is now a step

        handle = second.get("a")
        second.promises.resolve("a.2", data="true")  # wakes the replay while a.1 is still pending
        with pytest.raises(NondeterminismError) as info:
            handle.result(timeout=WAIT)
        assert (info.value.position, info.value.recorded) == ("a.1", "promise")
        assert info.value.called.endswith("step")
        assert ran == []
        assert second.promises.get("a.1").state == "PENDING"  # still the outside world's to answer


def test_a_bare_promise_where_the_history_has_a_step(short_dir: str) -> None:
    db = os.path.join(short_dir, "r2p.db")

    def v1(reached: threading.Event) -> Callable[..., Any]:
        def flow(ctx: Context) -> Any:
            yield ctx.run(charge)  # .1
            go = yield ctx.promise()  # .2
            yield ctx.run(lambda _ctx: reached.set())
            return (yield go)
        return flow

    suspend_first(db, v1, "b")
    with Resonate.local(path=db) as second:
        @second.register(name="flow")
        def v2(ctx: Context) -> Any:
            answer = yield ctx.promise()  # .1 is now a promise: it must not take charge's result
            return (yield answer)

        handle = second.get("b")
        second.promises.resolve("b.2", data="true")
        with pytest.raises(NondeterminismError) as info:
            handle.result(timeout=WAIT)
        assert (info.value.position, info.value.called) == ("b.1", "promise")
        assert info.value.recorded.endswith("charge")


def test_waiting_on_a_promise_made_elsewhere_by_id(short_dir: str) -> None:
    """ctx.promise(id=...) naming another execution's child is a wait, not a nondeterminism."""
    with Resonate.local(path=os.path.join(short_dir, "w.db")) as r:
        @r.register
        def producer(ctx: Context) -> Any:
            return (yield ctx.run(charge))

        @r.register
        def consumer(ctx: Context) -> Any:
            other = yield ctx.promise(id="prod.1")
            return (yield other)

        assert producer.run("prod") == "charged"
        assert consumer.run("cons") == "charged"
