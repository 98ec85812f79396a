"""A store of many finished workflows, written straight into SQLite (seconds, not minutes): for the UI's
list test and bench/ui_list.py. Not collected by pytest (no ``test_`` prefix).

Each workflow is what a worker leaves behind: its root promise (an invocation of ``order`` or ``refund``,
alternately, with its param), three resolved ``run`` steps under it, and its completed invoke task.
Every 7th workflow is rejected. Ids are ``wf-000000``, ... created one ms apart (the newest is the last).
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from typing import Any

from resonate_daemon.store import open_store
from resonate_daemon.store.sqlite_schema import PromiseRow, TaskRow

BASE = 1_700_000_000_000
FAR = 4_102_444_800_000
STEPS = 3


def b64(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def state_of(i: int) -> str:
    return "REJECTED" if i % 7 == 0 else "RESOLVED"


def func_of(i: int) -> str:
    return "order" if i % 2 == 0 else "refund"


def build(db: str, workflows: int) -> int:
    """``workflows`` workflows of 1 + STEPS promises each; returns how many promises were written."""
    open_store(db).close()  # the schema, as the daemon makes it
    pcols = [f.column_name for f in PromiseRow._meta.sorted_fields]  # type: ignore[attr-defined]
    tcols = [f.column_name for f in TaskRow._meta.sorted_fields]  # type: ignore[attr-defined]

    def promises() -> Iterator[tuple[Any, ...]]:
        for i in range(workflows):
            root, at, func = f"wf-{i:06d}", BASE + i * 10, func_of(i)
            yield tuple({"id": root, "state": state_of(i), "timeout": FAR, "created_on": at, "completed_on": at + 5,
                         "param_headers": "{}", "param_data": b64({"func": func, "args": [{"n": i}], "kwargs": {},
                                                                   "version": 1}),
                         "value_headers": "{}", "value_data": b64({"done": i}), "root_id": root,
                         "tags": json.dumps({"resonate:invoke": "poll://any@default", "resonate:scope": "global",
                                             "resonate:func": func})}.get(c) for c in pcols)
            for k in range(1, STEPS + 1):
                step = f"{root}.{k}"
                yield tuple({"id": step, "state": "RESOLVED", "timeout": FAR, "created_on": at + k,
                             "completed_on": at + k, "value_headers": "{}", "value_data": b64(k), "root_id": root,
                             "parent_id": root, "tags": json.dumps({"resonate:root": root, "resonate:parent": root,
                                                                    "resonate:scope": "local", "resonate:func": "step"})
                             }.get(c) for c in pcols)

    def tasks() -> Iterator[tuple[Any, ...]]:
        for i in range(workflows):
            root = f"wf-{i:06d}"
            yield tuple({"id": f"__invoke:{root}", "counter": 1, "root_id": root, "type": "invoke",
                         "state": "COMPLETED", "recv": "poll://any@default", "timeout": FAR, "created_on": BASE + i * 10,
                         "completed_on": BASE + i * 10 + 5, "func": func_of(i), "version": 1, "ttl": 0,
                         "expires_at": 0, "attempt": 1}.get(c) for c in tcols)

    conn = sqlite3.connect(db)
    for table, cols, rows in (("promises", pcols, promises()), ("tasks", tcols, tasks())):
        conn.executemany(f"INSERT INTO {table} ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", rows)
    conn.commit()
    conn.close()
    return workflows * (1 + STEPS)
