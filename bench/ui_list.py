#!/usr/bin/env python3
"""How long the UI's workflow list takes on a store of 100,000 promises (25,000 workflows of four promises,
written straight into SQLite by tests/ui_data.py; tests/test_ui.py checks the same page's content).

Times GET /ui/ (the first page), the next page by cursor, a state filter, a function filter, and a search
by id, each over the Unix socket on a warm keep-alive connection: the median and the worst of 20.

    python bench/ui_list.py [--workflows 25000]
"""
import argparse
import os
import re
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
import ui_data  # noqa: E402
from daemon_proc import Daemon  # noqa: E402

RUNS = 20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workflows", type=int, default=25_000)
    n = ap.parse_args().workflows
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
    finally:
        d.stop()
        d.cleanup()


if __name__ == "__main__":
    main()
