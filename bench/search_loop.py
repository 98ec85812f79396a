#!/usr/bin/env python3
"""/ping over the Unix socket while searches scan 500,000 promises (id pattern, tag), and how long the
searches take. Builds the store the way tests/test_search_off_loop.py does (rows written straight into
SQLite), then: four full-scan searches back to back in one thread, pings back to back in another.

    python bench/search_loop.py [--rows 500000]
"""
import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import test_search_off_loop as t  # noqa: E402
from daemon_proc import Daemon, raw_ping  # noqa: E402


def ping(path: str) -> float:
    status, started, ended = raw_ping(path, timeout=120)
    assert status == 200
    return (ended - started) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=500_000)
    t.N = ap.parse_args().rows
    d = Daemon(dir=tempfile.mkdtemp(dir="/tmp", prefix="rd-"))
    t.build(d.db)
    d.start(timeout=120)
    try:
        with d.client(timeout=600) as c:
            for q in ({"id": "*needle*"}, {"tags[needle]": "yes"}, {"id": "*nothing*"}):
                start = time.perf_counter()
                c.get("/promises", params=q)
                print(f"search {q}: {(time.perf_counter() - start) * 1000:.0f} ms")
        done = threading.Event()
        took: list[float] = []

        def searcher() -> None:
            with d.client(timeout=600) as c2:
                for _ in range(4):
                    start = time.perf_counter()
                    c2.get("/promises", params={"id": "*nothing*"})
                    took.append((time.perf_counter() - start) * 1000)
            done.set()

        th = threading.Thread(target=searcher)
        th.start()
        lat: list[float] = []
        while not done.is_set():
            lat.append(ping(d.socket))
        th.join()
        lat.sort()
        print(f"during 4 searches ({', '.join(f'{x:.0f}' for x in took)} ms): {len(lat)} pings, "
              f"p50 {statistics.median(lat):.2f} ms, p99 {lat[int(len(lat) * 0.99) - 1]:.2f} ms, max {lat[-1]:.2f} ms")
    finally:
        d.stop()
        d.cleanup()


if __name__ == "__main__":
    main()
