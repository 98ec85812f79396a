"""The chaos run's worker: ``python chaos_app.py SOCKET GROUP SIDE_FILE``.

Every plain step appends ``"<promise id> <os pid>"`` to SIDE_FILE (O_APPEND, fsync) before it returns,
so the test can count how often each step's side effect ran and which process ran it. The workflow mixes
what the engine must survive: a local step, recursion over ctx.rpc (each level on any worker) and over
ctx.run (generators in this process), fan-out with begin_run/begin_rpc, a durable sleep, a step that fails
at random and is retried by a Constant policy, and a promise only the outside world resolves.
tests/chaos/test_chaos_run.py computes the value an uninterrupted run returns, independently of this file.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from typing import Any

from resonate import Constant, Context, Resonate

SOCKET, GROUP, SIDE = sys.argv[1], sys.argv[2], sys.argv[3]
TARGET = f"poll://any@{GROUP}"

resonate = Resonate.remote(group=GROUP, socket=SOCKET, ttl=2)


def effect(ctx: Context) -> None:
    fd = os.open(SIDE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.id} {os.getpid()}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def work(ctx: Context, x: int, pause: float) -> int:
    time.sleep(pause)  # the workload: a step that takes a while, so kills land mid-step
    effect(ctx)
    return x * 3 + 1


def flaky(ctx: Context, x: int, p: float) -> int:
    if random.random() < p:
        raise RuntimeError(f"flaky step {ctx.id} failed on purpose")
    effect(ctx)
    return x + 100


def mul(ctx: Context, a: int, b: int) -> int:
    effect(ctx)
    return a * b


def add(ctx: Context, a: int, b: int) -> int:
    effect(ctx)
    return a + b


@resonate.register
def remote_work(ctx: Context, x: int) -> int:
    effect(ctx)
    return x * x


@resonate.register
def fact(ctx: Context, n: int):  # type: ignore[no-untyped-def]
    if n <= 1:
        return 1
    r = yield ctx.rpc(fact, n - 1).options(target=TARGET)
    return (yield ctx.run(mul, n, r))


def total(ctx: Context, n: int):  # type: ignore[no-untyped-def]
    if n <= 0:
        return 0
    r = yield ctx.run(total, n - 1)
    return (yield ctx.run(add, n, r))


@resonate.register
def workflow(ctx: Context, i: int, spec: dict[str, Any]):  # type: ignore[no-untyped-def]
    out: dict[str, Any] = {"step": (yield ctx.run(work, i, 0.01))}
    out["fact"] = yield ctx.rpc(fact, spec["fact"]).options(target=TARGET)
    out["total"] = yield ctx.run(total, spec["total"])
    started = []
    for j in range(spec["fan"]):
        started.append((yield ctx.begin_run(work, i + j, 0.005)))
        started.append((yield ctx.begin_rpc(remote_work, i + j).options(target=TARGET)))
    fan = []
    for p in started:
        fan.append((yield p))
    out["fan"] = fan
    if spec["sleep_ms"]:
        yield ctx.sleep(spec["sleep_ms"] / 1000)
    out["flaky"] = yield ctx.run(flaky, i, spec["p"]).options(retry_policy=Constant(delay=0.02, max_retries=200))
    if spec["human"]:
        approval = yield ctx.promise(id=f"{ctx.id}.human")
        out["human"] = yield approval
    return out


if __name__ == "__main__":
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    resonate.start()
    print("ready", flush=True)
    done.wait()
    resonate.stop()
