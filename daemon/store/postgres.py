"""The PostgreSQL backend of ``Store`` (psycopg 3): plain SQL in, frozen records out.

Loaded only when a ``postgresql://`` (or ``postgres://``) URL is opened: ``import resonate`` and a daemon
on SQLite never load psycopg. The schema, its migrations, the URL helpers and the error translation are
in ``postgres_schema.py``.

Transactions are READ COMMITTED, one per ``transaction()``; reads outside one run in autocommit. Inside a
write transaction ``get_promise`` and ``get_task`` first take a transaction-level advisory lock on the
id (``pg_advisory_xact_lock(hashtextextended(id, 0))``, a statement of its own, so the row read after
it is read with a snapshot taken after the lock was granted): two daemons deciding about one id are
serialised, even when the row does not exist yet. A transaction that loses a race anyway (a unique key
taken, a deadlock) raises ``Conflict`` and is rolled back; whoever opened it runs it again, whole
(``retrying`` in ``store/__init__.py``, which the engine's ``_run`` goes through).

Today one process writes a database (a schema of it, by the URL's ``search_path``) at a time, as on
SQLite: it holds a session-level advisory lock, and another ``open_store`` is refused with
``StoreLocked``; readers (``read_only``) open beside it. See docs/postgres.md.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import psycopg

from .. import errors
from ..paths import display_db as redact
from ..protocol.records import (
    CLAIMED,
    COMPLETED,
    ENQUEUED,
    INIT,
    INT64_MAX,
    PENDING,
    TAG_PARENT,
    TAG_ROOT,
    Callback,
    Promise,
    Schedule,
    Task,
)
from ..protocol.results import Collected
from . import finished_graphs, glob_match, glob_prefix
from .postgres_schema import (
    CALLBACK_COLUMNS,
    HOLDER_LOCK,
    PROMISE_COLUMNS,
    SCHEDULE_COLUMNS,
    SCHEMA_VERSION,
    TASK_COLUMNS,
    TOPS,
    callback_of,
    connect,
    current_schema,
    dumps,
    like_pattern,
    lock_key,
    migrate,
    promise_of,
    schedule_of,
    schema_version,
    task_of,
    task_row,
    too_new,
    translated,
    unreachable,
    workflows_where,
)

log = logging.getLogger("resonate.store")
Rows = list[tuple[Any, ...]]
Found = tuple[list[Promise], tuple[int, str] | None]

_P = ", ".join(PROMISE_COLUMNS)
_T = ", ".join(TASK_COLUMNS)
_C = ", ".join(CALLBACK_COLUMNS)
_S = ", ".join(SCHEDULE_COLUMNS)
_OUT = (CLAIMED, ENQUEUED)
# Serialises, per id, the write transactions of every process on the database (see the module).
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


class PostgresStore:
    """``Store`` on one PostgreSQL database (the first schema of its ``search_path``)."""

    def __init__(self, url: str, durability: str = "full", *, read_only: bool = False, exclusive: bool = True) -> None:
        if durability not in ("full", "normal"):
            raise errors.InvalidRequest(f"durability must be one of full, normal, not {durability!r}")
        self.url = url
        self._location = redact(url)
        self.read_only = read_only
        self._exclusive = exclusive and not read_only
        self._durability = durability
        self._in_tx = False
        self._batch: AbstractContextManager[Any] | None = None  # the open group-commit transaction, or None
        self._idle = threading.Event()  # clear while a batch's COMMIT runs on another thread
        self._idle.set()
        self._schema = ""
        self.conn = self._open()

    @classmethod
    def open(cls, url: str, durability: str = "full", *, read_only: bool = False) -> PostgresStore:
        return cls(url, durability, read_only=read_only)

    def _open(self) -> psycopg.Connection[Any]:
        conn = connect(self.url, self._location)
        try:
            with translated(self._location):
                try:
                    self._schema = current_schema(conn)
                except errors.StartupError:
                    if self.read_only:
                        raise errors.InvalidRequest(f"no resonate database at {self._location} to read") from None
                    raise
                if self._durability == "normal":  # a server crash may lose the last commits, never corrupt
                    conn.execute("SET synchronous_commit = off")
                if self.read_only:
                    found = schema_version(conn)
                    if found == 0:
                        raise errors.InvalidRequest(f"no resonate database at {self._location} to read")
                    if found > SCHEMA_VERSION:
                        raise too_new(found, self._location)
                    if found != SCHEMA_VERSION:
                        raise errors.StoreLocked(
                            f"database {self._location} has schema version {found}, this program reads "
                            f"{SCHEMA_VERSION}; it is migrated when opened for writing")
                    return conn
                if self._exclusive:
                    self._hold(conn)
                found = migrate(conn, self._location)
                if found < SCHEMA_VERSION and found:
                    log.warning("database %s: schema migrated from version %d to %d", self._location, found,
                                SCHEMA_VERSION)
            return conn
        except BaseException:
            conn.close()
            raise

    def _hold(self, conn: psycopg.Connection[Any]) -> None:
        """The one-writer lock: a session advisory lock, gone when this connection is (a killed daemon
        holds nothing)."""
        key = lock_key(HOLDER_LOCK, self._schema)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row and row[0]:
            return
        unsigned = key % (1 << 64)
        who = conn.execute(
            "SELECT a.application_name, a.client_hostname, a.pid FROM pg_locks l JOIN pg_stat_activity a "
            "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s",
            (unsigned >> 32, unsigned & 0xFFFF_FFFF)).fetchone()
        holder = f" ({who[0] or 'server pid ' + str(who[2])})" if who else ""
        raise errors.StoreLocked(f"database {self._location} is in use by another process{holder}; stop it, or "
                                 "point this one at another database (several daemons on one database are not "
                                 "supported yet)")

    def _live(self) -> psycopg.Connection[Any]:
        """The connection, made again if the server dropped it (and the writer's lock taken again)."""
        if self.conn.closed or self.conn.broken:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
            self.conn = self._open()
        return self.conn

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        with translated(self._location):
            return self._live().execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with translated(self._location):
            return self._live().execute(sql, params).fetchone()

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> int:
        with translated(self._location):
            return self._live().execute(sql, params).rowcount

    def _locking(self) -> bool:
        """Whether reads that decide take the per-id lock: in a write transaction (see the module)."""
        return self._in_tx and not self.read_only

    def _locked_one(self, id: str, sql: str) -> tuple[Any, ...] | None:
        """The row of ``id``, read (in a write transaction) by a statement that starts only once the per-id
        transaction lock is granted, so with a snapshot that sees whatever the lock's last holder committed.
        Two round trips: a pipeline of the two measured slower here (220 µs against 190 per transaction)."""
        if self._locking():
            self._exec(_LOCK, (id,))
        return self._one(sql, (id,))

    # -- the store's own ---------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return self._location

    @contextlib.contextmanager
    def transaction(self, durable: bool = True) -> Iterator[None]:
        """One READ COMMITTED transaction. ``durable=False`` commits without waiting for the server's WAL
        flush (``synchronous_commit = off`` for this transaction); commits stay in order. Read-only: a
        transaction that is always rolled back. Inside a batch (``begin_batch``): a savepoint of it,
        undone alone if it fails (a lost race included: its opener runs it again in the same batch)."""
        if self._in_tx:  # the engine never nests; a nested call is part of the outer transaction
            yield
            return
        if self._batch is None:
            self._idle.wait()  # a batch's COMMIT on another thread: the connection is its until then
        with translated(self._location):
            # In a batch, never a new connection: it would be outside the batch's transaction.
            conn = self.conn if self._batch is not None else self._live()
            self._in_tx = True
            try:
                with conn.transaction(force_rollback=self.read_only and self._batch is None):
                    if not durable and self._batch is None:
                        conn.execute("SET LOCAL synchronous_commit = off")
                    yield
            finally:
                self._in_tx = False

    # -- group commit (the daemon's batches: server/batch.py) ----------------------------------------
    @property
    def slow_commit(self) -> bool:
        """A commit is a round trip to the server (and, at ``full``, its WAL flush): worth running off the
        daemon's event loop."""
        return True

    def begin_batch(self) -> None:
        """Open one write transaction that every ``transaction()`` joins, each in its own savepoint, until
        ``end_batch``."""
        self._idle.wait()
        with translated(self._location):
            batch = self._live().transaction(force_rollback=self.read_only)
            batch.__enter__()
        self._batch = batch

    def end_batch(self) -> Callable[[], None]:
        """Close the batch; returns its COMMIT, to run on any thread. Until it returns, ``transaction()``
        and ``begin_batch`` wait (the connection is the commit's)."""
        batch, self._batch = self._batch, None
        self._idle.clear()

        def commit() -> None:
            try:
                with translated(self._location):
                    if batch is not None:
                        batch.__exit__(None, None, None)
            finally:
                self._idle.set()

        return commit

    def problem(self) -> str | None:
        if self.conn.closed or self.conn.broken:
            try:
                self._live()
            except errors.ResonateError as exc:
                return str(exc)
        return None

    def data_version(self) -> int:
        """Changes when anyone commits on the server (its write-ahead log position): a reader refreshes
        then, at worst once too often."""
        row = self._one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
        return int(row[0]) if row else 0

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.conn.close()

    def reader(self) -> PgReader:
        return PgReader(self.url, self._location)

    # -- promises ---------------------------------------------------------------------------------
    def get_promise(self, id: str) -> Promise | None:
        row = self._locked_one(id, f"SELECT {_P} FROM promises WHERE id = %s")
        return promise_of(row) if row else None

    def insert_promise(self, p: Promise) -> None:
        self._exec(f"INSERT INTO promises ({_P}) VALUES ({', '.join(['%s'] * len(PROMISE_COLUMNS))})", (
            p.id, p.state, dumps(p.param.headers), p.param.data, dumps(p.value.headers), p.value.data, p.timeout,
            p.idempotency_key_for_create, p.idempotency_key_for_complete, dumps(p.tags), p.tags.get(TAG_ROOT),
            p.tags.get(TAG_PARENT), p.created_on, p.completed_on))

    def update_promise(self, p: Promise) -> None:
        self._exec("UPDATE promises SET state = %s, value_headers = %s, value_data = %s, ikey_complete = %s, "
                   "completed_on = %s WHERE id = %s", (p.state, dumps(p.value.headers), p.value.data,
                                                       p.idempotency_key_for_complete, p.completed_on, p.id))

    def reopen_promise(self, p: Promise) -> None:
        self._exec("UPDATE promises SET state = %s, value_headers = %s, value_data = %s, ikey_complete = %s, "
                   "completed_on = %s, timeout = %s WHERE id = %s",
                   (p.state, dumps(p.value.headers), p.value.data, p.idempotency_key_for_complete, p.completed_on,
                    p.timeout, p.id))

    def promises_of_root(self, root_id: str) -> dict[str, Promise]:
        return {r[0]: promise_of(r) for r in self._rows(f"SELECT {_P} FROM promises WHERE root_id = %s", (root_id,))}

    def children_of(self, parent_id: str) -> list[Promise]:
        return self._promises("parent_id = %s AND id <> %s ORDER BY created_on, id", (parent_id, parent_id))

    def subtree(self, id: str, limit: int) -> list[Promise]:
        cols = ", ".join(f"p.{c}" for c in PROMISE_COLUMNS)
        sql = ('WITH RECURSIVE below(id) AS (SELECT %s::text COLLATE "C" UNION SELECT p.id FROM promises p '
               f"JOIN below b ON p.parent_id = b.id AND p.id <> b.id) SELECT {cols} FROM promises p JOIN below b "
               "ON p.id = b.id WHERE p.id <> %s ORDER BY p.created_on, p.id LIMIT %s")
        return [promise_of(r) for r in self._rows(sql, (id, id, limit))]

    def search_promises(self, id_glob: str | None, states: tuple[str, ...] | None, tags: dict[str, str] | None,
                        limit: int, cursor: tuple[int, str] | None) -> Found:
        return search_promises(self._rows, id_glob, states, tags, limit, cursor)

    def timed_out_promises(self, now: int, limit: int) -> list[Promise]:
        return self._promises("state = %s AND timeout <= %s ORDER BY timeout, id LIMIT %s", (PENDING, now, limit))

    def next_promise_timeout(self) -> int | None:
        row = self._one("SELECT min(timeout) FROM promises WHERE state = %s", (PENDING,))
        return row[0] if row else None

    def count_promises_by_state(self) -> dict[str, int]:
        return {s: int(n) for s, n in self._rows("SELECT state, count(*) FROM promises GROUP BY state")}

    def pending_of_root(self, root_id: str) -> list[Promise]:
        return self._promises("root_id = %s AND state = %s ORDER BY created_on, id", (root_id, PENDING))

    def search_workflows(self, states: tuple[str, ...] | None, func: str | None, since: int | None, limit: int,
                         cursor: tuple[int, str] | None) -> Found:
        where, params = workflows_where(states, func, since)
        if cursor:
            where += " AND (p.created_on, p.id) < (%s, %s)"
            params += [cursor[0], cursor[1]]
        cols = ", ".join(f"p.{c}" for c in PROMISE_COLUMNS)
        rows = self._rows(f"SELECT {cols} FROM promises p WHERE {where} ORDER BY p.created_on DESC, p.id DESC "
                          "LIMIT %s", [*params, limit + 1])
        found = [promise_of(r) for r in rows[:limit]]
        return found, (found[-1].created_on, found[-1].id) if len(rows) > limit else None

    def count_workflows(self, states: tuple[str, ...] | None, func: str | None, since: int | None) -> int:
        where, params = workflows_where(states, func, since)
        row = self._one(f"SELECT count(*) FROM promises p WHERE {where}", params)
        return int(row[0]) if row else 0

    def delete_promises(self, ids: list[str]) -> int:
        deleted = self._exec("DELETE FROM promises WHERE id = ANY(%s)", (ids,))
        self._exec("DELETE FROM tasks WHERE root_id = ANY(%s)", (ids,))
        self._exec("DELETE FROM callbacks WHERE promise_id = ANY(%s)", (ids,))
        return deleted

    def _promises(self, where: str, params: Sequence[Any]) -> list[Promise]:
        return [promise_of(r) for r in self._rows(f"SELECT {_P} FROM promises WHERE {where}", params)]

    # -- tasks ------------------------------------------------------------------------------------
    def get_task(self, id: str) -> Task | None:
        row = self._locked_one(id, f"SELECT {_T} FROM tasks WHERE id = %s")
        return task_of(row) if row else None

    def insert_task(self, t: Task) -> None:
        self._exec(f"INSERT INTO tasks ({_T}) VALUES ({', '.join(['%s'] * len(TASK_COLUMNS))})", task_row(t))

    def update_task(self, t: Task) -> None:
        sets = ", ".join(f"{c} = %s" for c in TASK_COLUMNS[1:])
        self._exec(f"UPDATE tasks SET {sets} WHERE id = %s", (*task_row(t)[1:], t.id))

    def tasks_of_root(self, root_id: str) -> list[Task]:
        return self._tasks("root_id = %s AND state <> %s ORDER BY created_on, id", (root_id, COMPLETED))

    def tasks_of_process(self, process_id: str, states: tuple[str, ...]) -> list[Task]:
        return self._tasks("process_id = %s AND state = ANY(%s) ORDER BY created_on, id", (process_id, list(states)))

    def extend_leases(self, process_id: str, now: int, grace: int) -> int:
        return self._exec("UPDATE tasks SET expires_at = %s::bigint + LEAST(ttl, %s::bigint) WHERE process_id = %s "
                          "AND state = %s", (now + grace, INT64_MAX - now - grace, process_id, CLAIMED))

    def tasks_for(self, root_ids: list[str]) -> list[Task]:
        return self._tasks("root_id = ANY(%s) ORDER BY created_on, id", (root_ids,))

    def tasks_in_states(self, states: tuple[str, ...]) -> list[Task]:
        return self._tasks("state = ANY(%s) ORDER BY created_on, id", (list(states),))

    def expired_tasks(self, now: int, limit: int) -> list[Task]:
        return self._tasks("state = ANY(%s) AND expires_at <= %s ORDER BY expires_at, id LIMIT %s",
                           (list(_OUT), now, limit))

    def next_task_expiry(self) -> int | None:
        row = self._one("SELECT min(expires_at) FROM tasks WHERE state = ANY(%s)", (list(_OUT),))
        return row[0] if row else None

    def init_tasks(self, limit: int) -> list[Task]:
        return self._tasks("state = %s ORDER BY created_on, id LIMIT %s", (INIT, limit))

    def search_tasks(self, states: tuple[str, ...] | None, limit: int) -> list[Task]:
        if states:
            return self._tasks("state = ANY(%s) ORDER BY created_on DESC, id DESC LIMIT %s", (list(states), limit))
        return self._tasks("TRUE ORDER BY created_on DESC, id DESC LIMIT %s", (limit,))

    def count_tasks_by_state(self) -> dict[str, int]:
        return {s: int(n) for s, n in self._rows("SELECT state, count(*) FROM tasks GROUP BY state")}

    def _tasks(self, where: str, params: Sequence[Any]) -> list[Task]:
        return [task_of(r) for r in self._rows(f"SELECT {_T} FROM tasks WHERE {where}", params)]

    # -- callbacks --------------------------------------------------------------------------------
    def get_callback(self, id: str) -> Callback | None:
        row = self._one(f"SELECT {_C} FROM callbacks WHERE id = %s", (id,))
        return callback_of(row) if row else None

    def insert_callback(self, c: Callback) -> None:
        self._exec(f"INSERT INTO callbacks ({_C}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                   (c.id, c.promise_id, c.root_promise_id, c.recv, c.timeout, c.kind, c.created_on))

    def take_callbacks(self, promise_id: str) -> list[Callback]:
        rows = self._rows(f"DELETE FROM callbacks WHERE promise_id = %s RETURNING {_C}", (promise_id,))
        return sorted((callback_of(r) for r in rows), key=lambda c: (c.created_on, c.id))

    def callbacks_on(self, promise_id: str) -> list[Callback]:
        rows = self._rows(f"SELECT {_C} FROM callbacks WHERE promise_id = %s ORDER BY created_on, id", (promise_id,))
        return [callback_of(r) for r in rows]

    # -- schedules --------------------------------------------------------------------------------
    def get_schedule(self, id: str) -> Schedule | None:
        row = self._one(f"SELECT {_S} FROM schedules WHERE id = %s", (id,))
        return schedule_of(row) if row else None

    def upsert_schedule(self, s: Schedule) -> None:
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in SCHEDULE_COLUMNS[1:])
        self._exec(f"INSERT INTO schedules ({_S}) VALUES ({', '.join(['%s'] * len(SCHEDULE_COLUMNS))}) "
                   f"ON CONFLICT (id) DO UPDATE SET {sets}", (
                       s.id, s.description, s.cron, dumps(s.tags), s.promise_id, s.promise_timeout,
                       json.dumps(s.promise_param.to_json()), dumps(s.promise_tags), s.idempotency_key,
                       s.last_run_time, s.next_run_time, s.created_on))

    def delete_schedule(self, id: str) -> bool:
        return self._exec("DELETE FROM schedules WHERE id = %s", (id,)) > 0

    def search_schedules(self, id_glob: str | None, limit: int, cursor: tuple[int, str] | None) -> list[Schedule]:
        where, params = "TRUE", []  # type: str, list[Any]
        prefix = glob_prefix(id_glob)
        if prefix:
            where, params = ("id = %s", [prefix]) if prefix == id_glob else ("id LIKE %s", [like_pattern(prefix) + "%"])
        if cursor:
            where += " AND (created_on, id) < (%s, %s)"
            params += [cursor[0], cursor[1]]
        out: list[Schedule] = []
        for row in self._rows(f"SELECT {_S} FROM schedules WHERE {where} ORDER BY created_on DESC, id DESC", params):
            if glob_match(id_glob, row[0]):
                out.append(schedule_of(row))
                if len(out) == limit:
                    break
        return out

    def due_schedules(self, now: int, limit: int) -> list[Schedule]:
        rows = self._rows(f"SELECT {_S} FROM schedules WHERE next_run_time <= %s ORDER BY next_run_time, id LIMIT %s",
                          (now, limit))
        return [schedule_of(r) for r in rows]

    def next_schedule_time(self) -> int | None:
        row = self._one("SELECT min(next_run_time) FROM schedules")
        return row[0] if row else None

    # -- retention: PgRetention; these two are what a file backend does and a server does not -------
    def reclaim(self, pages: int) -> tuple[int, bool]:
        """0: PostgreSQL's autovacuum makes deleted rows' space reusable; it is not given back to the
        file system by the daemon (a ``VACUUM FULL`` is the operator's call: it locks the tables)."""
        return 0, False

    def size(self) -> int:
        row = self._one("SELECT sum(pg_total_relation_size(to_regclass(t))) FROM unnest(ARRAY['promises', 'tasks', "
                        "'callbacks', 'schedules', 'meta']) AS t")
        return int(row[0] or 0) if row else 0

    def collect(self, before: int, after: tuple[int, str] | None, limit: int,
                dry_run: bool = False) -> tuple[Collected, tuple[int, str] | None]:
        """One batch of retention (what and why: ``retention.py``, the same rules as on SQLite), on the
        partial index ``promises_done``."""
        where, params = f"completed_on IS NOT NULL AND {TOPS} AND completed_on < %s", [before]  # type: str, list[Any]
        if after is not None:
            where += " AND (completed_on, id) > (%s, %s)"
            params += [after[0], after[1]]
        tops = self._rows(f"SELECT id, completed_on, root_id FROM promises WHERE {where} ORDER BY completed_on, id "
                          "LIMIT %s", [*params, limit])
        ids, cursor = finished_graphs(
            tops, before, limit,
            lambda root: self._one("SELECT 1 FROM promises WHERE id = %s AND state = %s", (root, PENDING)) is not None,
            lambda top: self._rows(_GRAPH, (top, top)))
        counts = []
        for table, where in (("promises", "id = ANY(%s)"), ("tasks", "root_id = ANY(%s)"),
                             ("callbacks", "promise_id = ANY(%s) OR root_id = ANY(%s)")):
            lists = [ids] * where.count("%s")
            if dry_run:
                row = self._one(f"SELECT count(*) FROM {table} WHERE {where}", lists)
                counts.append(int(row[0]) if row else 0)
            else:
                counts.append(self._exec(f"DELETE FROM {table} WHERE {where}", lists))
        return Collected(counts[0], counts[1], counts[2], before=before, dry_run=dry_run), cursor


# One graph: the top, everything below it by parent links (UNION ends a cycle in hostile data), and every
# promise tagged with it as root.
_GRAPH = ('WITH RECURSIVE below(id) AS (SELECT %s::text COLLATE "C" UNION SELECT p.id FROM promises p JOIN below b '
          "ON p.parent_id = b.id AND p.id <> b.id) "
          "SELECT p.id, p.state, p.completed_on FROM promises p JOIN below b ON p.id = b.id "
          "UNION SELECT id, state, completed_on FROM promises WHERE root_id = %s")


def search_promises(rows_of: Callable[[str, Sequence[Any]], Rows], id_glob: str | None,
                    states: tuple[str, ...] | None, tags: dict[str, str] | None, limit: int,
                    cursor: tuple[int, str] | None) -> Found:
    """One page, newest first, the whole filter in SQL: ``LIKE`` for the id (only ``*`` is a wildcard),
    JSONB containment for tags (the GIN index ``promises_tags``)."""
    where, params = ["TRUE"], []  # type: list[str], list[Any]
    if id_glob and id_glob != "*":
        if glob_prefix(id_glob) == id_glob:
            where.append("id = %s")
            params.append(id_glob)
        else:
            where.append("id LIKE %s")
            params.append(like_pattern(id_glob))
    if states:
        where.append("state = ANY(%s)")
        params.append(list(states))
    if tags:
        where.append("tags @> %s::jsonb")
        params.append(json.dumps(tags))
    if cursor:
        where.append("(created_on, id) < (%s, %s)")
        params += [cursor[0], cursor[1]]
    rows = rows_of(f"SELECT {_P} FROM promises WHERE {' AND '.join(where)} ORDER BY created_on DESC, id DESC "
                   "LIMIT %s", [*params, limit + 1])
    found = [promise_of(r) for r in rows[:limit]]
    return found, (found[-1].created_on, found[-1].id) if len(rows) > limit else None


class PgReader:
    """Searches off the daemon's event loop: a small thread pool, each thread with its own connection
    (the interface of ``search.Reader``)."""

    def __init__(self, url: str, location: str, threads: int = 2) -> None:
        self.url, self.location = url, location
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="resonate-read")
        self._local = threading.local()
        self._all: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()

    def _rows(self, sql: str, params: Sequence[Any]) -> Rows:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = connect(self.url, self.location)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        with translated(self.location):
            return conn.execute(sql, params).fetchall()

    def search_promises(self, id_glob: str | None, states: tuple[str, ...] | None, tags: dict[str, str] | None,
                        limit: int, cursor: tuple[int, str] | None) -> Found:
        return search_promises(self._rows, id_glob, states, tags, limit, cursor)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(psycopg.Error):
                conn.close()


__all__ = ["PgReader", "PostgresStore", "unreachable"]
