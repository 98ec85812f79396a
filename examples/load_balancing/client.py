"""Invoke `compute` 30 times on the group "workers" and show how the work was shared.

    python examples/load_balancing/client.py [COUNT]
"""

from __future__ import annotations

import collections
import os
import sys
import uuid

from resonate import Resonate

resonate = Resonate.remote(group="client", socket=os.environ.get("RESONATE_SOCKET"))


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    run = uuid.uuid4().hex[:6]
    workers = resonate.options(target="poll://any@workers")
    handles = [workers.begin_rpc(f"compute-{run}-{i}", "compute", i) for i in range(count)]
    results = [h.result(timeout=60) for h in handles]
    assert [r["square"] for r in results] == [i * i for i in range(count)]
    shares = collections.Counter(r["worker"] for r in results)
    for worker, n in sorted(shares.items()):
        print(f"worker pid {worker}: {n} invocations")
    print(f"factorial(10) = {workers.rpc(f'factorial-{run}', 'factorial', 10)}")
    resonate.stop()


if __name__ == "__main__":
    main()
