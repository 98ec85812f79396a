"""W1 and W2 of BENCHMARKS.md for resonate in local mode on a SQLite file (or a PostgreSQL database);
one JSON line per run.

    python bench/local_w1_w2.py [--durability full|normal] [--n 2000] [--wf 500] [--db postgresql://...]

``--db``: an empty PostgreSQL database (or schema, by the URL's search_path) instead of a fresh file.

W1: one workflow of n sequential durable steps (and n/4, for the growth exponent k).
W2: `wf` one-step workflows, each started and awaited before the next.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import tempfile
import time

from resonate import Context, Resonate


def inc(ctx: Context, i: int) -> int:
    return i + 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--durability", default="full")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--wf", type=int, default=500)
    ap.add_argument("--db", default=None, help="an empty postgresql:// database instead of a fresh SQLite file")
    args = ap.parse_args()
    db = args.db or os.path.join(tempfile.mkdtemp(dir="/tmp", prefix="rl-"), "bench.db")
    r = Resonate.local(path=db, durability=args.durability)

    @r.register
    def steps(ctx: Context, n: int):
        x = 0
        for _ in range(n):
            x = yield ctx.run(inc, x)
        return x

    @r.register
    def one(ctx: Context, i: int):
        return (yield ctx.run(inc, i))

    def w1(n: int, id: str) -> float:
        t = time.perf_counter()
        assert steps.run(id, n) == n
        return time.perf_counter() - t

    small, big = args.n // 4, args.n
    t_small, t_big = w1(small, "w1-small"), w1(big, "w1-big")
    k = math.log(t_big / t_small) / math.log(big / small)
    wf = []
    for i in range(args.wf):
        t = time.perf_counter()
        assert one.run(f"w2-{i}", i) == i + 1
        wf.append((time.perf_counter() - t) * 1000)
    r.stop()
    wf.sort()
    print(json.dumps({
        "system": "resonate-local" + (" on PostgreSQL" if args.db else ""), "ok": True,
        "durability": (f"synchronous_commit={'on' if args.durability == 'full' else 'off'}" if args.db
                       else f"WAL, synchronous={args.durability.upper()}"),
        "W1_n": big, "W1_us_per_step": round(t_big / big * 1e6, 1), "W1_steps_per_s": round(big / t_big),
        "W1_us_per_step_small_n": round(t_small / small * 1e6, 1), "W1_growth_k": round(k, 2),
        "W2_n": args.wf, "W2_ms_median": round(statistics.median(wf), 3),
        "W2_ms_mean": round(statistics.fmean(wf), 3), "W2_ms_p90": round(wf[int(len(wf) * 0.9) - 1], 3),
        "W2_wf_per_s": round(1000 / statistics.fmean(wf)),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
