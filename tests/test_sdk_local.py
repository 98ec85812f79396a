"""The SDK in local mode: the programming model of the Resonate docs, run against the in-process engine."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import pytest

from resonate import (
    Constant,
    Context,
    Never,
    NotRegistered,
    PromiseTimedOut,
    Resonate,
)

WAIT = 30  # seconds: a bound on every blocking wait, never a sleep


class InsufficientFunds(Exception):
    """Defined here so the test sees a rejection come back with its own type."""

    def __init__(self, account: str, short: int) -> None:
        super().__init__(account, short)
        self.account, self.short = account, short


@pytest.fixture
def resonate() -> Iterator[Resonate]:
    r = Resonate.local()
    try:
        yield r
    finally:
        r.stop()


def test_factorial_with_explicit_ids(resonate: Resonate) -> None:
    @resonate.register
    def factorial(ctx: Context, n: int) -> Any:
        if n <= 1:
            return 1
        r = yield ctx.run(factorial, n - 1).options(id=f"factorial-{n-1}")
        return n * r

    assert factorial.run("factorial-5", n=5) == 120
    assert [resonate.promises.get(f"factorial-{i}").state for i in range(1, 5)] == ["RESOLVED"] * 4
    assert resonate.promises.value(resonate.promises.get("factorial-3")) == 6


def test_fan_out_of_a_thousand_children_joined_in_order(resonate: Resonate) -> None:
    def square(ctx: Context, i: int) -> int:
        return i * i

    @resonate.register
    def fan(ctx: Context, n: int) -> Any:
        promises = []
        for i in range(n):
            promises.append((yield ctx.begin_run(square, i)))
        values = []
        for p in promises:
            values.append((yield p))
        return values

    values = fan.run("fan", 1000)
    assert values == [i * i for i in range(1000)]
    assert sum(values) == sum(i * i for i in range(1000))
    assert resonate.promises.get("fan.1000").state == "RESOLVED"


def test_recursion_five_hundred_deep(resonate: Resonate) -> None:
    @resonate.register
    def fact(ctx: Context, n: int) -> Any:
        if n <= 1:
            return 1
        return n * (yield ctx.run(fact, n - 1))

    assert fact.run("deep", 500) == math.factorial(500)


def test_plain_leaf_functions(resonate: Resonate) -> None:
    def add(ctx: Context, a: int, b: int) -> int:
        return a + b

    @resonate.register
    def double(ctx: Context, x: int) -> int:  # a registered plain function is a root too
        return 2 * x

    @resonate.register
    def total(ctx: Context) -> Any:
        a = yield ctx.run(add, 1, 2)
        b = yield ctx.run(add, a, b=10)
        return b

    assert total.run("total") == 13
    assert double.run("double", 21) == 42
    assert resonate.run("double-by-name", "double", 5) == 10


def test_rpc_and_detached_in_local_mode(resonate: Resonate) -> None:
    @resonate.register
    def greet(ctx: Context, name: str) -> str:
        return f"hello {name}"

    @resonate.register
    def caller(ctx: Context) -> Any:
        a = yield ctx.rpc(greet, "ada")
        b = yield ctx.rpc("greet", "bob")
        p = yield ctx.detached(greet, "cy").options(id="detached-cy")
        c = yield p
        return [a, b, c]

    assert caller.run("caller") == ["hello ada", "hello bob", "hello cy"]
    detached = resonate.promises.get("detached-cy")
    assert detached.tags["resonate:root"] == "detached-cy"  # its own call graph
    assert resonate.promises.get("caller.1").tags["resonate:root"] == "caller"
    assert greet.rpc("greet-rpc", "dee") == "hello dee"


def test_exceptions_round_trip_with_their_type(resonate: Resonate) -> None:
    def withdraw(ctx: Context, amount: int) -> int:
        raise InsufficientFunds("acct-1", amount - 10)

    @resonate.register
    def transfer(ctx: Context, amount: int) -> Any:
        try:
            yield ctx.run(withdraw, amount).options(retry_policy=Never())
        except InsufficientFunds as exc:
            return ["caught", exc.account, exc.short]
        return "not reached"

    @resonate.register
    def failing(ctx: Context) -> Any:
        yield ctx.run(withdraw, 15).options(retry_policy=Never())

    assert transfer.run("transfer", 100) == ["caught", "acct-1", 90]
    with pytest.raises(InsufficientFunds) as info:
        failing.run("failing")
    assert (info.value.account, info.value.short) == ("acct-1", 5)
    # the stored rejection carries the type, so a new handle rebuilds it too
    with pytest.raises(InsufficientFunds):
        resonate.get("failing").result(timeout=WAIT)


def test_non_json_values_round_trip(resonate: Resonate) -> None:
    def make(ctx: Context) -> Any:
        return {"pair": (1, 2), "tags": {"a", "b"}}

    @resonate.register
    def shapes(ctx: Context, t: tuple[int, int], s: frozenset[str]) -> Any:
        made = yield ctx.run(make)
        return (t, s, made)

    t, s, made = shapes.run("shapes", (3, 4), frozenset({"x"}))
    assert t == (3, 4) and type(t) is tuple
    assert s == frozenset({"x"})
    assert made == {"pair": (1, 2), "tags": {"a", "b"}} and type(made["pair"]) is tuple
    assert resonate.get("shapes").result(timeout=WAIT)[0] == (3, 4)


def test_retries_then_success(resonate: Resonate) -> None:
    calls: list[int] = []

    def flaky(ctx: Context) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return "ok"

    @resonate.register
    def job(ctx: Context) -> Any:
        return (yield ctx.run(flaky).options(retry_policy=Constant(delay=0.01)))

    assert job.run("job") == "ok"
    assert len(calls) == 3


def test_non_retryable_exceptions_and_never(resonate: Resonate) -> None:
    calls: list[str] = []

    def bad(ctx: Context, tag: str) -> None:
        calls.append(tag)
        raise ValueError(tag)

    @resonate.register
    def job(ctx: Context) -> Any:
        out = []
        for call in (ctx.run(bad, "nr").options(retry_policy=Constant(delay=0.01),
                                                 non_retryable_exceptions=(ValueError,)),
                     ctx.run(bad, "never").options(retry_policy=Never()),
                     ctx.run(bad, "twice").options(retry_policy=Constant(delay=0.01, max_retries=2))):
            try:
                yield call
            except ValueError as exc:
                out.append(str(exc))
        return out

    assert job.run("job") == ["nr", "never", "twice"]
    assert calls == ["nr", "never", "twice", "twice", "twice"]


def test_rerunning_a_completed_id_returns_the_stored_value(short_dir: str) -> None:
    db = os.path.join(short_dir, "again.db")
    calls: list[str] = []

    def step(ctx: Context) -> int:
        calls.append("step")
        return 7

    def make(r: Resonate) -> Any:
        @r.register
        def work(ctx: Context) -> Any:
            calls.append("work")
            return (yield ctx.run(step)) * 6
        return work

    with Resonate.local(path=db) as r1:
        work = make(r1)
        assert work.run("w") == 42
        assert work.run("w") == 42  # same instance
    assert calls == ["work", "step"]
    with Resonate.local(path=db) as r2:
        assert make(r2).run("w") == 42  # another process on the same file
    assert calls == ["work", "step"]


def test_sleep_resumes(resonate: Resonate) -> None:
    @resonate.register
    def nap(ctx: Context) -> Any:
        yield ctx.sleep(0.05)
        return "awake"

    assert nap.begin_run("nap").result(timeout=WAIT) == "awake"
    assert resonate.promises.get("nap.1").state == "RESOLVED"


def test_a_promise_nobody_resolves_times_out(resonate: Resonate) -> None:
    @resonate.register
    def wait(ctx: Context) -> Any:
        p = yield ctx.promise().options(timeout=0.05)
        try:
            yield p
        except PromiseTimedOut as exc:
            return f"gave up: {type(exc).__name__}"
        return "answered"

    assert wait.begin_run("wait").result(timeout=WAIT) == "gave up: PromiseTimedOut"
    assert resonate.promises.get("wait.1").state == "REJECTED_TIMEDOUT"


def test_dependencies(resonate: Resonate) -> None:
    resonate.set_dependency("db", {"answer": 42})

    def read(ctx: Context) -> Any:
        return ctx.get_dependency("db")["answer"]

    @resonate.register
    def job(ctx: Context) -> Any:
        assert ctx.get_dependency("missing", "dflt") == "dflt"
        return (yield ctx.run(read))

    assert job.run("job") == 42


def test_register_name_and_version(resonate: Resonate) -> None:
    @resonate.register(name="price", version=1)
    def price_v1(ctx: Context, n: int) -> int:
        return n

    @resonate.register(name="price", version=2)
    def price_v2(ctx: Context, n: int) -> int:
        return n * 100

    assert resonate.run("latest", "price", 3) == 300  # by name: the latest version
    assert price_v1.run("v1", 3) == 3
    assert price_v2.run("v2", 3) == 300
    assert resonate.options(version=1).run("by-option", "price", 3) == 3

    @resonate.register
    def caller(ctx: Context) -> Any:
        a = yield ctx.rpc("price", 1).options(version=1)
        b = yield ctx.rpc("price", 1)
        return [a, b]

    assert caller.run("caller") == [1, 100]
    with pytest.raises(ValueError):
        resonate.register(name="price", version=2)(lambda ctx, n: n)


def test_unknown_function_name(resonate: Resonate) -> None:
    with pytest.raises(NotRegistered):
        resonate.run("x", "nope")
    with pytest.raises(NotRegistered):
        resonate.options(version=9).run("y", "price-less")

    @resonate.register
    def caller(ctx: Context) -> Any:
        yield ctx.rpc("nope")

    with pytest.raises(NotRegistered) as info:
        caller.run("caller")
    assert "nope" in str(info.value)
