"""Factorial, the durable way: every recursive call is a step with its own promise.

    python examples/factorial.py            # 120
    python examples/factorial.py 10         # 3628800
    python examples/factorial.py 10 --db factorial.db

With ``--db`` the promises live in a SQLite file: run it twice and the second run returns the stored
result without computing anything; kill it halfway and the next run resumes where it stopped.
"""

from __future__ import annotations

import argparse

from resonate import Context, Resonate

resonate = Resonate.local()


@resonate.register
def factorial(ctx: Context, n: int) -> int:
    if n <= 1:
        return 1
    r = yield ctx.run(factorial, n - 1).options(id=f"factorial-{n-1}")
    return n * r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=5)
    parser.add_argument("--db", help="SQLite file for the promises (default: in memory)")
    args = parser.parse_args()

    # The module-level instance (what `resonate invoke factorial 5 --app examples/factorial.py` loads)
    # keeps promises in memory; --db runs the same function on a file instead.
    app = Resonate.local(path=args.db) if args.db else resonate
    fn = app.register(factorial) if args.db else factorial
    with app:
        result = fn.run(f"factorial-{args.n}", n=args.n)
    print(f"factorial({args.n}) = {result}")


if __name__ == "__main__":
    main()
