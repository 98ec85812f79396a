"""Human in the loop, local mode: a workflow waits on ``ctx.promise()`` until someone outside completes it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from resonate_daemon.protocol.records import Promise

from resonate import Context, PromiseCanceled, PromiseRejected, Resonate, codec

WAIT = 30.0


class Refused(Exception):
    pass


def wait_until(found: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Poll ``found`` until it returns something truthy, for at most ``timeout`` seconds."""
    tick = threading.Event()
    for _ in range(int(timeout / 0.005)):
        value = found()
        if value:
            return value
        tick.wait(0.005)
    raise AssertionError("condition not met in time")


@pytest.fixture
def resonate() -> Iterator[Resonate]:
    r = Resonate.local()

    @r.register
    def approval(ctx: Context, order: str) -> Any:
        p = yield ctx.promise(data={"question": f"approve {order}?"})
        try:
            v = yield p
        except Refused as exc:
            return {"order": order, "refused": str(exc)}
        return {"order": order, "answer": v}

    try:
        yield r
    finally:
        r.stop()


def pending_under(r: Resonate, root: str) -> Promise | None:
    found, _ = r.promises.search(f"{root}.*", state="pending")
    return found[0] if found else None


def test_resolve_from_another_thread(resonate: Resonate) -> None:
    handle = resonate.begin_run("order-1", "approval", "order-1")
    answered: list[Promise] = []

    def human() -> None:
        p = wait_until(lambda: pending_under(resonate, "order-1"))
        assert p.id == "order-1.1" and p.tags["resonate:root"] == "order-1"
        answered.append(resonate.promises.resolve(p.id, data=json.dumps({"approved": True, "by": "ada"})))

    t = threading.Thread(target=human)
    t.start()
    assert handle.result(timeout=WAIT) == {"order": "order-1", "answer": {"approved": True, "by": "ada"}}
    t.join(WAIT)
    assert answered[0].state == "RESOLVED"
    assert pending_under(resonate, "order-1") is None
    # the question the workflow asked travels in the promise's param
    assert codec.decode(resonate.promises.get("order-1.1").param) == {"question": "approve order-1?"}


def test_resolve_by_id(resonate: Resonate) -> None:
    from resonate_daemon.errors import PromiseNotFound

    def exists() -> bool:
        try:
            return resonate.promises.get("order-2.1").state == "PENDING"
        except PromiseNotFound:
            return False

    handle = resonate.begin_run("order-2", "approval", "order-2")
    wait_until(exists)
    resonate.promises.resolve("order-2.1", data=json.dumps(7))
    assert handle.result(timeout=WAIT) == {"order": "order-2", "answer": 7}


def test_reject_is_an_exception_in_the_function(resonate: Resonate) -> None:
    handle = resonate.begin_run("order-3", "approval", "order-3")
    p = wait_until(lambda: pending_under(resonate, "order-3"))
    resonate.promises.reject(p.id, data=json.dumps({"reason": "over budget"}))
    # JSON data is not an exception this process can rebuild: the function sees PromiseRejected
    with pytest.raises(PromiseRejected):
        handle.result(timeout=WAIT)


def test_reject_with_an_exception_keeps_its_type(resonate: Resonate) -> None:
    handle = resonate.begin_run("order-4", "approval", "order-4")
    p = wait_until(lambda: pending_under(resonate, "order-4"))
    resonate.promises.reject(p.id, data=Refused("too expensive"))
    assert handle.result(timeout=WAIT) == {"order": "order-4", "refused": "too expensive"}


def test_cancel_is_promise_canceled(resonate: Resonate) -> None:
    @resonate.register
    def wait_for_cancel(ctx: Context) -> Any:
        p = yield ctx.promise()
        try:
            yield p
        except PromiseCanceled as exc:
            return f"canceled: {exc}"
        return "not canceled"

    handle = wait_for_cancel.begin_run("order-5")
    p = wait_until(lambda: pending_under(resonate, "order-5"))
    resonate.promises.cancel(p.id)
    result = handle.result(timeout=WAIT)
    assert result.startswith("canceled: ") and "order-5.1" in result
    assert resonate.promises.get("order-5.1").state == "REJECTED_CANCELED"


def test_cancel_reaching_the_caller_uncaught(resonate: Resonate) -> None:
    @resonate.register
    def uncaught(ctx: Context) -> Any:
        p = yield ctx.promise()
        return (yield p)

    handle = uncaught.begin_run("order-6")
    p = wait_until(lambda: pending_under(resonate, "order-6"))
    resonate.promises.cancel(p.id)
    with pytest.raises(PromiseCanceled):
        handle.result(timeout=WAIT)
    assert resonate.promises.get("order-6").state == "REJECTED"


def test_resolve_rejects_data_that_is_not_json(resonate: Resonate) -> None:
    handle = resonate.begin_run("order-7", "approval", "order-7")
    p = wait_until(lambda: pending_under(resonate, "order-7"))
    with pytest.raises(ValueError):
        resonate.promises.resolve(p.id, data="not json")
    resonate.promises.resolve(p.id, data='"yes"')
    assert handle.result(timeout=WAIT)["answer"] == "yes"
