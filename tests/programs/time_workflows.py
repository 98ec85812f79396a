"""Programs for the durability tests of time (tests/test_time_durable.py), killed and restarted by them.

    python time_workflows.py sleep --db F --side S --id ID --secs 0.5     # local mode, a file store
    python time_workflows.py retry --db F --side S --id ID --delay 1 --fail 3
    python time_workflows.py worker --socket SOCK --group G [--skew S]    # a remote worker (clock S off)

``sleep`` writes "sleeping" before its durable sleep and "woke" after it; ``retry`` runs one step that
writes "attempt N" (its attempt number) to the side file and fails its first ``--fail`` attempts.
Both print the result as one JSON line when the workflow finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any

from resonate import Constant, Context, Resonate


def append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def skew_wall_clock(secs: float) -> None:
    """Make every wall-clock reading in this process ``secs`` off, as on a host whose clock is wrong (the
    monotonic clock, which has no epoch, is left alone)."""
    real_ns, real = time.time_ns, time.time
    time.time_ns = lambda: real_ns() + int(secs * 1e9)  # type: ignore[assignment]
    time.time = lambda: real() + secs  # type: ignore[assignment]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["sleep", "retry", "worker"])
    parser.add_argument("--db")
    parser.add_argument("--side")
    parser.add_argument("--id", default="wf")
    parser.add_argument("--secs", type=float, default=0.5)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--fail", type=int, default=3)
    parser.add_argument("--socket")
    parser.add_argument("--group", default="sleepers")
    parser.add_argument("--skew", type=float, default=0.0, help="this process's wall clock is off by SECONDS")
    args = parser.parse_args(argv)
    if args.skew:
        skew_wall_clock(args.skew)

    if args.mode == "worker":
        resonate = Resonate.remote(group=args.group, socket=args.socket, ttl=2)
    else:
        resonate = Resonate.local(path=args.db)

    @resonate.register
    def nap(ctx: Context, secs: float) -> Any:
        if args.side:
            append(args.side, "sleeping")
        yield ctx.sleep(secs)
        if args.side:
            append(args.side, "woke")
        return time.time()  # when the code after the sleep ran: the test compares it to the deadline

    def flaky(ctx: Context) -> str:
        append(args.side, f"attempt {ctx.info.attempt}")
        if ctx.info.attempt <= args.fail:
            raise ConnectionError(f"attempt {ctx.info.attempt} failed")
        return "ok"

    @resonate.register
    def retrying(ctx: Context) -> Any:
        return (yield ctx.run(flaky).options(retry_policy=Constant(delay=args.delay)))

    if args.mode == "worker":
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        resonate.start()
        print("ready", flush=True)
        done.wait()
        resonate.stop()
        return 0

    with resonate:
        if args.mode == "sleep":
            result = nap.run(args.id, args.secs)
        else:
            result = retrying.run(args.id)
    print(json.dumps({"result": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
