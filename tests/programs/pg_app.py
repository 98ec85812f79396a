"""The PostgreSQL end-to-end test's app: a workflow of three durable steps, run by `resonate worker`."""

from __future__ import annotations

from resonate import Context, Resonate

resonate = Resonate.local()  # never started: `resonate worker` runs these functions for a daemon


def add(ctx: Context, a: int, b: int) -> int:
    return a + b


def times(ctx: Context, a: int, b: int) -> int:
    return a * b


@resonate.register
def pipeline(ctx: Context, x: int) -> int:
    a = yield ctx.run(add, x, 1)
    b = yield ctx.run(times, a, 10)
    c = yield ctx.run(add, b, 5)
    return c
