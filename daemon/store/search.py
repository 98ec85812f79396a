"""Searching promises by id pattern and tags in SQL, and off the event loop.

A search by ``*pattern*`` or by tag used to read every row into Python in pages of 100 and filter
there: with 58,000 promises one search held the daemon's loop for 1.9 s, so every other request waited.
Now the whole filter is SQL (``GLOB`` for the id, ``json_extract`` for tags), one statement that stops at
``limit + 1`` matches, and the daemon runs it on a ``Reader``: its own connection in its own thread
(SQLite in WAL mode lets readers run beside the writer), so the loop keeps serving while SQLite scans.

Semantics are those of ``glob_match``: ``*`` is the only wildcard; ``?`` and ``[`` are literal (escaped
for GLOB as ``[?]`` and ``[[]``). A tag key with a double quote cannot be put in a JSON path: for such keys
SQL narrows by the text the store wrote (``"key":"value"`` in the compact JSON) and Python decides.
"""

from __future__ import annotations

import concurrent.futures
import json
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import peewee as pw

from ..protocol.records import Promise
from . import glob_match, glob_prefix
from .sqlite_schema import PromiseRow

Found = tuple[list[Promise], tuple[int, str] | None]


def sql_glob(pattern: str) -> str:
    """Our glob (only ``*`` is a wildcard) as an SQLite GLOB pattern."""
    return "".join({"[": "[[]", "?": "[?]"}.get(ch, ch) for ch in pattern)


def promise_query(id_glob: str | None, states: tuple[str, ...] | None, tags: dict[str, str] | None,
                  limit: int, cursor: tuple[int, str] | None) -> tuple[Any, dict[str, str]]:
    """The peewee query for one page (``limit + 1`` rows, newest first), and the tags SQL cannot check."""
    cond: Any = pw.SQL("1 = 1")
    if id_glob and id_glob != "*":
        prefix = glob_prefix(id_glob)
        if prefix == id_glob:
            cond &= PromiseRow.id == id_glob
        else:
            if prefix:  # an index range first, then GLOB on what is left
                cond &= PromiseRow.id.startswith(prefix)
            cond &= pw.SQL('"t1"."id" GLOB ?', (sql_glob(id_glob),))
    if states:
        cond &= PromiseRow.state.in_(list(states))
    left: dict[str, str] = {}
    for key, value in (tags or {}).items():
        if '"' in key:  # no JSON path for it: narrow by its stored text, decide in Python
            left[key] = value
            cond &= pw.SQL('instr("t1"."tags", ?) > 0', (json.dumps(key) + ":" + json.dumps(value),))
        else:
            cond &= pw.SQL("json_extract(\"t1\".\"tags\", ?) = ?", (f'$."{key}"', value))
    if cursor:
        c_on, c_id = cursor
        cond &= ((PromiseRow.created_on < c_on) | ((PromiseRow.created_on == c_on) & (PromiseRow.id < c_id)))
    query = (PromiseRow.select().where(cond).order_by(PromiseRow.created_on.desc(), PromiseRow.id.desc())
             .limit(limit + 1 if not left else max(limit + 1, 100)))
    return query, left


def run_search(rows_of: Callable[[Any], list[dict[str, Any]]], to_promise: Callable[[dict[str, Any]], Promise],
               id_glob: str | None, states: tuple[str, ...] | None, tags: dict[str, str] | None, limit: int,
               cursor: tuple[int, str] | None) -> Found:
    """One page: ``rows_of(query)`` runs a query on some connection and returns its rows as dicts."""
    out: list[Promise] = []
    while True:
        query, left = promise_query(id_glob, states, tags, limit, cursor)
        rows = rows_of(query)
        for row in rows:
            p = to_promise(row)
            cursor = (p.created_on, p.id)
            if left and any(p.tags.get(k) != v for k, v in left.items()):
                continue
            if not glob_match(id_glob, p.id):  # SQL already decided; kept as the definition's check
                continue
            out.append(p)
            if len(out) > limit:
                page = out[:limit]
                return page, (page[-1].created_on, page[-1].id)
        if not left or len(rows) < (limit + 1 if not left else max(limit + 1, 100)):
            return out, None


class Reader:
    """Read-only searches on their own SQLite connections, in a small thread pool.

    Each thread opens its connection on first use (``query_only``: it can never write) and keeps it.
    Example::

        reader = Reader("/path/r.db", to_promise)
        page, nxt = await loop.run_in_executor(reader.pool, reader.search_promises, "*x*", None, None, 50, None)
    """

    def __init__(self, path: str, to_promise: Callable[[dict[str, Any]], Promise], threads: int = 2) -> None:
        self.path = path
        self.to_promise = to_promise
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="resonate-read")
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
            conn.execute("PRAGMA query_only=1")
            conn.execute("PRAGMA cache_size=-16000")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _rows(self, query: Any) -> list[dict[str, Any]]:
        sql, params = query.sql()
        cur = self._conn().execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def search_promises(self, id_glob: str | None, states: tuple[str, ...] | None, tags: dict[str, str] | None,
                        limit: int, cursor: tuple[int, str] | None) -> Found:
        return run_search(self._rows, self.to_promise, id_glob, states, tags, limit, cursor)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
