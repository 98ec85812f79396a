"""A worker for the remote tests: ``python remote_app.py SOCKET GROUP``.

``steps(n, side)`` appends "i pid" to the file ``side`` for each of n steps (each step 40 ms of work),
so a test can see which worker ran which step, and how often.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from resonate import Context, Resonate

resonate = Resonate.remote(group=sys.argv[2], socket=sys.argv[1], ttl=2)


def work(ctx: Context, i: int, side: str, pause: float = 0.04) -> int:
    time.sleep(pause)  # the workload: a step that takes a while, so a kill lands mid-workflow
    with open(side, "a") as f:
        f.write(f"{i} {os.getpid()}\n")
        f.flush()
        os.fsync(f.fileno())
    return i


@resonate.register
def compute(ctx: Context, n: int):
    return {"square": n * n, "worker": os.getpid()}


@resonate.register
def steps(ctx: Context, n: int, side: str, pause: float = 0.04):
    total = 0
    for i in range(n):
        total += yield ctx.run(work, i, side, pause)
    return total


@resonate.register
def napper(ctx: Context, secs: float, side: str):
    first = yield ctx.run(work, 0, side, 0.0)
    yield ctx.sleep(secs)  # a short sleep: it waits in this worker (parked), holding the task
    second = yield ctx.run(work, 1, side, 0.0)
    return [first, second]


@resonate.register
def factorial(ctx: Context, n: int):
    if n <= 1:
        return 1
    return n * (yield ctx.rpc(factorial, n - 1).options(target=f"poll://any@{sys.argv[2]}"))


if __name__ == "__main__":
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    resonate.start()
    print("ready", flush=True)
    done.wait()
    resonate.stop()
