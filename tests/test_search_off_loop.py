"""Searches by id pattern or tag on a store of 500,000 promises: answered by SQL alone (GLOB and
json_extract, one statement), on a reader connection in its own thread, so the daemon's loop keeps
answering while SQLite scans (was: one ``*needle*`` search held every request for 58 s).

The file is written straight into SQLite (500,000 rows in a few seconds) before the daemon starts. The
check is not a timing threshold: pings are sent back to back while searches run, and many of them must
start and finish inside a search's own time span, which a blocked loop cannot do.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from daemon_proc import Daemon, raw_ping
from resonate_daemon.store import open_store
from resonate_daemon.store.sqlite_schema import PromiseRow

N = 500_000
BASE = 1_700_000_000_000
ODD = ["odd?id", "odd[id]", "odd*id"]  # ? and [ are literal in our globs; * is the wildcard


def build(db: str) -> None:
    open_store(db).close()  # the schema, as the daemon makes it
    cols = [f.column_name for f in PromiseRow._meta.sorted_fields]  # type: ignore[attr-defined]

    def row(id: str, at: int, tags: dict[str, str]) -> tuple[Any, ...]:
        d = {"id": id, "state": "RESOLVED", "timeout": 4_102_444_800_000, "created_on": at, "completed_on": at,
             "tags": json.dumps(tags, separators=(",", ":")), "root_id": id}
        return tuple(d.get(c) for c in cols)

    def rows() -> Iterator[tuple[Any, ...]]:
        yield row("needle-x", BASE, {"needle": "yes", 'we"ird': "q"})  # the oldest: a search scans everything
        for j, id in enumerate(ODD):
            yield row(id, BASE + 1 + j, {})
        for i in range(N - 1 - len(ODD)):
            yield row(f"p-{i:07d}", BASE + 10 + i, {"kind": f"k{i % 10}"})

    conn = sqlite3.connect(db)
    table = PromiseRow._meta.table_name  # type: ignore[attr-defined]
    conn.executemany(f"INSERT INTO {table} ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", rows())
    conn.commit()
    conn.close()


@pytest.fixture(scope="module")
def big() -> Iterator[Daemon]:
    d = Daemon(dir=tempfile.mkdtemp(dir="/tmp", prefix="rd-"))
    build(d.db)
    d.start(timeout=60)
    yield d
    d.stop()
    d.cleanup()


def ids(d: Daemon, **params: Any) -> tuple[list[str], str | None]:
    with d.client(timeout=60) as c:
        r = c.get("/promises", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    return [p["id"] for p in body["promises"]], body.get("cursor")


def test_patterns_and_tags_find_exactly_what_they_match(big: Daemon) -> None:
    assert ids(big, id="*needle*") == (["needle-x"], None)
    assert ids(big, **{"tags[needle]": "yes"}) == (["needle-x"], None)
    assert ids(big, **{'tags[we"ird]': "q"}) == (["needle-x"], None)  # a key SQL cannot path: still found
    assert ids(big, id="*nothing*") == ([], None)
    assert ids(big, id="odd?id")[0] == ["odd?id"] and ids(big, id="odd[id]")[0] == ["odd[id]"]
    assert ids(big, id="odd*")[0] == ["odd*id", "odd[id]", "odd?id"]  # newest first
    found, cursor = ids(big, id="p-000012*", limit=6)
    assert found == [f"p-00001{n}" for n in range(29, 23, -1)] and cursor
    rest, end = ids(big, id="p-000012*", limit=6, cursor=cursor)
    assert rest == [f"p-00001{n}" for n in range(23, 19, -1)] and end is None
    tagged, _ = ids(big, **{"tags[kind]": "k3"}, id="*99*", limit=3)
    assert tagged == ["p-0499993", "p-0499983", "p-0499973"]


def test_requests_are_answered_while_a_search_scans(big: Daemon) -> None:
    spans: list[tuple[float, float]] = []
    done = threading.Event()

    def search() -> None:
        try:
            with big.client(timeout=120) as c:
                for params in ({"id": "*nothing*"}, {"tags[kind]": "none"}, {"id": "*needle*"}):
                    start = time.monotonic()
                    assert c.get("/promises", params=params).status_code == 200
                    spans.append((start, time.monotonic()))
        finally:
            done.set()

    searcher = threading.Thread(target=search)
    searcher.start()
    pings = []
    while not done.is_set():
        status, started, ended = raw_ping(big.socket, timeout=60)
        assert status == 200
        pings.append((started, ended))
    searcher.join(timeout=120)
    assert len(spans) == 3
    inside = [p for p in pings if any(s <= p[0] and p[1] <= e for s, e in spans)]
    # Measured: about 2,100 of 2,200 pings inside (96%); with the search on the loop, 8 of 103.
    assert len(inside) >= max(100, len(pings) // 2), \
        f"only {len(inside)} of {len(pings)} pings were answered during the searches"
