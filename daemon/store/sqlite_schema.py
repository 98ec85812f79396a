"""The SQLite backend's schema and plumbing: peewee models (bound to a database late, never at import),
migrations, the one-process-per-file lock, precompiled statements, and SQLite's errors in our terms.
Used by ``sqlite.py`` only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import peewee as pw

from .. import errors

SCHEMA_VERSION = 3
DURABILITY = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}


def _first(query: Any) -> dict[str, Any] | None:
    """The first row of a ``.dicts()`` query (peewee's hints type it as a model instance)."""
    row: dict[str, Any] | None = query.first()
    return row


def _dumps(obj: dict[str, str] | None) -> str | None:
    return json.dumps(obj, separators=(",", ":")) if obj else None


def _loads(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text else {}


class Stmt:
    """A statement peewee writes once (in the database's own dialect) and we execute many times.

    Building SQL through peewee's query objects costs ~100 µs a statement, more than SQLite takes to
    run it; the hot paths compile their statement once with ``@@name`` sentinels as parameters, then
    pass the real values by name. Parameters that are not sentinels are kept as the constants they are.
    """

    def __init__(self, db: pw.Database, query: Any) -> None:
        self.db = db
        self.sql, params = query.sql()
        self.slots = [(p[2:], None) if isinstance(p, str) and p.startswith("@@") else (None, p) for p in params]

    def __call__(self, **values: Any) -> Any:
        params = [values[name] if name is not None else const for name, const in self.slots]
        return self.db.execute_sql(self.sql, params)


def _s(name: str) -> str:
    return "@@" + name


_log = logging.getLogger("resonate.store")
SQLITE_FULL = "database or disk is full"  # SQLite's message for SQLITE_FULL
_full_said_at = -1e9


@contextlib.contextmanager
def disk_full_as_store_full(where: str) -> Iterator[None]:
    """SQLITE_FULL ("database or disk is full") as ``StoreFull`` (507): the transaction was rolled back,
    nothing is acknowledged, and a retry succeeds once there is room."""
    try:
        yield
    except (pw.OperationalError, sqlite3.OperationalError) as exc:
        cause: BaseException | None = exc  # a failed COMMIT is followed by a failed ROLLBACK: look back
        while cause is not None and SQLITE_FULL not in str(cause):
            cause = cause.__context__
        if cause is None:
            raise
        global _full_said_at
        if time.monotonic() - _full_said_at > 10.0:  # said in the log once per 10 s, not per request
            _full_said_at = time.monotonic()
            _log.warning("disk full: %s cannot grow; writes get 507 until there is room", where)
        raise errors.StoreFull(f"disk full: the database {where} cannot grow; nothing was written. Free some "
                               "space (or `resonate gc`), then retry") from None


class _Model(pw.Model):
    class Meta:
        legacy_table_names = False


class PromiseRow(_Model):
    id = pw.TextField(primary_key=True)
    state = pw.CharField(max_length=20)
    param_headers = pw.TextField(null=True)
    param_data = pw.TextField(null=True)
    value_headers = pw.TextField(null=True)
    value_data = pw.TextField(null=True)
    timeout = pw.BigIntegerField()
    ikey_create = pw.TextField(null=True)
    ikey_complete = pw.TextField(null=True)
    tags = pw.TextField(null=True)
    root_id = pw.TextField(null=True, index=True)
    parent_id = pw.TextField(null=True, index=True)
    created_on = pw.BigIntegerField(index=True)
    completed_on = pw.BigIntegerField(null=True)

    class Meta:
        table_name = "promises"
        # The scheduler's question: which pending promise times out next.
        indexes = ((("state", "timeout"), False),)


class TaskRow(_Model):
    id = pw.TextField(primary_key=True)
    counter = pw.IntegerField()
    root_id = pw.TextField(index=True)
    leaf_id = pw.TextField(null=True)
    type = pw.CharField(max_length=10)
    state = pw.CharField(max_length=10)
    recv = pw.TextField()
    process_id = pw.TextField(null=True, index=True)
    ttl = pw.BigIntegerField(default=0)
    expires_at = pw.BigIntegerField(default=0)
    timeout = pw.BigIntegerField()
    attempt = pw.IntegerField(default=0)
    created_on = pw.BigIntegerField()
    completed_on = pw.BigIntegerField(null=True)
    func = pw.TextField(null=True)  # schema 2: routing by function and the history
    version = pw.IntegerField(default=0)
    claimed_on = pw.BigIntegerField(null=True)
    last_process_id = pw.TextField(null=True)

    class Meta:
        table_name = "tasks"
        indexes = ((("state", "expires_at"), False),)


class CallbackRow(_Model):
    id = pw.TextField(primary_key=True)
    promise_id = pw.TextField(index=True)
    root_id = pw.TextField()
    recv = pw.TextField()
    timeout = pw.BigIntegerField()
    kind = pw.CharField(max_length=10)
    created_on = pw.BigIntegerField()

    class Meta:
        table_name = "callbacks"


class ScheduleRow(_Model):
    id = pw.TextField(primary_key=True)
    description = pw.TextField(default="")
    cron = pw.TextField()
    tags = pw.TextField(null=True)
    promise_id = pw.TextField()
    promise_timeout = pw.BigIntegerField()
    promise_param = pw.TextField(null=True)
    promise_tags = pw.TextField(null=True)
    ikey = pw.TextField(null=True)
    last_run_time = pw.BigIntegerField(null=True)
    next_run_time = pw.BigIntegerField(index=True)
    created_on = pw.BigIntegerField()

    class Meta:
        table_name = "schedules"


class MetaRow(_Model):
    key = pw.TextField(primary_key=True)
    value = pw.TextField()

    class Meta:
        table_name = "meta"


MODELS: list[type[pw.Model]] = [PromiseRow, TaskRow, CallbackRow, ScheduleRow, MetaRow]


# A promise at the top of a call graph: no parent, or (official SDKs) itself as its parent.
TOPS = "(parent_id IS NULL OR parent_id = id)"


def _migrate_1(db: pw.Database) -> None:
    db.create_tables(MODELS)


def _migrate_2(db: pw.Database) -> None:
    """Tasks learn their function (routing by function), first claim and last holder (the history).
    A database made at version 1 gets the columns; one made now has them from _migrate_1 already."""
    have = {row[1] for row in db.execute_sql("PRAGMA table_info(tasks)").fetchall()}
    for name, decl in (("func", "TEXT"), ("version", "INTEGER NOT NULL DEFAULT 0"), ("claimed_on", "INTEGER"),
                       ("last_process_id", "TEXT")):
        if name not in have:
            db.execute_sql(f"ALTER TABLE tasks ADD COLUMN {name} {decl}")
    # The workflows list reads the tops of call graphs newest first: a partial index holds just those.
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS promises_tops ON promises (created_on DESC, id DESC) WHERE {TOPS}")


def _migrate_3(db: pw.Database) -> None:
    """Retention (``retention.py``) walks the finished tops of call graphs oldest first, and deletes the
    callbacks a deleted workflow registered. The switch of an older file to incremental vacuum needs a
    VACUUM, which cannot run in this transaction: ``SqliteStore`` does it after."""
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS promises_done ON promises (completed_on, id) "
                   f"WHERE completed_on IS NOT NULL AND {TOPS}")
    db.execute_sql("CREATE INDEX IF NOT EXISTS callbacks_root_id ON callbacks (root_id)")


# Schema migrations in order; entry i brings the schema from version i to i+1.
MIGRATIONS = [_migrate_1, _migrate_2, _migrate_3]


class FileLock:
    """One live process per database file, whatever name it is reached by: an exclusive flock on the
    database file itself, so a hard link or a symlink to it is the same lock (its inode). SQLite's own
    locks are POSIX (fcntl) locks, independent of flock on Linux. The holder's pid is written beside it,
    in ``DB.lock``, once the store is open (``mark``): for messages, and as a sign that a store was here.

    The fd stays open while the store is: closing any fd of the file would drop SQLite's POSIX locks."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid_path = path + ".lock"
        self._fd: int | None = None
        self.inode: tuple[int, int] | None = None  # (st_dev, st_ino) of the file locked

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            st = os.fstat(fd)
            os.close(fd)
            holder = _flock_holder(st.st_dev, st.st_ino)
            if not holder:
                with contextlib.suppress(OSError, ValueError):
                    with open(self.pid_path) as f:
                        holder = str(int(f.read().strip()))
            raise errors.StoreLocked(
                f"database {self.path!r} is in use by another process"
                + (f" (pid {holder})" if holder else "")
                + " (the same file, by this name or another: a link)"
                + "; stop it, or point this one at another file"
            ) from None
        st = os.fstat(fd)
        self.inode = (st.st_dev, st.st_ino)
        self._fd = fd

    def mark(self) -> None:
        """Write our pid beside the database (it is open and its schema is in place)."""
        fd = os.open(self.pid_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)

    def gone(self) -> str | None:
        """Why the file we locked is no longer the database at our path (deleted, replaced, moved), or None."""
        if self._fd is None or self.inode is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "deleted" if os.fstat(self._fd).st_nlink == 0 else "moved away"
        return None if (st.st_dev, st.st_ino) == self.inode else "replaced by another file"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _flock_holder(dev: int, ino: int) -> str:
    """The pid holding a flock on this inode, from /proc/locks (Linux; "" elsewhere or if unknown)."""
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    with contextlib.suppress(OSError):
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == want:
                    return parts[4]
    return ""


def refuse_an_emptied_store(path: str) -> None:
    """A 0-byte database where a store was before (its pid file is there) was truncated: starting an
    empty store in its place would hide the loss. Refused, with what to do."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return
    if size == 0 and os.path.exists(path + ".lock") and not os.path.exists(path + "-wal"):
        raise errors.StoreCorrupt(f"database {path!r} is empty (0 bytes), but a store was here before ({path}.lock "
                                  f"exists): it was truncated. Restore it from a backup, or remove {path}.lock to "
                                  "start a new, empty store")


def connect_sqlite(path: str, durability: str = "full") -> pw.SqliteDatabase:
    if durability not in DURABILITY:
        raise errors.InvalidRequest(f"durability must be one of {', '.join(DURABILITY)}, not {durability!r}")
    memory = path == ":memory:"
    pragmas: dict[str, Any] = {
        # First, before any table exists: a new file gives its free pages back by incremental vacuum
        # (retention); on an existing file this is a no-op until a VACUUM, see retention.py.
        "auto_vacuum": "incremental",
        "journal_mode": "memory" if memory else "wal",
        "synchronous": DURABILITY[durability],
        "busy_timeout": 5000,
        "foreign_keys": 0,
        "cache_size": -16000,
        "temp_store": "memory",
    }
    # One connection shared by every thread, serialised by the engine's lock; thread_safe=False keeps
    # peewee from opening one connection per thread (which, for ":memory:", would be separate databases).
    return pw.SqliteDatabase(path, pragmas=pragmas, thread_safe=False, check_same_thread=False,
                             autoconnect=False)
