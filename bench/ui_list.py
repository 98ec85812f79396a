#!/usr/bin/env python3
"""How long the UI's workflow list takes on a store of 100,000 promises (25,000 workflows of four promises,
written straight into SQLite by tests/ui_data.py; tests/test_ui.py checks the same page's content).

Times GET /ui/ (the first page), the next page by cursor, a state filter, a function filter, and a search
by id, each over the Unix socket on a warm keep-alive connection: the median and the worst of 20.

Then the live list under load: one list page's event stream (/ui/list/events) open while four clients
start and complete workflows as fast as the daemon takes them; it counts the workflow changes and the
events the page heard (each event is one re-read of the list: the coalescing keeps it near one a second).

    python bench/ui_list.py [--workflows 25000] [--live-seconds 5]
"""
import argparse
import os
import re
import socket
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import ui_data  # noqa: E402
from daemon_proc import FAR, Daemon, Stream, b64  # noqa: E402

RUNS = 20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workflows", type=int, default=25_000)
    ap.add_argument("--live-seconds", type=float, default=5.0)
    args = ap.parse_args()
    n = args.workflows
    d = Daemon("--retention", "off", dir=tempfile.mkdtemp(dir="/tmp", prefix="rub-"))
    d.command = ["-m", "resonate_cli", "serve"]
    promises = ui_data.build(d.db, n)
    d.start(timeout=120)
    try:
        with d.client(timeout=120) as c:
            first = c.get("/ui/").text
            cursor = re.search(r'href="/ui/(\?cursor=[^"]+)" rel="next"', first)
            pages = {"first page": "/ui/", "next page": "/ui/" + (cursor.group(1).replace("&amp;", "&") if cursor else ""),
                     "state=rejected": "/ui/?state=rejected", "func=refund": "/ui/?func=refund",
                     "search q=wf-0123": "/ui/?q=wf-0123"}
            print(f"{promises:,} promises ({n:,} workflows); {RUNS} requests each, ms")
            for name, url in pages.items():
                times = []
                for _ in range(RUNS):
                    start = time.perf_counter()
                    r = c.get(url)
                    times.append((time.perf_counter() - start) * 1000)
                    assert r.status_code == 200, (url, r.status_code)
                print(f"  {name:18} median {statistics.median(times):7.1f}  max {max(times):7.1f}")
        live(d, args.live_seconds)
    finally:
        d.stop()
        d.cleanup()


def live(d: Daemon, seconds: float) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(seconds + 10)
    sock.connect(d.socket)
    stream = Stream(sock, "/ui/list/events")
    stream.next_comment()
    stop = threading.Event()
    changes = [0]
    lock = threading.Lock()

    def client(k: int) -> None:
        with d.client() as c:
            i = 0
            while not stop.is_set():
                id = f"live-{k}-{i}"
                c.post("/promises", json={"id": id, "timeout": FAR, "param": {"data": b64('{"func": "f"}')},
                                          "tags": {"resonate:invoke": "poll://any@nobody", "resonate:root": id}})
                c.patch(f"/promises/{id}", json={"state": "RESOLVED"})
                i += 1
                with lock:
                    changes[0] += 2  # started, ended
    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    events = 0
    while time.perf_counter() - start < seconds:
        stream.next()
        events += 1
    stop.set()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    stream.close()
    print(f"live list: {changes[0] / took:,.0f} workflow changes/s for {took:.1f} s; the page heard {events} events "
          f"({events / took:.1f}/s), so it re-read the list {events} times")


if __name__ == "__main__":
    main()
