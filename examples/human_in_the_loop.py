"""Human in the loop: a workflow stops at a durable promise until a person answers it.

    python examples/human_in_the_loop.py              # a reviewer thread approves
    python examples/human_in_the_loop.py --deny       # ... or denies

The workflow asks for approval with ``ctx.promise()`` and waits on it. Waiting holds no memory: the
execution suspends and is replayed when the promise completes. Here a second thread plays the reviewer:
it finds the pending promise by searching, and resolves it. A person would do the same from a terminal,
with the workflow on a daemon (examples/human_in_the_loop_remote/):
``resonate promises resolve expense-42.1 --data '{"approved": true, "reviewer": "ada"}'``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

from resonate import Context, Resonate, codec

resonate = Resonate.local()


def record(ctx: Context, expense_id: str, decision: str) -> str:
    return f"expense {expense_id} {decision}"


@resonate.register
def expense(ctx: Context, expense_id: str, amount: int) -> Any:
    # A promise only the outside world completes; its data is the question for the reviewer.
    approval = yield ctx.promise(data={"question": f"approve {amount} EUR for {expense_id}?"})
    answer = yield approval  # suspends here until someone resolves it
    decision = "approved" if answer["approved"] else "denied"
    return (yield ctx.run(record, expense_id, f"{decision} by {answer['reviewer']}"))


def reviewer(approve: bool) -> None:
    """Find the pending approval promise and answer it, as a person at a terminal would."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pending, _ = resonate.promises.search("expense-*", state="pending")
        # The approval promise carries a question; the workflow's own promise (pending too) its arguments.
        questions = [(p, q) for p in pending if p.param.data
                     and isinstance(q := codec.decode(p.param), dict) and "question" in q]
        if questions:
            p, asked = questions[0]
            question = asked["question"]
            print(f"[reviewer] promise {p.id}: {question} -> {'yes' if approve else 'no'}")
            resonate.promises.resolve(p.id, data=json.dumps({"approved": approve, "reviewer": "ada"}))
            return
        time.sleep(0.05)  # nobody asked yet
    print("[reviewer] nothing to review")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deny", action="store_true", help="the reviewer says no")
    args = parser.parse_args()

    threading.Thread(target=reviewer, args=(not args.deny,), daemon=True).start()
    with resonate:
        print(f"[main] {expense.run('expense-42', 'expense-42', 120)}")


if __name__ == "__main__":
    main()
