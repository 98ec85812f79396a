"""The PostgreSQL backend's schema and plumbing: its migrations, the keys of its advisory locks,
PostgreSQL's errors in our terms, and its rows as records. Used by ``postgres.py`` (and the tests); it
imports psycopg only inside functions. Its URLs are recognised and shown without a password by
``resonate_daemon.paths`` (``is_db_url``, ``display_db``), which loads no driver.

Versions: a schema version N means the same tables, columns and indexes on both backends (``meta`` holds
``schema_version``, as in SQLite): version 1 the tables, 2 the task's function and history columns and
the index of call-graph tops, 3 the indexes of retention. The migrations run in one transaction under a
transaction-level advisory lock, so two daemons starting on one new database never both create it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .. import errors
from ..protocol.records import Callback, Promise, Schedule, Task, Value
from . import Conflict, schema_too_new

if TYPE_CHECKING:
    import psycopg

SCHEMA_VERSION = 3

# Advisory lock keys (one 64-bit space per database, shared with anything else using advisory locks:
# ours are fixed constants mixed with the schema name, see ``lock_key``).
MIGRATE_LOCK = 0x7265_736F_6E61_7465  # "resonate": held by the transaction that migrates
HOLDER_LOCK = 0x7265_736F_686F_6C64  # "resohold": held by the session of the one daemon that writes


def lock_key(base: int, schema: str) -> int:
    """An advisory lock key for one schema of one database (a signed 64-bit integer)."""
    h = 0
    for ch in schema.encode():
        h = (h * 131 + ch) & 0xFFFF_FFFF
    key = (base ^ (h << 16)) & 0xFFFF_FFFF_FFFF_FFFF
    return key - (1 << 64) if key >= 1 << 63 else key


TOPS = "(parent_id IS NULL OR parent_id = id)"

_V1 = """
CREATE TABLE IF NOT EXISTS meta (key text COLLATE "C" PRIMARY KEY, value text NOT NULL);
CREATE TABLE promises (
    id text COLLATE "C" PRIMARY KEY, state text NOT NULL, param_headers text, param_data text,
    value_headers text, value_data text, timeout bigint NOT NULL, ikey_create text, ikey_complete text,
    tags jsonb, root_id text COLLATE "C", parent_id text COLLATE "C", created_on bigint NOT NULL,
    completed_on bigint);
CREATE INDEX promises_root_id ON promises (root_id);
CREATE INDEX promises_parent_id ON promises (parent_id);
CREATE INDEX promises_created_on ON promises (created_on);
CREATE INDEX promises_state_timeout ON promises (state, timeout);
CREATE INDEX promises_tags ON promises USING gin (tags jsonb_path_ops);
CREATE TABLE tasks (
    id text COLLATE "C" PRIMARY KEY, counter integer NOT NULL, root_id text COLLATE "C" NOT NULL, leaf_id text,
    type text NOT NULL, state text NOT NULL, recv text NOT NULL, process_id text, ttl bigint NOT NULL DEFAULT 0,
    expires_at bigint NOT NULL DEFAULT 0, timeout bigint NOT NULL, attempt integer NOT NULL DEFAULT 0,
    created_on bigint NOT NULL, completed_on bigint);
CREATE INDEX tasks_root_id ON tasks (root_id);
CREATE INDEX tasks_process_id ON tasks (process_id);
CREATE INDEX tasks_state_expires_at ON tasks (state, expires_at);
CREATE TABLE callbacks (
    id text COLLATE "C" PRIMARY KEY, promise_id text COLLATE "C" NOT NULL, root_id text COLLATE "C" NOT NULL,
    recv text NOT NULL, timeout bigint NOT NULL, kind text NOT NULL, created_on bigint NOT NULL);
CREATE INDEX callbacks_promise_id ON callbacks (promise_id);
CREATE TABLE schedules (
    id text COLLATE "C" PRIMARY KEY, description text NOT NULL DEFAULT '', cron text NOT NULL, tags text,
    promise_id text NOT NULL, promise_timeout bigint NOT NULL, promise_param text, promise_tags text, ikey text,
    last_run_time bigint, next_run_time bigint NOT NULL, created_on bigint NOT NULL);
CREATE INDEX schedules_next_run_time ON schedules (next_run_time);
"""

_V2 = f"""
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS func text, ADD COLUMN IF NOT EXISTS version integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS claimed_on bigint, ADD COLUMN IF NOT EXISTS last_process_id text;
CREATE INDEX IF NOT EXISTS promises_tops ON promises (created_on DESC, id DESC) WHERE {TOPS};
"""

_V3 = f"""
CREATE INDEX IF NOT EXISTS promises_done ON promises (completed_on, id) WHERE completed_on IS NOT NULL AND {TOPS};
CREATE INDEX IF NOT EXISTS callbacks_root_id ON callbacks (root_id);
"""

# Entry i brings the schema from version i to i + 1 (the same steps as sqlite_schema.MIGRATIONS).
MIGRATIONS = [_V1, _V2, _V3]


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The version stored in ``meta`` of the current schema (0: no tables of ours yet)."""
    if conn.execute("SELECT to_regclass('meta')").fetchone() == (None,):
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def too_new(version: int, location: str) -> errors.StartupError:
    return schema_too_new(location, version, SCHEMA_VERSION)


def migrate(conn: psycopg.Connection[Any], location: str, upto: int = SCHEMA_VERSION) -> int:
    """Bring the schema to ``upto`` in one transaction (data kept); returns the version found. A schema
    newer than this program is refused, untouched."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(MIGRATE_LOCK, current_schema(conn)),))
        found = schema_version(conn)
        if found > SCHEMA_VERSION:
            raise too_new(found, location)
        for step in MIGRATIONS[found:upto]:
            conn.execute(step.encode())
        if found < upto:
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', %s) ON CONFLICT (key) "
                         "DO UPDATE SET value = EXCLUDED.value", (str(upto),))
    return found


def current_schema(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_schema()").fetchone()
    if row is None or row[0] is None:
        raise errors.StartupError("the PostgreSQL search_path names no schema that exists: create it, or fix "
                                  "the options in the URL")
    return str(row[0])


# -- connections and queries ---------------------------------------------------------------------
def connect(url: str, location: str) -> psycopg.Connection[Any]:
    """An autocommit connection, named for ``pg_stat_activity`` (and for the message that says who holds
    a database); a bad URL or an unreachable server is one clear error, never with the password."""
    import psycopg

    options: dict[str, Any] = {"application_name": f"resonate pid {os.getpid()} on {socket.gethostname()}"[:63]}
    if "connect_timeout" not in url:  # the URL's own, if it has one; else 10 s, not libpq's forever
        options["connect_timeout"] = 10
    try:
        return psycopg.connect(url, autocommit=True, **options)
    except psycopg.ProgrammingError as exc:  # the URL itself: an unknown option, a bad value
        raise errors.InvalidRequest(f"bad PostgreSQL URL {location}: {_scrub(str(exc), url)}") from None
    except psycopg.Error as exc:
        raise errors.StoreGone(f"cannot connect to the PostgreSQL database {location}: {_scrub(str(exc), url)}") from None


def _scrub(message: str, url: str) -> str:
    """A driver message with any password of ``url`` taken out, on one line."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    secrets = []
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.password:
            secrets += [parts.password, unquote(parts.password)]
        secrets += [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
    for secret in secrets:
        message = message.replace(secret, "***")
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return "; ".join(lines) or "no reason given"


def workflows_where(states: tuple[str, ...] | None, func: str | None, since: int | None) -> tuple[str, list[Any]]:
    """Tops of call graphs that are invocations (their invoke task exists), filtered."""
    where = TOPS.replace("parent_id", "p.parent_id").replace("= id", "= p.id")
    task = "SELECT 1 FROM tasks t WHERE t.id = '__invoke:' || p.id"
    params: list[Any] = []
    if func:
        task += " AND t.func = %s"
        params.append(func)
    where += f" AND EXISTS ({task})"
    if states:
        where += " AND p.state = ANY(%s)"
        params.append(list(states))
    if since is not None:
        where += " AND p.created_on >= %s"
        params.append(since)
    return where, params



# -- errors ---------------------------------------------------------------------------------------
CONFLICT_STATES = ("40001", "40P01", "23505")  # serialization_failure, deadlock_detected, unique_violation
_PASSWORD = re.compile(r"(password\s*=\s*)\S+", re.IGNORECASE)


def unreachable(location: str, exc: BaseException) -> errors.StoreGone:
    """A connection that failed or was lost, as a 503: the request was not acknowledged (a transaction whose
    COMMIT was under way may or may not be stored; one before it is not); retry later."""
    reason = _PASSWORD.sub(r"\1***", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    return errors.StoreGone(f"the PostgreSQL database {location} cannot be reached ({reason}); the request "
                            "was not acknowledged: retry once it is back")


@contextlib.contextmanager
def translated(location: str) -> Iterator[None]:
    """psycopg's errors in our terms: races as ``Conflict``, a lost server as ``StoreGone``, data that
    PostgreSQL cannot hold (a NUL character) as ``InvalidRequest``, a full disk as ``StoreFull``."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        state = getattr(exc, "sqlstate", None) or ""
        if state in CONFLICT_STATES:
            raise Conflict(state) from exc
        if state == "53100":  # disk_full
            raise errors.StoreFull(f"disk full: the PostgreSQL database {location} cannot grow; nothing was "
                                   "written. Free some space (or `resonate gc`), then retry") from None
        if state.startswith("22") or isinstance(exc, psycopg.DataError):  # e.g. a NUL, which text cannot hold
            raise errors.InvalidRequest(f"PostgreSQL cannot store this value: {str(exc).splitlines()[0]}") from None
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) or state.startswith(("08", "57P")):
            raise unreachable(location, exc) from None
        raise


# -- rows -----------------------------------------------------------------------------------------
PROMISE_COLUMNS = ["id", "state", "param_headers", "param_data", "value_headers", "value_data", "timeout",
                   "ikey_create", "ikey_complete", "tags", "root_id", "parent_id", "created_on", "completed_on"]
TASK_COLUMNS = ["id", "counter", "root_id", "leaf_id", "type", "state", "recv", "process_id", "ttl", "expires_at",
                "timeout", "attempt", "created_on", "completed_on", "func", "version", "claimed_on",
                "last_process_id"]
CALLBACK_COLUMNS = ["id", "promise_id", "root_id", "recv", "timeout", "kind", "created_on"]
SCHEDULE_COLUMNS = ["id", "description", "cron", "tags", "promise_id", "promise_timeout", "promise_param",
                    "promise_tags", "ikey", "last_run_time", "next_run_time", "created_on"]


def dumps(obj: dict[str, str] | None) -> str | None:
    return json.dumps(obj, separators=(",", ":")) if obj else None


def loads(value: Any) -> dict[str, Any]:
    """A JSON column: text (headers) or already decoded (JSONB tags)."""
    if not value:
        return {}
    return dict(value) if isinstance(value, dict) else dict(json.loads(value))


def like_pattern(glob: str) -> str:
    """Our glob (only ``*`` is a wildcard) as a LIKE pattern with ``\\`` as the escape character."""
    return "".join("%" if ch == "*" else "\\" + ch if ch in "%_\\" else ch for ch in glob)


# -- rows to records ------------------------------------------------------------------------------
def promise_of(r: Sequence[Any]) -> Promise:
    return Promise(id=r[0], state=r[1], param=Value(loads(r[2]), r[3]), value=Value(loads(r[4]), r[5]),
                   timeout=r[6], idempotency_key_for_create=r[7], idempotency_key_for_complete=r[8],
                   tags=loads(r[9]), created_on=r[12], completed_on=r[13])


def task_of(r: Sequence[Any]) -> Task:
    return Task(id=r[0], counter=r[1], root_promise_id=r[2], leaf_promise_id=r[3], type=r[4], state=r[5], recv=r[6],
                process_id=r[7], ttl=r[8], expires_at=r[9], timeout=r[10], attempt=r[11], created_on=r[12],
                completed_on=r[13], func=r[14], version=r[15] or 0, claimed_on=r[16], last_process_id=r[17])


def task_row(t: Task) -> tuple[Any, ...]:
    return (t.id, t.counter, t.root_promise_id, t.leaf_promise_id, t.type, t.state, t.recv, t.process_id, t.ttl,
            t.expires_at, t.timeout, t.attempt, t.created_on, t.completed_on, t.func, t.version, t.claimed_on,
            t.last_process_id)


def callback_of(r: Sequence[Any]) -> Callback:
    return Callback(id=r[0], promise_id=r[1], root_promise_id=r[2], recv=r[3], timeout=r[4], kind=r[5],
                    created_on=r[6])


def schedule_of(r: Sequence[Any]) -> Schedule:
    return Schedule(id=r[0], description=r[1], cron=r[2], tags=loads(r[3]), promise_id=r[4], promise_timeout=r[5],
                    promise_param=Value.from_json(json.loads(r[6] or "null")), promise_tags=loads(r[7]),
                    idempotency_key=r[8], last_run_time=r[9], next_run_time=r[10], created_on=r[11])
