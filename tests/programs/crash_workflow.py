"""A durable workflow that the crash tests SIGKILL and restart (tests/test_sdk_crash.py).

It runs ``--steps`` sequential steps under the promise ``--id`` in a file store; each step appends
"step i" to the side file and fsyncs it before its result is recorded, so the side file shows what ran
and how often. A restart with the same arguments must finish the workflow, re-running at most the one
step that was in flight when the process died.

    python crash_workflow.py --db /tmp/x/r.db --side /tmp/x/side.txt --id wf-1 --steps 20

``--pause-in K`` blocks forever inside step K after its line is written (the step is in flight);
``--pause-before K`` writes "paused K" and blocks before step K writes anything (step K-1 is recorded);
``--pace S`` makes every step take S seconds, for kills at arbitrary points.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

from resonate_daemon.errors import StoreLocked

from resonate import Context, Resonate

EXIT_OK = 0
EXIT_LOCKED = 3  # another live process holds the database file


def append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--side", required=True)
    parser.add_argument("--id", default="wf")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--pause-in", type=int, default=0)
    parser.add_argument("--pause-before", type=int, default=0)
    parser.add_argument("--pace", type=float, default=0.0)
    args = parser.parse_args(argv)

    try:
        resonate = Resonate.local(path=args.db)
    except StoreLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOCKED

    forever = threading.Event()

    def step(ctx: Context, i: int) -> int:
        if i == args.pause_before:
            append(args.side, f"paused {i}")
            forever.wait()
        if args.pace:
            time.sleep(args.pace)  # the workload's own duration, not synchronisation
        append(args.side, f"step {i}")
        if i == args.pause_in:
            forever.wait()
        return i * i

    @resonate.register
    def workflow(ctx: Context, n: int) -> Any:
        total = 0
        for i in range(1, n + 1):
            total += yield ctx.run(step, i).options(id=f"{ctx.id}.step-{i}")
        return total

    with resonate:
        result = workflow.run(args.id, args.steps)
    print(json.dumps({"result": result}))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
