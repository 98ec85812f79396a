"""Retention on SQLite: finished call graphs deleted in small batches, and the file's free pages given back
(a mixin of ``SqliteStore``, kept apart so ``sqlite.py`` stays about queries of the hot path).

What goes: a promise at the top of a call graph (no parent, or itself as parent) that completed before
the cutoff, together with everything below it by ``resonate:parent`` links and everything tagged with
it as ``resonate:root``, the tasks rooted at any of them and the callbacks on or for any of them; and
only if every promise of that graph is completed, and completed before the cutoff. A graph with a
pending promise anywhere (a running workflow, a detached child still running) is kept whole: a replay
reads its completed steps; so is a parentless top tagged with a running workflow as its root. Schedules
are never touched.

Free pages: the file is in ``auto_vacuum=INCREMENTAL`` mode (new files from their first page; a file
made before schema 3 is switched once, by one full ``VACUUM`` when it is first opened for writing), so
``PRAGMA incremental_vacuum(N)`` moves up to N free pages to the end of the file and truncates it.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from .. import errors
from ..protocol.records import PENDING
from ..protocol.results import Collected
from . import finished_graphs

if TYPE_CHECKING:
    import peewee as pw

log = logging.getLogger("resonate.store")

INCREMENTAL = 2  # PRAGMA auto_vacuum: 0 none, 1 full, 2 incremental
CHUNK = 500  # ids per statement: SQLite limits the parameters of one statement

# Finished tops of call graphs by completion time: the partial index ``promises_done`` (schema 3).
_TOPS_DONE = "completed_on IS NOT NULL AND (parent_id IS NULL OR parent_id = id)"

# One graph: the top, everything below it by parent links (UNION ends a cycle in hostile data), and every
# promise tagged with it as root (a retry timer hangs under a step that has no promise yet).
_GRAPH = ("WITH RECURSIVE below(id) AS (SELECT ? UNION SELECT p.id FROM promises p JOIN below b "
          "ON p.parent_id = b.id AND p.id != b.id) "
          "SELECT p.id, p.state, p.completed_on FROM promises p JOIN below b ON p.id = b.id "
          "UNION SELECT id, state, completed_on FROM promises WHERE root_id = ?")


class Retention:
    """The retention verbs of ``SqliteStore`` (which provides the attributes declared below)."""

    if TYPE_CHECKING:
        db: pw.Database
        read_only: bool

        def problem(self) -> str | None: ...

    def collect(self, before: int, after: tuple[int, str] | None, limit: int,
                dry_run: bool = False) -> tuple[Collected, tuple[int, str] | None]:
        """One batch (call it inside a transaction): delete, or only count, about ``limit`` promises of the
        finished graphs whose top completed before ``before``, resuming after the top ``after``; returns
        what went and where the next batch starts (None: nothing older is left)."""
        where = f"{_TOPS_DONE} AND completed_on < ?"
        params: list[Any] = [before]
        if after is not None:
            where += " AND (completed_on > ? OR (completed_on = ? AND id > ?))"
            params += [after[0], after[0], after[1]]
        tops = self.db.execute_sql(f"SELECT id, completed_on, root_id FROM promises INDEXED BY promises_done WHERE "
                                   f"{where} ORDER BY completed_on, id LIMIT ?", [*params, limit]).fetchall()
        doomed, cursor = finished_graphs(tops, before, limit, self._pending,
                                         lambda top: self.db.execute_sql(_GRAPH, (top, top)).fetchall())
        promises, tasks, callbacks = self._delete_graphs(doomed, dry_run)
        return Collected(promises, tasks, callbacks, before=before, dry_run=dry_run), cursor

    def _delete_graphs(self, ids: list[str], dry_run: bool) -> list[int]:
        counts = [0, 0, 0]  # promises, tasks, callbacks
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i:i + CHUNK]
            marks = ", ".join("?" * len(chunk))
            wheres = (("promises", f"id IN ({marks})", chunk), ("tasks", f"root_id IN ({marks})", chunk),
                      ("callbacks", f"promise_id IN ({marks}) OR root_id IN ({marks})", chunk + chunk))
            for n, (table, where, params) in enumerate(wheres):
                if dry_run:
                    found = int(self.db.execute_sql(f"SELECT COUNT(*) FROM {table} WHERE {where}", params).fetchone()[0])
                else:
                    found = self.db.execute_sql(f"DELETE FROM {table} WHERE {where}", params).rowcount
                counts[n] += found
        return counts

    def reclaim(self, pages: int) -> tuple[int, bool]:
        """Give up to ``pages`` free pages back to the file system, in one transaction of its own; returns the
        bytes given back and whether free pages remain. A file not in incremental mode gives nothing."""
        if self.read_only or self._memory() or self._pragma("auto_vacuum") != INCREMENTAL:
            return 0, False
        gone = self.problem()
        if gone is not None:
            raise errors.StoreGone(gone)
        free = self._pragma("freelist_count")
        # One transaction, run as a script: Python's sqlite3 steps a statement that returns no rows only
        # once, and each step of incremental_vacuum frees one page; a script steps it to the end.
        self.db.connection().executescript(f"BEGIN IMMEDIATE; PRAGMA incremental_vacuum({int(pages)}); COMMIT;")
        left = self._pragma("freelist_count")
        if left == 0:
            # WAL mode: the file shrinks when the log is written back; TRUNCATE also empties the log. A
            # reader holding an old snapshot makes it give up (busy), harmlessly: the next one does it.
            self.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return (free - left) * self._pragma("page_size"), left > 0

    def size(self) -> int:
        """The database's size in bytes: its file and its write-ahead log."""
        if self._memory():
            return self._pragma("page_count") * self._pragma("page_size")
        path = str(self.db.database)
        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))

    def _switch_to_incremental_vacuum(self) -> None:
        """A file made before schema 3 has no auto-vacuum: one full VACUUM (outside any transaction)
        rewrites it in incremental mode. New files are made so by ``connect_sqlite``."""
        if self.read_only or self._memory() or self._pragma("auto_vacuum") == INCREMENTAL:
            return
        log.warning("database %s: switching to incremental vacuum (one full VACUUM, once)", self.db.database)
        self.db.execute_sql("PRAGMA auto_vacuum=INCREMENTAL")
        self.db.execute_sql("VACUUM")

    def _pending(self, id: str) -> bool:
        row = self.db.execute_sql("SELECT state FROM promises WHERE id = ?", (id,)).fetchone()
        return row is not None and row[0] == PENDING

    def _memory(self) -> bool:
        return str(self.db.database) == ":memory:"

    def _pragma(self, name: str) -> int:
        return int(self.db.execute_sql(f"PRAGMA {name}").fetchone()[0])


__all__ = ["INCREMENTAL", "Retention"]

