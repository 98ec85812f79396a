"""The SQLite backend of ``Store``: peewee queries in, frozen records out.

The models and migrations are in ``sqlite_schema.py``; they bind to a database late (in
``SqliteStore.__init__``), never at import. SQLite runs in WAL mode; every write transaction is ``BEGIN
IMMEDIATE`` so two writers never deadlock on a lock upgrade, and ``synchronous=FULL`` by default so a
committed promise survives power loss (``durability="normal"`` keeps it across process crashes only, at
about a seventh of the commit cost).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import peewee as pw

from .. import errors
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
    Value,
)
from . import glob_match, glob_prefix, schema_too_new
from .retention import Retention
from .search import Reader, run_search
from .sqlite_schema import (
    MIGRATIONS,
    MODELS,
    SCHEMA_VERSION,
    SQLITE_FULL,
    TOPS,
    CallbackRow,
    FileLock,
    MetaRow,
    PromiseRow,
    ScheduleRow,
    Stmt,
    TaskRow,
    _dumps,
    _first,
    _loads,
    _s,
    connect_sqlite,
    disk_full_as_store_full,
    refuse_an_emptied_store,
)

log = logging.getLogger("resonate.store")


class _RollBack(Exception):
    """Ends a read-only store's transaction: whatever it did is rolled back."""


class SqliteStore(Retention):
    """``Store`` on SQLite (a file, locked to this process, or ``:memory:``)."""

    def __init__(self, db: pw.Database, *, lock_path: str | None = None, read_only: bool = False) -> None:
        self.db = db
        self.read_only = read_only
        self._warned = False
        self._batch: Any = None  # the open group-commit transaction (begin_batch), or None
        self._idle = threading.Event()  # clear while a batch commits on another thread
        self._idle.set()
        self._lock = FileLock(lock_path) if lock_path else None
        if self._lock:
            self._lock.acquire()
        try:
            db.bind(MODELS, bind_refs=False, bind_backrefs=False)
            try:
                db.connect(reuse_if_open=True)
            except pw.DatabaseError as exc:  # not a database at all (its header), or damaged past opening
                if SQLITE_FULL in str(exc):  # not damage: replaying the WAL needs room
                    raise errors.StoreFull(f"disk full: the database {self.location} cannot be opened until "
                                           "there is room (its write-ahead log is replayed at open)") from None
                raise errors.StoreCorrupt(f"database {self.location!r} cannot be read: {exc}; restore it from a "
                                          "backup, or move it away to start an empty one") from None
            self._sqlite = isinstance(db, pw.SqliteDatabase)
            # A commit that may skip the fsync (see transaction(durable=False)) only matters when
            # commits fsync at all: a file database at synchronous=FULL.
            self._relaxable = (self._sqlite and db.database != ":memory:"
                               and db.execute_sql("PRAGMA synchronous").fetchone()[0] == 2)  # 2 = FULL
            if read_only:
                self._check_version()
            else:
                with disk_full_as_store_full(self.location):
                    if self._lock:
                        self._quick_check()
                    self.migrate()
                    self._switch_to_incremental_vacuum()
                if self._lock:
                    self._lock.mark()
            self._compile()
        except BaseException:
            if self._lock:
                self._lock.release()
            raise

    @classmethod
    def open(cls, path: str = ":memory:", durability: str = "full", *, read_only: bool = False) -> SqliteStore:
        """Open (creating if needed) a SQLite store; a file store is locked to this process.

        ``read_only``: read a file another process holds (and writes), without its lock: every
        transaction is a snapshot that is rolled back, so nothing this store does is ever kept (a lazy
        timeout it applies shows in what it answers, and is stored by the owner when it applies it)."""
        if read_only:
            if path == ":memory:" or not os.path.isfile(path):
                raise errors.InvalidRequest(f"no database file at {path!r} to read")
            return cls(connect_sqlite(path, durability), read_only=True)
        lock = None if path == ":memory:" else path
        if lock:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            refuse_an_emptied_store(path)
        return cls(connect_sqlite(path, durability), lock_path=lock)

    def problem(self) -> str | None:
        return self._gone_message() if self._lock is not None and self._lock.gone() is not None else None

    def _gone_message(self) -> str:
        assert self._lock is not None
        message = (f"the database file {self.location} was {self._lock.gone()} while open: writes are refused, "
                   "so that nothing is acknowledged into a file nobody will open again; put it back, or restart "
                   "the daemon on the file you mean")
        if not self._warned:
            self._warned = True
            log.error("%s", message)
        return message

    def data_version(self) -> int:
        """Changes when another connection commits to the file (SQLite's ``PRAGMA data_version``)."""
        return int(self.db.execute_sql("PRAGMA data_version").fetchone()[0])

    def _quick_check(self) -> None:
        """A damaged file (truncated, overwritten, not a database) is refused at open, clearly, before
        anything is written into it."""
        try:
            rows = self.db.execute_sql("PRAGMA quick_check").fetchall()
        except pw.DatabaseError as exc:
            raise errors.StoreCorrupt(f"database {self.location!r} cannot be read: {exc}; restore it from a "
                                      "backup, or move it away to start an empty one") from None
        problems = [str(r[0]) for r in rows if r and r[0] != "ok"]
        if problems:
            raise errors.StoreCorrupt(f"database {self.location!r} is damaged ({'; '.join(problems[:3])}); restore "
                                      "it from a backup, or move it away to start an empty one")

    def _check_version(self) -> None:
        version = 0
        if self.db.table_exists("meta"):
            row = MetaRow.get_or_none(MetaRow.key == "schema_version")
            version = int(row.value) if row else 0
        if version > SCHEMA_VERSION:
            raise schema_too_new(self.location, version, SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise errors.StoreLocked(f"database {self.location!r} has schema version {version}, this program reads "
                                     f"{SCHEMA_VERSION}; it is migrated when opened for writing (not while another "
                                     "process holds it)")

    @property
    def location(self) -> str:
        return str(self.db.database)

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()
        if self._lock:
            self._lock.release()

    def _compile(self) -> None:
        db, P, T, C = self.db, PromiseRow, TaskRow, CallbackRow
        self._get_promise = Stmt(db, P.select().where(P.id == _s("id")))
        self._insert_promise = Stmt(db, P.insert(**{f: _s(f) for f in PROMISE_COLUMNS}))
        self._complete_promise = Stmt(db, P.update(
            state=_s("state"), value_headers=_s("value_headers"), value_data=_s("value_data"),
            ikey_complete=_s("ikey_complete"), completed_on=_s("completed_on")).where(P.id == _s("id")))
        self._promises_of_root = Stmt(db, P.select().where(P.root_id == _s("root")))
        self._get_task = Stmt(db, T.select().where(T.id == _s("id")))
        self._insert_task = Stmt(db, T.insert(**{f: _s(f) for f in TASK_COLUMNS}))
        self._update_task = Stmt(db, T.update(**{f: _s(f) for f in TASK_COLUMNS if f != "id"})
                                 .where(T.id == _s("id")))
        self._live_tasks_of_root = Stmt(db, T.select().where((T.root_id == _s("root")) & (T.state != COMPLETED))
                                        .order_by(T.created_on, T.id))
        self._callbacks_on = Stmt(db, C.select().where(C.promise_id == _s("id")).order_by(C.created_on, C.id))
        self._delete_callbacks = Stmt(db, C.delete().where(C.promise_id == _s("id")))
        self._get_callback = Stmt(db, C.select().where(C.id == _s("id")))
        self._extend_leases = Stmt(db, T.update(expires_at=pw.Value(_s("base")) + pw.fn.MIN(T.ttl, pw.Value(_s("cap"))))
                                   .where((T.process_id == _s("pid")) & (T.state == CLAIMED)))
        self._insert_callback = Stmt(db, C.insert(**{f: _s(f) for f in CALLBACK_COLUMNS}))

    # -- schema -----------------------------------------------------------------------------------
    def migrate(self) -> None:
        with self.transaction():
            version = 0
            if self.db.table_exists("meta"):
                row = MetaRow.get_or_none(MetaRow.key == "schema_version")
                version = int(row.value) if row else 0
            if version > SCHEMA_VERSION:
                raise schema_too_new(self.location, version, SCHEMA_VERSION)
            for step in MIGRATIONS[version:]:
                step(self.db)
            if version != SCHEMA_VERSION:
                MetaRow.replace(key="schema_version", value=str(SCHEMA_VERSION)).execute()

    @contextlib.contextmanager
    def transaction(self, durable: bool = True) -> Iterator[None]:
        """One write transaction. ``durable=False`` commits without the WAL fsync, for writes whose loss
        on power failure is harmless (a task marked sent goes back to INIT on restart anyway); the next
        durable commit fsyncs the WAL, and with it this one, so the order of commits is kept. A full disk
        rolls it back and raises ``StoreFull``."""
        with disk_full_as_store_full(self.location), self._transaction(durable):
            yield

    @contextlib.contextmanager
    def _transaction(self, durable: bool) -> Iterator[None]:
        if not self._idle.is_set():  # a batch commits on another thread: the connection is its until then
            self._idle.wait()
        if self._batch is not None:  # inside a group commit: a savepoint, undone alone if it fails
            with self.db.atomic():
                yield
            return
        if self._lock is not None and self._lock.gone() is not None:
            raise errors.StoreGone(self._gone_message())
        if self.read_only:  # a snapshot, never kept: always rolled back
            try:
                with self.db.atomic("DEFERRED"):
                    yield
                    raise _RollBack
            except _RollBack:
                pass
            return
        if self._sqlite:
            if durable or not self._relaxable:
                with self.db.atomic("IMMEDIATE"):
                    yield
                return
            self.db.execute_sql("PRAGMA synchronous=NORMAL")
            try:
                with self.db.atomic("IMMEDIATE"):
                    yield
            finally:
                self.db.execute_sql("PRAGMA synchronous=FULL")
        else:
            with self.db.atomic():
                yield

    # -- group commit (the daemon's batches: server/batch.py) ----------------------------------------
    @property
    def slow_commit(self) -> bool:
        """Whether a commit waits for the disk (a file at synchronous=FULL): worth moving off the loop."""
        return self._relaxable

    def begin_batch(self) -> None:
        """Open one write transaction that every ``transaction()`` joins, each in its own savepoint,
        until ``end_batch``."""
        if not self._idle.is_set():
            self._idle.wait()
        if self._lock is not None and self._lock.gone() is not None:
            raise errors.StoreGone(self._gone_message())
        ctx = self.db.atomic("IMMEDIATE")
        with disk_full_as_store_full(self.location):
            ctx.__enter__()
        self._batch = ctx

    def end_batch(self) -> Callable[[], None]:
        """Close the batch; returns its commit, to run on any thread. Until that commit returns, the
        store's user waits in ``transaction()`` (the connection is the commit's)."""
        ctx, self._batch = self._batch, None
        self._idle.clear()

        def commit() -> None:
            try:
                with disk_full_as_store_full(self.location):
                    ctx.__exit__(None, None, None)  # a failed COMMIT is rolled back by peewee
            finally:
                self._idle.set()

        return commit

    # -- promises ---------------------------------------------------------------------------------
    def get_promise(self, id: str) -> Promise | None:
        row = self._get_promise(id=id).fetchone()
        return _promise_t(row) if row else None

    def promises_of_root(self, root_id: str) -> dict[str, Promise]:
        """Every promise of one call graph (tag ``resonate:root``), for a replay to read in one query."""
        return {r[0]: _promise_t(r) for r in self._promises_of_root(root=root_id).fetchall()}

    def children_of(self, parent_id: str) -> list[Promise]:
        P = PromiseRow
        query = P.select().where((P.parent_id == parent_id) & (P.id != parent_id)).order_by(P.created_on, P.id)
        return [_promise(r) for r in query.dicts()]

    def subtree(self, id: str, limit: int) -> list[Promise]:
        # One recursive query; UNION (not UNION ALL) drops rows already seen, so a cycle of parent tags
        # in hostile data ends instead of looping. The root's own row is not part of the answer.
        cols = ", ".join(f"p.{c}" for c in PROMISE_COLUMNS)
        sql = (f"WITH RECURSIVE below(id) AS (SELECT ? UNION SELECT p.id FROM promises p JOIN below b "
               f"ON p.parent_id = b.id AND p.id != b.id) SELECT {cols} FROM promises p JOIN below b ON p.id = b.id "
               f"WHERE p.id != ? ORDER BY p.created_on, p.id LIMIT ?")
        return [_promise_t(r) for r in self.db.execute_sql(sql, (id, id, limit)).fetchall()]

    def insert_promise(self, p: Promise) -> None:
        self._insert_promise(
            id=p.id, state=p.state, param_headers=_dumps(p.param.headers), param_data=p.param.data,
            value_headers=_dumps(p.value.headers), value_data=p.value.data, timeout=p.timeout,
            ikey_create=p.idempotency_key_for_create, ikey_complete=p.idempotency_key_for_complete,
            tags=_dumps(p.tags), root_id=p.tags.get(TAG_ROOT), parent_id=p.tags.get(TAG_PARENT),
            created_on=p.created_on, completed_on=p.completed_on,
        )

    def update_promise(self, p: Promise) -> None:
        self._complete_promise(
            id=p.id, state=p.state, value_headers=_dumps(p.value.headers), value_data=p.value.data,
            ikey_complete=p.idempotency_key_for_complete, completed_on=p.completed_on,
        )

    def timed_out_promises(self, now: int, limit: int) -> list[Promise]:
        query = (PromiseRow.select()
                 .where((PromiseRow.state == PENDING) & (PromiseRow.timeout <= now))
                 .order_by(PromiseRow.timeout).limit(limit))
        return [_promise(r) for r in query.dicts()]

    def next_promise_timeout(self) -> int | None:
        row = (PromiseRow.select(PromiseRow.timeout).where(PromiseRow.state == PENDING)
               .order_by(PromiseRow.timeout).limit(1).tuples().first())
        return row[0] if row else None

    def search_promises(self, id_glob: str | None, states: tuple[str, ...] | None,
                        tags: dict[str, str] | None, limit: int,
                        cursor: tuple[int, str] | None) -> tuple[list[Promise], tuple[int, str] | None]:
        """Newest first; ``cursor`` is the (created_on, id) of the last row of the previous page."""
        return run_search(lambda q: list(q.dicts()), _promise, id_glob, states, tags, limit, cursor)

    def reader(self) -> Reader | None:
        """Searches on their own connections and threads (None for ``:memory:``: one connection only)."""
        return None if self.location == ":memory:" else Reader(self.location, _promise)

    def pending_of_root(self, root_id: str) -> list[Promise]:
        rows = PromiseRow.select().where((PromiseRow.root_id == root_id) & (PromiseRow.state == PENDING)).dicts()
        return [_promise(r) for r in rows]

    def search_workflows(self, states: tuple[str, ...] | None, func: str | None, since: int | None, limit: int,
                         cursor: tuple[int, str] | None) -> tuple[list[Promise], tuple[int, str] | None]:
        where, params = self._workflows_where(states, func, since)
        if cursor:
            where += " AND (p.created_on < ? OR (p.created_on = ? AND p.id < ?))"
            params += [cursor[0], cursor[0], cursor[1]]
        cols = ", ".join(f"p.{c}" for c in PROMISE_COLUMNS)
        sql = (f"SELECT {cols} FROM promises p INDEXED BY promises_tops WHERE {where} "
               f"ORDER BY p.created_on DESC, p.id DESC LIMIT ?")
        rows = self.db.execute_sql(sql, [*params, limit + 1]).fetchall()
        found = [_promise_t(r) for r in rows[:limit]]
        return found, (found[-1].created_on, found[-1].id) if len(rows) > limit else None

    def count_workflows(self, states: tuple[str, ...] | None, func: str | None, since: int | None) -> int:
        where, params = self._workflows_where(states, func, since)
        return int(self.db.execute_sql(f"SELECT COUNT(*) FROM promises p INDEXED BY promises_tops WHERE {where}",
                                       params).fetchone()[0])

    @staticmethod
    def _workflows_where(states: tuple[str, ...] | None, func: str | None, since: int | None) -> tuple[str, list[Any]]:
        """Tops of call graphs that are invocations (their invoke task exists), filtered."""
        where = TOPS.replace("parent_id", "p.parent_id").replace("= id", "= p.id")
        task = "SELECT 1 FROM tasks t WHERE t.id = '__invoke:' || p.id"
        params: list[Any] = []
        if func:
            task += " AND t.func = ?"
            params.append(func)
        where += f" AND EXISTS ({task})"
        if states:
            where += f" AND p.state IN ({', '.join('?' * len(states))})"
            params += list(states)
        if since is not None:
            where += " AND p.created_on >= ?"
            params.append(since)
        return where, params

    def reopen_promise(self, p: Promise) -> None:
        PromiseRow.update(state=p.state, value_headers=_dumps(p.value.headers), value_data=p.value.data,
                          ikey_complete=p.idempotency_key_for_complete, completed_on=p.completed_on,
                          timeout=p.timeout).where(PromiseRow.id == p.id).execute()

    def delete_promises(self, ids: list[str]) -> int:
        deleted = 0
        for i in range(0, len(ids), 500):  # SQLite limits the parameters of one statement
            chunk = ids[i:i + 500]
            deleted += PromiseRow.delete().where(PromiseRow.id.in_(chunk)).execute()
            TaskRow.delete().where(TaskRow.root_id.in_(chunk)).execute()
            CallbackRow.delete().where(CallbackRow.promise_id.in_(chunk)).execute()
        return deleted

    def count_promises_by_state(self) -> dict[str, int]:
        query = PromiseRow.select(PromiseRow.state, pw.fn.COUNT(PromiseRow.id)).group_by(PromiseRow.state)
        rows: list[tuple[str, int]] = list(query.tuples())  # type: ignore[arg-type]  # peewee hints say model
        return dict(rows)

    # -- tasks ------------------------------------------------------------------------------------
    def get_task(self, id: str) -> Task | None:
        row = self._get_task(id=id).fetchone()
        return _task_t(row) if row else None

    def insert_task(self, t: Task) -> None:
        self._insert_task(**_task_row(t))

    def update_task(self, t: Task) -> None:
        self._update_task(**_task_row(t))

    def tasks_of_root(self, root_id: str) -> list[Task]:
        return [_task_t(r) for r in self._live_tasks_of_root(root=root_id).fetchall()]

    def tasks_of_process(self, process_id: str, states: tuple[str, ...]) -> list[Task]:
        query = TaskRow.select().where((TaskRow.process_id == process_id) & TaskRow.state.in_(list(states)))
        return [_task(r) for r in query.dicts()]

    def extend_leases(self, process_id: str, now: int, grace: int) -> int:
        return int(self._extend_leases(base=now + grace, cap=INT64_MAX - now - grace, pid=process_id).rowcount)

    def tasks_for(self, root_ids: list[str]) -> list[Task]:
        out: list[Task] = []
        for i in range(0, len(root_ids), 500):  # SQLite limits the parameters of one statement
            query = TaskRow.select().where(TaskRow.root_id.in_(root_ids[i:i + 500]))
            out += [_task(r) for r in query.dicts()]
        return sorted(out, key=lambda t: (t.created_on, t.id))

    def tasks_in_states(self, states: tuple[str, ...]) -> list[Task]:
        query = TaskRow.select().where(TaskRow.state.in_(list(states))).order_by(TaskRow.created_on)
        return [_task(r) for r in query.dicts()]

    def expired_tasks(self, now: int, limit: int) -> list[Task]:
        query = (TaskRow.select()
                 .where(TaskRow.state.in_([CLAIMED, ENQUEUED]) & (TaskRow.expires_at <= now))
                 .order_by(TaskRow.expires_at).limit(limit))
        return [_task(r) for r in query.dicts()]

    def next_task_expiry(self) -> int | None:
        row = (TaskRow.select(pw.fn.MIN(TaskRow.expires_at))
               .where(TaskRow.state.in_([CLAIMED, ENQUEUED])).tuples().first())
        return row[0] if row and row[0] is not None else None

    def init_tasks(self, limit: int) -> list[Task]:
        query = TaskRow.select().where(TaskRow.state == INIT).order_by(TaskRow.created_on).limit(limit)
        return [_task(r) for r in query.dicts()]

    def search_tasks(self, states: tuple[str, ...] | None, limit: int) -> list[Task]:
        query = TaskRow.select()
        if states:
            query = query.where(TaskRow.state.in_(list(states)))
        return [_task(r) for r in query.order_by(TaskRow.created_on.desc()).limit(limit).dicts()]

    def count_tasks_by_state(self) -> dict[str, int]:
        query = TaskRow.select(TaskRow.state, pw.fn.COUNT(TaskRow.id)).group_by(TaskRow.state)
        rows: list[tuple[str, int]] = list(query.tuples())  # type: ignore[arg-type]  # peewee hints say model
        return dict(rows)

    # -- callbacks and subscriptions ----------------------------------------------------------------
    def get_callback(self, id: str) -> Callback | None:
        row = self._get_callback(id=id).fetchone()
        return _callback(dict(zip(CALLBACK_COLUMNS, row, strict=True))) if row else None

    def insert_callback(self, c: Callback) -> None:
        self._insert_callback(id=c.id, promise_id=c.promise_id, root_id=c.root_promise_id, recv=c.recv,
                              timeout=c.timeout, kind=c.kind, created_on=c.created_on)

    def take_callbacks(self, promise_id: str) -> list[Callback]:
        """The callbacks and subscriptions on a promise, deleted as they are read (they fire once)."""
        rows = self._callbacks_on(id=promise_id).fetchall()
        if rows:
            self._delete_callbacks(id=promise_id)
        return [_callback(dict(zip(CALLBACK_COLUMNS, r, strict=True))) for r in rows]

    def callbacks_on(self, promise_id: str) -> list[Callback]:
        rows = CallbackRow.select().where(CallbackRow.promise_id == promise_id).dicts()
        return [_callback(r) for r in rows]

    # -- schedules --------------------------------------------------------------------------------
    def get_schedule(self, id: str) -> Schedule | None:
        row = _first(ScheduleRow.select().where(ScheduleRow.id == id).dicts())
        return _schedule(row) if row else None

    def upsert_schedule(self, s: Schedule) -> None:
        ScheduleRow.replace(
            id=s.id, description=s.description, cron=s.cron, tags=_dumps(s.tags), promise_id=s.promise_id,
            promise_timeout=s.promise_timeout, promise_param=json.dumps(s.promise_param.to_json()),
            promise_tags=_dumps(s.promise_tags), ikey=s.idempotency_key, last_run_time=s.last_run_time,
            next_run_time=s.next_run_time, created_on=s.created_on,
        ).execute()

    def delete_schedule(self, id: str) -> bool:
        return ScheduleRow.delete().where(ScheduleRow.id == id).execute() > 0

    def search_schedules(self, id_glob: str | None, limit: int, cursor: tuple[int, str] | None) -> list[Schedule]:
        """Newest first; ``cursor`` is the (created_on, id) of the last row of the previous page."""
        S = ScheduleRow
        query = S.select()
        prefix = glob_prefix(id_glob)
        if prefix:
            query = query.where((S.id == prefix) if prefix == id_glob else S.id.startswith(prefix))
        if cursor:
            query = query.where((S.created_on < cursor[0]) | ((S.created_on == cursor[0]) & (S.id < cursor[1])))
        out: list[Schedule] = []
        rows: Any = query.order_by(S.created_on.desc(), S.id.desc()).dicts()
        for row in rows:
            if glob_match(id_glob, row["id"]):
                out.append(_schedule(row))
                if len(out) == limit:
                    break
        return out

    def due_schedules(self, now: int, limit: int) -> list[Schedule]:
        query = (ScheduleRow.select().where(ScheduleRow.next_run_time <= now)
                 .order_by(ScheduleRow.next_run_time).limit(limit))
        return [_schedule(r) for r in query.dicts()]

    def next_schedule_time(self) -> int | None:
        row = ScheduleRow.select(pw.fn.MIN(ScheduleRow.next_run_time)).tuples().first()
        return row[0] if row and row[0] is not None else None


PROMISE_COLUMNS = [f.name for f in PromiseRow._meta.sorted_fields]
TASK_COLUMNS = [f.name for f in TaskRow._meta.sorted_fields]
CALLBACK_COLUMNS = [f.name for f in CallbackRow._meta.sorted_fields]


def _promise_t(r: tuple[Any, ...]) -> Promise:
    """A promise from a row tuple in PROMISE_COLUMNS order (what the compiled SELECTs return)."""
    return Promise(
        id=r[0], state=r[1], param=Value(_loads(r[2]), r[3]), value=Value(_loads(r[4]), r[5]),
        timeout=r[6], idempotency_key_for_create=r[7], idempotency_key_for_complete=r[8], tags=_loads(r[9]),
        created_on=r[12], completed_on=r[13],
    )


def _task_t(r: tuple[Any, ...]) -> Task:
    return _task(dict(zip(TASK_COLUMNS, r, strict=True)))


def _promise(row: Any) -> Promise:
    return Promise(
        id=row["id"], state=row["state"],
        param=Value(_loads(row["param_headers"]), row["param_data"]),
        value=Value(_loads(row["value_headers"]), row["value_data"]),
        timeout=row["timeout"], tags=_loads(row["tags"]), created_on=row["created_on"],
        completed_on=row["completed_on"], idempotency_key_for_create=row["ikey_create"],
        idempotency_key_for_complete=row["ikey_complete"],
    )


def _task(row: Any) -> Task:
    return Task(
        id=row["id"], counter=row["counter"], root_promise_id=row["root_id"], type=row["type"],
        state=row["state"], recv=row["recv"], timeout=row["timeout"], created_on=row["created_on"],
        leaf_promise_id=row["leaf_id"], process_id=row["process_id"], ttl=row["ttl"],
        expires_at=row["expires_at"], attempt=row["attempt"], completed_on=row["completed_on"],
        func=row["func"], version=row["version"] or 0, claimed_on=row["claimed_on"],
        last_process_id=row["last_process_id"],
    )


def _task_row(t: Task) -> dict[str, Any]:
    return dict(
        id=t.id, counter=t.counter, root_id=t.root_promise_id, leaf_id=t.leaf_promise_id, type=t.type,
        state=t.state, recv=t.recv, process_id=t.process_id, ttl=t.ttl, expires_at=t.expires_at,
        timeout=t.timeout, attempt=t.attempt, created_on=t.created_on, completed_on=t.completed_on,
        func=t.func, version=t.version, claimed_on=t.claimed_on, last_process_id=t.last_process_id,
    )


def _callback(row: Any) -> Callback:
    return Callback(id=row["id"], promise_id=row["promise_id"], root_promise_id=row["root_id"],
                    recv=row["recv"], timeout=row["timeout"], created_on=row["created_on"], kind=row["kind"])


def _schedule(row: Any) -> Schedule:
    return Schedule(
        id=row["id"], cron=row["cron"], promise_id=row["promise_id"], promise_timeout=row["promise_timeout"],
        next_run_time=row["next_run_time"], created_on=row["created_on"], description=row["description"],
        tags=_loads(row["tags"]), promise_param=Value.from_json(json.loads(row["promise_param"] or "null")),
        promise_tags=_loads(row["promise_tags"]), idempotency_key=row["ikey"],
        last_run_time=row["last_run_time"],
    )
