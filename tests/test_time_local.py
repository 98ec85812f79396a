"""Time in local mode with a manual clock: timeouts, durable retries, cancellation of a tree.

The engine's clock is a ManualClock; tests move it and run the scheduler's tick themselves, so nothing
waits on wall-clock time. Waits for the worker thread are bounded polls on a condition.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from resonate_daemon import errors as api
from resonate_daemon.clock import ManualClock

from resonate import Constant, Context, PromiseCanceled, PromiseTimedOut, Resonate

WAIT = 20.0


class Boom(Exception):
    """A user exception that must come back with its type after retries run out."""


def until(cond: Callable[[], Any], what: str = "condition") -> Any:
    tick = threading.Event()
    for _ in range(int(WAIT / 0.005)):
        value = cond()
        if value:
            return value
        tick.wait(0.005)  # a poll interval of a bounded wait on a condition
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def r(clock: ManualClock) -> Iterator[Resonate]:
    res = Resonate.local(clock=clock)
    try:
        yield res
    finally:
        res.stop()




def exists(r: Resonate, id: str) -> bool:
    try:
        r.promises.get(id)
        return True
    except api.PromiseNotFound:
        return False


def idle(r: Resonate) -> bool:
    """No task is claimed or sent: every execution finished or suspended (no thread holds one)."""
    return not r.tasks.search(("CLAIMED", "ENQUEUED"), limit=10) and r.wait_idle(0)


def advance(r: Resonate, clock: ManualClock, ms: int) -> None:
    clock.advance(ms)
    r._transport.tick()  # type: ignore[attr-defined]  # LocalTransport: apply what fell due, now


# -- timeouts -------------------------------------------------------------------------------------

def test_a_child_timeout_reaches_the_awaiting_parent(r: Resonate, clock: ManualClock) -> None:
    @r.register
    def child(ctx: Context) -> Any:
        p = yield ctx.promise()
        return (yield p)

    @r.register
    def parent(ctx: Context) -> Any:
        try:
            yield ctx.run(child).options(timeout=10)
        except PromiseTimedOut as exc:
            return f"caught: {exc}"
        return "no timeout"

    handle = parent.begin_run("tp")
    until(lambda: exists(r, "tp.1.1") and idle(r), "the child to wait on its promise")
    advance(r, clock, 11_000)  # eagerly: the scheduler's tick times the child out
    assert handle.result(timeout=WAIT).startswith("caught: ")
    assert r.promises.get("tp.1").state == "REJECTED_TIMEDOUT"
    assert r.promises.get("tp").state == "RESOLVED"


def test_a_top_level_timeout_lazily_and_eagerly(r: Resonate, clock: ManualClock) -> None:
    @r.register
    def forever(ctx: Context) -> Any:
        p = yield ctx.promise()
        return (yield p)

    lazy = r.options(timeout=5).begin_run("lazy", forever)
    eager = forever.options(timeout=5).begin_run("eager")
    until(lambda: exists(r, "lazy.1") and exists(r, "eager.1") and idle(r), "both to suspend")
    clock.advance(6_000)
    assert r.promises.get("lazy").state == "REJECTED_TIMEDOUT"  # on access, no tick
    with pytest.raises(PromiseTimedOut):
        lazy.result(timeout=WAIT)
    r._transport.tick()  # type: ignore[attr-defined]
    with pytest.raises(PromiseTimedOut):
        eager.result(timeout=WAIT)
    assert r.promises.get("eager").state == "REJECTED_TIMEDOUT"


# -- durable retries ------------------------------------------------------------------------------

def test_retries_wait_on_timers_and_hold_no_thread(r: Resonate, clock: ManualClock) -> None:
    attempts: list[int] = []

    def flaky(ctx: Context) -> str:
        attempts.append(ctx.info.attempt)
        if len(attempts) < 3:
            raise ConnectionError(f"try {len(attempts)}")
        return "ok"

    @r.register
    def wf(ctx: Context) -> Any:
        return (yield ctx.run(flaky).options(retry_policy=Constant(delay=3600)))

    handle = wf.begin_run("rt")
    until(lambda: exists(r, "rt.1.retry.1") and idle(r), "the first backoff")
    timer = r.promises.get("rt.1.retry.1")
    assert timer.state == "PENDING" and timer.tags["resonate:timeout"] == "true"
    assert timer.timeout == clock.now() + 3_600_000
    assert not handle.done() and attempts == [1]
    advance(r, clock, 3_600_000)
    until(lambda: exists(r, "rt.1.retry.2") and idle(r), "the second backoff")
    assert attempts == [1, 2]
    advance(r, clock, 3_600_000)
    assert handle.result(timeout=WAIT) == "ok"
    assert attempts == [1, 2, 3]


def test_exhausted_retries_reject_with_the_original_type(r: Resonate, clock: ManualClock) -> None:
    calls: list[int] = []

    def bad(ctx: Context) -> None:
        calls.append(1)
        raise Boom("still broken")

    @r.register
    def wf(ctx: Context) -> Any:
        yield ctx.run(bad).options(retry_policy=Constant(delay=1, max_retries=2))

    handle = wf.begin_run("ex")
    for n in (1, 2):
        until(lambda n=n: exists(r, f"ex.1.retry.{n}") and idle(r), f"backoff {n}")
        advance(r, clock, 1_000)
    with pytest.raises(Boom, match="still broken"):
        handle.result(timeout=WAIT)
    assert len(calls) == 3
    step = r.promises.get("ex.1")
    assert step.state == "REJECTED"
    with pytest.raises(Boom):
        r.promises.value(step)


def test_non_retryable_and_timeout_bound_end_retries_at_once(r: Resonate) -> None:
    calls: list[str] = []

    def bad(ctx: Context, why: str) -> None:
        calls.append(why)
        raise ValueError(why)

    @r.register
    def wf(ctx: Context) -> Any:
        out = []
        for call in (ctx.run(bad, "nr").options(retry_policy=Constant(delay=1),
                                                non_retryable_exceptions=(ValueError,)),
                     ctx.run(bad, "late").options(retry_policy=Constant(delay=60), timeout=30)):
            try:
                yield call
            except ValueError as exc:
                out.append(str(exc))
        return out

    assert wf.run("nr") == ["nr", "late"]
    assert calls == ["nr", "late"]
    assert not exists(r, "nr.1.retry.1") and not exists(r, "nr.2.retry.1")


def test_a_plain_root_function_retries_durably(r: Resonate, clock: ManualClock) -> None:
    calls: list[int] = []

    @r.register
    def plain(ctx: Context) -> int:
        calls.append(ctx.info.attempt)
        if len(calls) == 1:
            raise ConnectionError("once")
        return 7

    handle = plain.options(retry_policy=Constant(delay=5)).begin_run("pr")
    until(lambda: exists(r, "pr.retry.1") and idle(r), "the root's backoff")
    advance(r, clock, 5_000)
    assert handle.result(timeout=WAIT) == 7
    assert calls == [1, 2]


# -- cancellation ---------------------------------------------------------------------------------

def test_the_waiting_function_catches_a_cancel(r: Resonate) -> None:
    @r.register
    def wf(ctx: Context) -> Any:
        p = yield ctx.promise()
        try:
            yield p
        except PromiseCanceled:
            return "canceled"
        return "resolved"

    handle = wf.begin_run("cw")
    until(lambda: exists(r, "cw.1") and idle(r), "the wait")
    assert r.promises.cancel("cw.1").state == "REJECTED_CANCELED"
    assert handle.result(timeout=WAIT) == "canceled"


def test_cancel_a_tree_of_a_running_workflow(r: Resonate, clock: ManualClock) -> None:
    @r.register
    def leaf(ctx: Context) -> Any:
        p = yield ctx.promise()
        return (yield p)

    def after() -> str:
        return "should never run"

    @r.register
    def branch(ctx: Context, n: int) -> Any:
        a = yield ctx.begin_run(leaf)
        b = yield ctx.begin_run(leaf)
        out = [(yield a), (yield b)]
        out.append((yield ctx.run(after)))
        return out

    @r.register
    def root(ctx: Context) -> Any:
        x = yield ctx.begin_run(branch, 1)
        y = yield ctx.begin_run(branch, 2)
        yield ctx.sleep(3600)
        return [(yield x), (yield y)]

    handle = root.begin_run("tree")
    waits = ["tree.1.1.1", "tree.1.2.1", "tree.2.1.1", "tree.2.2.1"]
    until(lambda: all(exists(r, w) for w in waits) and idle(r), "every leaf to wait")
    before, _ = r.promises.search("tree*", state="pending", limit=100)
    assert {p.id for p in before} >= {"tree", "tree.1", "tree.2", "tree.3", *waits}

    r.promises.cancel("tree", tree=True)
    with pytest.raises(PromiseCanceled):
        handle.result(timeout=WAIT)
    left, _ = r.promises.search("tree*", state="pending", limit=100)
    assert left == []
    canceled, _ = r.promises.search("tree*", state="rejected", limit=100)
    assert {p.id for p in canceled} == {p.id for p in before}
    assert all(p.state == "REJECTED_CANCELED" for p in canceled)

    # Nothing more is written under them: completions and new children are refused.
    with pytest.raises(api.AlreadyCanceled):  # no idempotency key matches (two missing keys do not)
        r.promises.resolve("tree.1.1.1", data="1")
    with pytest.raises(api.AlreadyCanceled):
        r.promises.resolve("tree.1.1.1", data="1", ikey="k", strict=True)
    with pytest.raises(api.AlreadyCanceled, match="'tree.1' was canceled"):
        r.promises.create("tree.1.9", tags={"resonate:parent": "tree.1", "resonate:root": "tree"})
    advance(r, clock, 3_600_000)  # the sleep's deadline passes: no timer fires on a canceled tree
    until(lambda: idle(r), "quiet")
    after_all, _ = r.promises.search("tree*", limit=100)
    assert {p.id for p in after_all} == {p.id for p in before}


def test_a_canceled_execution_stops_writing(r: Resonate) -> None:
    inside, release = threading.Event(), threading.Event()

    def slow(ctx: Context) -> int:
        inside.set()
        release.wait(WAIT)
        return 1

    def next_step(ctx: Context) -> int:
        return 2

    @r.register
    def wf(ctx: Context) -> Any:
        a = yield ctx.run(slow)
        b = yield ctx.run(next_step)
        return a + b

    handle = wf.begin_run("cx")
    assert inside.wait(WAIT)
    r.promises.cancel("cx", tree=True)
    release.set()
    with pytest.raises(PromiseCanceled):
        handle.result(timeout=WAIT)
    until(lambda: idle(r), "the execution to stop")
    assert not exists(r, "cx.1") and not exists(r, "cx.2")  # the step's result and the next step: refused
