"""A worker with a one-second lease, for the fencing test: each step of ``paced`` logs its start and end
with this process's pid to PACED_LOG; step 1 runs until the file PACED_GATE exists (bounded)."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from resonate import Context, Resonate

resonate = Resonate.remote(group="paced", ttl=1)


def log(line: str) -> None:
    with open(os.environ["PACED_LOG"], "a") as f:
        f.write(f"{line} {os.getpid()}\n")


def tick(ctx: Context, i: int) -> int:
    log(f"start {i}")
    if i == 1:
        deadline = time.monotonic() + 60
        while not os.path.exists(os.environ["PACED_GATE"]) and time.monotonic() < deadline:
            time.sleep(0.02)  # the step's own work: waiting for the test to open the gate
    log(f"end {i}")
    return i


@resonate.register
def paced(ctx: Context, n: int) -> Any:
    total = 0
    for i in range(n):
        total += yield ctx.run(tick, i)
    return total


if __name__ == "__main__":
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    resonate.start()
    print("ready", flush=True)
    while not stop.wait(0.5):  # wake now and then so the signal handler runs
        pass
    resonate.stop()
