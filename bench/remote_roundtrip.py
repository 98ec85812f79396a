"""Invocation round trip through the daemon: client rpc -> worker -> result, N times in sequence.

    python bench/remote_roundtrip.py [--n 1000] [--durability full|normal] [--steps 2000]

Starts a real daemon (Unix socket, SQLite file) and one worker process; prints one JSON line with the
median and p99 round trip (ms), and durable steps per second inside one remote execution.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "..", "tests", "programs", "remote_app.py")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--durability", default="full")
    args = ap.parse_args()
    d = tempfile.mkdtemp(dir="/tmp", prefix="rb-")
    sock = os.path.join(d, "s.sock")
    daemon = subprocess.Popen([sys.executable, "-m", "resonate_daemon", "--socket", sock, "--db",
                               os.path.join(d, "r.db"), "--durability", args.durability],
                              stderr=subprocess.PIPE)
    assert daemon.stderr is not None
    daemon.stderr.readline()  # the "listening" line
    worker = subprocess.Popen([sys.executable, APP, sock, "bench"], stdout=subprocess.PIPE)
    assert worker.stdout is not None
    worker.stdout.readline()
    from resonate import Resonate

    r = Resonate.remote(group="bench-client", socket=sock)
    try:
        target = r.options(target="poll://any@bench")
        for i in range(20):  # warm up connections and caches
            target.rpc(f"warm-{i}", "compute", i)
        times = []
        for i in range(args.n):
            t = time.perf_counter()
            assert target.rpc(f"rt-{i}", "compute", i)["square"] == i * i
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        side = os.path.join(d, "side.txt")
        t = time.perf_counter()
        total = target.rpc("steps-run", "steps", args.steps, side, 0)
        dt = time.perf_counter() - t
        assert total == sum(range(args.steps))
        print(json.dumps({
            "system": "resonate-daemon", "durability": args.durability, "n": args.n, "ok": True,
            "roundtrip_ms_median": round(statistics.median(times), 3),
            "roundtrip_ms_p90": round(times[int(len(times) * 0.90) - 1], 3),
            "roundtrip_ms_p99": round(times[int(len(times) * 0.99) - 1], 3),
            "remote_steps": args.steps, "remote_us_per_step": round(dt / args.steps * 1e6, 1),
            "remote_steps_per_s": round(args.steps / dt, 1),
        }))
    finally:
        r.stop()
        worker.terminate()
        daemon.terminate()
        worker.wait()
        daemon.wait()


if __name__ == "__main__":
    main()
