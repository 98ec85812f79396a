"""Durable storage behind one narrow interface: the verbs the engine needs, records in and out.

``Store`` is a typed protocol; a backend is one module (``sqlite``, ``postgres``). No backend type, row or query
object leaves its module: callers get the frozen records of ``resonate_daemon.protocol``. A store is
not thread-safe by itself; its one user (the engine, on the daemon's event loop, or under the local
transport's lock) serialises every call. Every write happens inside ``transaction()``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from .. import errors
from ..paths import display_db as display_location
from ..paths import is_db_url as is_postgres_url
from ..protocol.records import PENDING, Callback, Promise, Schedule, Task
from ..protocol.results import Collected

DURABILITIES = ("full", "normal")
T = TypeVar("T")


class Store(Protocol):
    """Promises, tasks, callbacks and schedules. Searches are newest first; a cursor is the
    ``(created_on, id)`` of the last row of the previous page."""

    @property
    def location(self) -> str:
        """Where the data lives, for people (a file path, ``:memory:``, a URL with its password as ``***``)."""
        ...

    def transaction(self, durable: bool = True) -> AbstractContextManager[None]:
        """One write transaction. ``durable=False`` may skip the flush to disk for a write whose loss on
        power failure is harmless; commits stay in order. On a backend shared with other processes
        (PostgreSQL) it may raise ``Conflict``: nothing of it was kept, and its opener runs it again."""
        ...

    @property
    def slow_commit(self) -> bool:
        """Whether a commit waits for the disk, so that a caller on an event loop should run it elsewhere."""
        ...

    def begin_batch(self) -> None:
        """Group commit: open one write transaction that every ``transaction()`` until ``end_batch`` joins,
        each as a savepoint (a failed one is undone alone)."""
        ...

    def end_batch(self) -> Callable[[], None]:
        """Close the batch; returns the function that commits it, to run on any thread. Until it returns,
        ``transaction()`` waits for it."""
        ...

    def problem(self) -> str | None:
        """What is wrong with the store now (its file deleted or replaced while open, its server out of
        reach), or None."""
        ...
    def data_version(self) -> int:
        """A number that changes when another process commits to the store (how a read-only reader
        notices writes it cannot be told of; on PostgreSQL it may change for commits of other databases)."""
        ...
    def close(self) -> None: ...

    # -- promises ---------------------------------------------------------------------------------
    def get_promise(self, id: str) -> Promise | None: ...
    def insert_promise(self, p: Promise) -> None: ...
    def update_promise(self, p: Promise) -> None:
        """Store a completion: state, value, complete key, completed_on."""
        ...
    def promises_of_root(self, root_id: str) -> dict[str, Promise]:
        """Every promise tagged ``resonate:root`` = root_id (a replay's input, in one query)."""
        ...
    def children_of(self, parent_id: str) -> list[Promise]:
        """The promises tagged ``resonate:parent`` = parent_id (not itself), oldest first."""
        ...
    def subtree(self, id: str, limit: int) -> list[Promise]:
        """Everything below ``id`` by parent links, at most ``limit``, oldest first (cycles end)."""
        ...
    def search_promises(self, id_glob: str | None, states: tuple[str, ...] | None, tags: dict[str, str] | None,
                        limit: int, cursor: tuple[int, str] | None) -> tuple[list[Promise], tuple[int, str] | None]:
        ...
    def reader(self) -> Any:
        """A ``search.Reader`` (or one with its interface: ``pool``, ``search_promises``, ``close``) that
        runs searches off the caller's thread on its own connections, or None when the store has a single
        connection (in memory)."""
        ...

    def timed_out_promises(self, now: int, limit: int) -> list[Promise]:
        """Pending promises whose timeout is at or before ``now``, earliest first."""
        ...
    def next_promise_timeout(self) -> int | None: ...
    def count_promises_by_state(self) -> dict[str, int]: ...
    def pending_of_root(self, root_id: str) -> list[Promise]:
        """The pending promises tagged with this root (few: what a call graph waits on now)."""
        ...
    def search_workflows(self, states: tuple[str, ...] | None, func: str | None, since: int | None, limit: int,
                         cursor: tuple[int, str] | None) -> tuple[list[Promise], tuple[int, str] | None]:
        """Tops of call graphs (no parent, or itself as parent) that are invocations, newest first;
        ``func`` filters on their task's function, ``since`` on created_on."""
        ...
    def count_workflows(self, states: tuple[str, ...] | None, func: str | None, since: int | None) -> int: ...
    def reopen_promise(self, p: Promise) -> None:
        """Store a promise back to pending (a retried workflow): state, value, keys, completed_on, timeout."""
        ...
    def delete_promises(self, ids: list[str]) -> int:
        """Delete promises, the tasks rooted at them and the callbacks on them; how many promises."""
        ...

    # -- tasks ------------------------------------------------------------------------------------
    def get_task(self, id: str) -> Task | None: ...
    def insert_task(self, t: Task) -> None: ...
    def update_task(self, t: Task) -> None: ...
    def tasks_of_root(self, root_id: str) -> list[Task]:
        """The root's tasks that are not COMPLETED, oldest first."""
        ...
    def tasks_of_process(self, process_id: str, states: tuple[str, ...]) -> list[Task]: ...
    def tasks_for(self, root_ids: list[str]) -> list[Task]:
        """Every task (COMPLETED included) whose root is one of ``root_ids``, oldest first."""
        ...
    def tasks_in_states(self, states: tuple[str, ...]) -> list[Task]: ...
    def extend_leases(self, process_id: str, now: int, grace: int) -> int:
        """Every CLAIMED task of ``process_id``: ``expires_at`` = now + its ttl + grace (clamped to int64
        max, as ``records.after``), in one statement; how many (a heartbeat: the ``Beat`` transition)."""
        ...
    def expired_tasks(self, now: int, limit: int) -> list[Task]:
        """CLAIMED or ENQUEUED tasks whose ``expires_at`` is at or before ``now``, earliest first."""
        ...
    def next_task_expiry(self) -> int | None: ...
    def init_tasks(self, limit: int) -> list[Task]: ...
    def search_tasks(self, states: tuple[str, ...] | None, limit: int) -> list[Task]: ...
    def count_tasks_by_state(self) -> dict[str, int]: ...

    # -- callbacks and subscriptions ----------------------------------------------------------------
    def get_callback(self, id: str) -> Callback | None: ...
    def insert_callback(self, c: Callback) -> None: ...
    def take_callbacks(self, promise_id: str) -> list[Callback]:
        """The callbacks on a promise, deleted as they are read (they fire once), oldest first."""
        ...
    def callbacks_on(self, promise_id: str) -> list[Callback]: ...

    # -- schedules --------------------------------------------------------------------------------
    def get_schedule(self, id: str) -> Schedule | None: ...
    def upsert_schedule(self, s: Schedule) -> None: ...
    def delete_schedule(self, id: str) -> bool: ...
    def search_schedules(self, id_glob: str | None, limit: int, cursor: tuple[int, str] | None) -> list[Schedule]: ...
    def due_schedules(self, now: int, limit: int) -> list[Schedule]: ...
    def next_schedule_time(self) -> int | None: ...

    # -- retention --------------------------------------------------------------------------------
    def collect(self, before: int, after: tuple[int, str] | None, limit: int,
                dry_run: bool = False) -> tuple[Collected, tuple[int, str] | None]:
        """One batch, inside a transaction: delete (``dry_run``: only count) about ``limit`` promises of
        the call graphs whose top completed before ``before`` and that hold no pending promise (a top,
        everything below it, everything tagged with it as root), their tasks and their callbacks, taking
        tops oldest first after the top ``after``; returns the counts and the next batch's ``after``
        (None: none older left). Never a pending promise, nothing of a pending graph, never a schedule."""
        ...
    def reclaim(self, pages: int) -> tuple[int, bool]:
        """Give up to ``pages`` free pages of the file back, in its own transaction: (bytes, whether free
        pages remain). 0 where the backend cannot or does not (memory; PostgreSQL, whose autovacuum keeps
        the space for reuse)."""
        ...
    def size(self) -> int:
        """Bytes the store takes on disk (for a file: it and its write-ahead log; on PostgreSQL: its
        tables and their indexes)."""
        ...


def open_store(path: str = ":memory:", durability: str = "full", *, read_only: bool = False) -> Store:
    """Open (creating if needed) the store at ``path``: a SQLite file, locked to this process, or
    ``:memory:``, or a PostgreSQL database (``postgresql://...``: its schema created or migrated, one
    writing process at a time); ``read_only``: an existing database another process holds, read without
    its lock, nothing ever stored. psycopg is imported only here, only for a PostgreSQL URL."""
    if is_postgres_url(path):
        try:
            from .postgres import PostgresStore
        except ImportError:
            raise errors.StartupError('a PostgreSQL database needs psycopg 3: pip install "resonate-local[postgres]" '
                                      '(or pip install "psycopg[binary]")') from None
        return PostgresStore.open(path, durability, read_only=read_only)
    from .sqlite import SqliteStore

    return SqliteStore.open(path, durability, read_only=read_only)


def import_peewee_without_drivers() -> None:
    """Import peewee without letting it import psycopg (or psycopg2): when installed, peewee imports it
    at once (about 100 ms, and a driver the SQLite store never uses). For the daemon's own process only
    (``resonate_daemon.server`` calls it first): in a process that runs user code, an app using peewee on
    PostgreSQL needs peewee's psycopg. ``open_store`` of a PostgreSQL URL imports psycopg itself, later."""
    import sys

    if "peewee" in sys.modules:
        return
    blocked = [name for name in ("psycopg", "psycopg2") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not available" mark
    try:
        import peewee  # noqa: F401
    finally:
        for name in blocked:
            sys.modules.pop(name, None)


def schema_too_new(location: str, found: int, supported: int) -> errors.StartupError:
    """The one refusal, on every backend, of a database whose schema a newer resonate made (nothing in it
    is changed)."""
    return errors.StartupError(f"database {location} has schema version {found}, newer than this program's "
                               f"{supported}: a newer resonate made it; upgrade resonate to open it (nothing was "
                               "changed)")


class Conflict(Exception):
    """A transaction lost a race with another one on the same rows (a unique key taken, a deadlock, a
    serialization failure: PostgreSQL with other processes on the database). Nothing of it was kept;
    its opener runs it again, whole: ``retrying``."""


CONFLICT_RETRIES = 8


def retrying(attempt: Callable[[], T]) -> T:
    """``attempt()``, run again (up to ``CONFLICT_RETRIES`` times) while it raises ``Conflict``. The engine's
    operations go through it: each attempt is one whole transaction, and nothing of a lost one was kept
    (its messages are sent only after a commit)."""
    for _ in range(CONFLICT_RETRIES - 1):
        try:
            return attempt()
        except Conflict:
            continue
    return attempt()


Top = tuple[str, int, "str | None"]  # a top of a finished call graph: id, completed_on, its root tag


def finished_graphs(tops: list[Top], before: int, limit: int, pending: Callable[[str], bool],
                    graph: Callable[[str], list[tuple[str, str, int | None]]]) -> tuple[list[str], tuple[int, str] | None]:
    """Retention's rule, one for every backend: of ``tops`` (oldest first, at most ``limit``), the ids of
    each whole graph (``graph(top)``: id, state, completed_on) with nothing pending and everything completed
    before ``before``, about ``limit`` ids in all; and where the next batch starts (None: every older top
    was seen). A top tagged with a root still pending is skipped: that workflow's replay reads it."""
    doomed: dict[str, None] = {}  # ordered and without repeats
    cursor: tuple[int, str] | None = None
    for i, (top, done, root) in enumerate(tops):
        cursor = (done, top)
        if root and root != top and pending(root):
            continue
        members = graph(top)
        if all(state != PENDING and on is not None and on < before for _, state, on in members):
            doomed.update((id, None) for id, _, _ in members)
        if len(doomed) >= limit and i + 1 < len(tops):
            break
    else:
        if len(tops) < limit:
            cursor = None
    return list(doomed), cursor


def glob_match(pattern: str | None, text: str) -> bool:
    """``*`` matches anything; every other character is itself (``[`` and ``?`` included)."""
    if not pattern or pattern == "*":
        return True
    import fnmatch

    return fnmatch.fnmatchcase(text, pattern.replace("[", "[[]").replace("?", "[?]"))


def glob_prefix(pattern: str | None) -> str | None:
    """The literal prefix of a glob, for an index range (None: no narrowing)."""
    if not pattern or pattern == "*":
        return None
    return pattern.split("*", 1)[0] if "*" in pattern else pattern


__all__ = ["DURABILITIES", "Conflict", "Store", "display_location", "glob_match", "glob_prefix", "is_postgres_url",
           "open_store", "retrying", "schema_too_new"]
