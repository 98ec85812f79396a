"""The retry and fork tests' app: three steps, each appending its name to the file ORDER_LOG names (the
side effects the tests count); the charge step raises KeyError while ORDER_BROKEN is set (the bug a
user fixes before retrying: a worker started without it has the fix)."""

from __future__ import annotations

import os
import time
from typing import Any

from resonate import Constant, Context, NonRetryable, Resonate

resonate = Resonate.local()


class Broken(NonRetryable):
    """The bug: fails the step at once (no retries), so the workflow is rejected."""


def step(ctx: Context, name: str) -> str:
    with open(os.environ["ORDER_LOG"], "a") as f:
        f.write(name + "\n")
    if name == "charge" and os.environ.get("ORDER_BROKEN"):
        raise Broken(f"KeyError: 'reviewer' while charging order {name}")
    return name.upper()


@resonate.register
def order(ctx: Context, n: int) -> Any:
    a = yield ctx.run(step, "reserve")
    b = yield ctx.run(step, "charge")
    c = yield ctx.run(step, "ship")
    return [a, b, c, n]


@resonate.register
def held(ctx: Context, n: int) -> Any:
    """Waits on a person: still running until someone resolves ``<id>.1``."""
    p = yield ctx.promise()
    return (yield p)


@resonate.register
def gated(ctx: Context, n: int) -> Any:
    """A step, a wait on a person (``<id>.2``), another step: what ``tree --follow`` watches unfold."""
    a = yield ctx.run(step, "reserve")
    approval = yield ctx.promise()
    decision = yield approval
    b = yield ctx.run(step, "ship")
    return [a, decision, b, n]


def gate(ctx: Context, path: str) -> str:
    """Waits (bounded) until the test creates ``path``: a step that is running while the test looks."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)
    return "open"


@resonate.register
def gated_by_file(ctx: Context, path: str) -> Any:
    """A step, a step that runs until ``path`` exists, another step."""
    a = yield ctx.run(step, "reserve")
    g = yield ctx.run(gate, path)
    b = yield ctx.run(step, "ship")
    return [a, g, b]


def flaky(ctx: Context, path: str) -> int:
    """Fails with ConnectionError until its third attempt (attempts counted in ``path``)."""
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        n = len(f.read())
    if n < 3:
        raise ConnectionError(f"refused on attempt {n}")
    return n


@resonate.register
def flaky_flow(ctx: Context, path: str) -> Any:
    return (yield ctx.run(flaky, path).options(retry_policy=Constant(delay=1.5, max_retries=5)))
