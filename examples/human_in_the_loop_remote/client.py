"""Start an expense approval on the group "workers" and wait for its outcome.

    python examples/human_in_the_loop_remote/client.py [EXPENSE_ID] [AMOUNT]

It prints, on stderr, the command that answers the approval, and on stdout the workflow's result once a
person (or a script) has run it.
"""

from __future__ import annotations

import os
import sys

from resonate import Resonate

resonate = Resonate.remote(group="client", socket=os.environ.get("RESONATE_SOCKET"))


def main() -> None:
    expense_id = sys.argv[1] if len(sys.argv) > 1 else "expense-7"
    amount = int(sys.argv[2]) if len(sys.argv) > 2 else 120
    handle = resonate.options(target="poll://any@workers").begin_rpc(expense_id, "expense", expense_id, amount)
    print(f"[client] waiting for a reviewer: resonate promises resolve {expense_id}.1 "
          """--data '{"approved": true, "reviewer": "ada"}'""", file=sys.stderr, flush=True)
    print(f"[client] {handle.result(timeout=600)}")
    resonate.stop()


if __name__ == "__main__":
    main()
