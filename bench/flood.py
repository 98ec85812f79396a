#!/usr/bin/env python3
"""/ping over the Unix socket during a slowloris flood on TCP: the daemon at nofile=1024, N half-sent
TCP connections (default 1,200: more than it has descriptors), then M pings, timed one by one.

    python bench/flood.py [--connections 1200] [--pings 200] [--runs 3]

Prints, per run and overall: ping p50/p99 in ms (against the same pings with no flood, interleaved),
the daemon's log size, and its descriptors held during the flood. A figure for the README's
Reliability section; the test (tests/test_connection_hygiene.py) asserts behaviour, not time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from daemon_proc import Daemon, free_port, raw_ping, slowloris  # noqa: E402


def ping(path: str) -> float:
    status, started, ended = raw_ping(path, timeout=10)
    assert status == 200
    return (ended - started) * 1000


def run(connections: int, pings: int, flood: bool) -> dict[str, float]:
    port = free_port()
    d = Daemon("--http", f"127.0.0.1:{port}", "--token", "t" * 40)
    d.preexec_fn = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    d.start()
    socks = []
    try:
        if flood:
            socks = slowloris(port, connections)
        assert d.proc is not None
        fds = len(os.listdir(f"/proc/{d.proc.pid}/fd"))
        times = sorted(ping(d.socket) for _ in range(pings))
        return {"p50": statistics.median(times), "p99": times[int(len(times) * 0.99) - 1],
                "log": os.path.getsize(d.log), "fds": fds}
    finally:
        for s in socks:
            s.close()
        d.stop()
        d.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=1200)
    ap.add_argument("--pings", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, a.connections + 200), hard))
    rows: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for i in range(a.runs):
        for flood in (False, True):  # interleaved
            r = run(a.connections, a.pings, flood)
            rows[flood].append(r)
            print(f"run {i + 1} {'flood' if flood else 'quiet'}: p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, "
                  f"log {r['log']:.0f} B, daemon fds {r['fds']:.0f}", flush=True)
    for flood in (False, True):
        p50 = statistics.median(r["p50"] for r in rows[flood])
        p99 = statistics.median(r["p99"] for r in rows[flood])
        log = max(r["log"] for r in rows[flood])
        print(f"{'flood' if flood else 'quiet'} (median of {a.runs}): p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
              f"largest log {log:.0f} B")


if __name__ == "__main__":
    main()
