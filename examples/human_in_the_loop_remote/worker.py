"""Human in the loop across processes: this worker runs the workflow; a person answers from anywhere.

    resonate serve &                                         # the daemon, on its default Unix socket
    python examples/human_in_the_loop_remote/worker.py &     # one or more workers of group "workers"
    python examples/human_in_the_loop_remote/client.py expense-7 120
    resonate promises resolve expense-7.1 --data '{"approved": true, "reviewer": "ada"}'

While it waits for the answer the execution is suspended: no worker holds it in memory, and any worker
of the group may be the one that resumes it, even one started after the others were killed.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from resonate import Context, Resonate

resonate = Resonate.remote(group="workers", socket=os.environ.get("RESONATE_SOCKET"))


def record(ctx: Context, expense_id: str, decision: str) -> str:
    return f"expense {expense_id} {decision}"


@resonate.register
def expense(ctx: Context, expense_id: str, amount: int) -> Any:
    # A promise only the outside world completes; its data is the question for the reviewer.
    approval = yield ctx.promise(data={"question": f"approve {amount} EUR for {expense_id}?"})
    answer = yield approval  # suspends here until someone resolves it, from any process
    decision = "approved" if answer["approved"] else "denied"
    return (yield ctx.run(record, expense_id, f"{decision} by {answer['reviewer']}"))


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
