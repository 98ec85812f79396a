"""The CLI tests' app: what a user's module looks like (a module-level Resonate and registered functions)."""

from __future__ import annotations

from typing import Any

from resonate import Context, Resonate

resonate = Resonate.local()  # in memory and never started: the CLI runs these functions on its own backend


@resonate.register
def factorial(ctx: Context, n: int) -> int:
    if n <= 1:
        return 1
    r = yield ctx.run(factorial, n - 1).options(id=f"cli-factorial-{n - 1}")
    return n * r


@resonate.register
def approve(ctx: Context, order: int) -> Any:
    """Waits on a person: ``resonate promises resolve <id>.1 --data '{"approved": true}'``."""
    p = yield ctx.promise(data={"question": f"approve order {order}?"})
    decision = yield p
    return {"order": order, "approved": bool(decision.get("approved"))}


@resonate.register
def fail(ctx: Context, reason: str) -> Any:
    """A generator function: not retried (it replays), so its error rejects the execution at once."""
    if reason:
        raise ValueError(reason)
    yield ctx.sleep(0)


@resonate.register
def greet(ctx: Context, name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"
