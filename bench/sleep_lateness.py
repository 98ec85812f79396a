"""Lateness of concurrent durable sleeps through a real daemon: deadline to resume, per sleep.

    python bench/sleep_lateness.py [--n 1000] [--secs 1.0] [--durability full|normal]

Starts a daemon (Unix socket, SQLite file) and ``--workers`` worker processes (default 1); a client invokes N executions at
once, each of which sleeps ``secs`` durably (the execution suspends; the scheduler resolves the sleep
at its deadline; a resume task wakes it) and returns the wall time at which the code after the sleep
ran. Lateness = that time - the sleep promise's timeout. Prints one JSON line (ms).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "..", "tests", "programs", "time_workflows.py")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--secs", type=float, default=1.0)
    ap.add_argument("--durability", default="full")
    ap.add_argument("--workers", type=int, default=1, help="worker processes")
    args = ap.parse_args()
    d = tempfile.mkdtemp(dir="/tmp", prefix="rs-")
    sock = os.path.join(d, "s.sock")
    daemon = subprocess.Popen([sys.executable, "-m", "resonate_daemon", "--socket", sock, "--db",
                               os.path.join(d, "r.db"), "--durability", args.durability], stderr=subprocess.PIPE)
    assert daemon.stderr is not None
    daemon.stderr.readline()  # the "listening" line
    workers = [subprocess.Popen([sys.executable, APP, "worker", "--socket", sock, "--group", "sleepers"],
                                stdout=subprocess.PIPE) for _ in range(args.workers)]
    for w in workers:
        assert w.stdout is not None
        w.stdout.readline()
    from resonate import Resonate

    r = Resonate.remote(group="bench-client", socket=sock, workers=16)
    try:
        target = r.options(target="poll://any@sleepers")
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            handles = list(pool.map(lambda i: target.begin_rpc(f"nap-{i}", "nap", args.secs), range(args.n)))
        submitted = time.perf_counter() - start
        woke = [h.result(timeout=300) for h in handles]
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            deadlines = list(pool.map(lambda i: r.promises.get(f"nap-{i}.1").timeout, range(args.n)))
        late = [w * 1000 - dl for w, dl in zip(woke, deadlines, strict=True)]
        print(json.dumps({
            "system": "resonate-daemon", "bench": "sleep_lateness", "n": args.n, "sleep_s": args.secs,
            "durability": args.durability, "workers": args.workers, "submit_s": round(submitted, 2),
            "lateness_ms_median": round(statistics.median(late), 1), "lateness_ms_p99": round(pct(late, 99), 1),
            "lateness_ms_max": round(max(late), 1), "lateness_ms_min": round(min(late), 1),
            "early": sum(1 for x in late if x < 0),
        }))
    finally:
        r.stop()
        for w in workers:
            w.send_signal(signal.SIGTERM)
            w.wait(timeout=30)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
