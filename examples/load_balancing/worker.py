"""A worker of the group "workers": run three of these, then client.py.

    resonate serve &                     # the daemon, on its default Unix socket
    python examples/load_balancing/worker.py   # x3, in three terminals
    python examples/load_balancing/client.py

Kill any worker with SIGKILL while it runs something: the execution finishes on another worker.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from resonate import Context, Resonate

resonate = Resonate.remote(group="workers", socket=os.environ.get("RESONATE_SOCKET"))


def square(ctx: Context, n: int) -> dict[str, int]:
    return {"n": n, "square": n * n, "worker": os.getpid()}


@resonate.register
def compute(ctx: Context, n: int):
    """One durable step per call; which worker ran it is part of the answer."""
    return (yield ctx.run(square, n))


@resonate.register
def factorial(ctx: Context, n: int):
    """Recursive, each level an rpc that any worker of the group may take."""
    if n <= 1:
        return 1
    return n * (yield ctx.rpc(factorial, n - 1).options(target="poll://any@workers"))


def main() -> None:
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    resonate.start()
    print(f"worker {resonate.pid} (pid {os.getpid()}) ready", file=sys.stderr, flush=True)
    done.wait()
    resonate.stop()


if __name__ == "__main__":
    main()
