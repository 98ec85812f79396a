"""Schema versions, the same on both backends: a ``meta`` table holds ``schema_version``; opening an older
schema migrates it in place and keeps every row; opening a newer one (a newer resonate made it) is refused
with one clear error, for writing and for reading, and changes nothing.

Version N names the same tables, columns and indexes on SQLite and PostgreSQL (1: the tables, 2: the
task's function and history columns, 3: the indexes of retention).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest
from resonate_daemon import errors
from resonate_daemon.protocol.records import PENDING, TAG_ROOT, Promise, Task, Value
from resonate_daemon.store import open_store, sqlite_schema
from resonate_daemon.store import postgres_schema as pg_schema

KEPT = Promise(id="kept", state=PENDING, param=Value({"h": "v"}, "eA=="), value=Value(), timeout=10_000,
               tags={TAG_ROOT: "kept", "k": "v"}, created_on=5)


def test_both_backends_are_at_the_same_version_by_the_same_steps() -> None:
    assert pg_schema.SCHEMA_VERSION == sqlite_schema.SCHEMA_VERSION == 3
    assert len(pg_schema.MIGRATIONS) == len(sqlite_schema.MIGRATIONS) == pg_schema.SCHEMA_VERSION


# -- SQLite -----------------------------------------------------------------------------------------
def sqlite_at(db_path: str, version: int) -> None:
    """A file holding KEPT, its schema taken back to ``version`` (1: the task columns of 2 dropped)."""
    store = open_store(db_path)
    with store.transaction():
        store.insert_promise(KEPT)
    store.close()
    db = sqlite3.connect(db_path)
    if version < 2:
        for column in ("func", "version", "claimed_on", "last_process_id"):
            db.execute(f"ALTER TABLE tasks DROP COLUMN {column}")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    db.commit()
    db.close()


def sqlite_version(db_path: str) -> str:
    db = sqlite3.connect(db_path)
    try:
        return str(db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    finally:
        db.close()


def test_sqlite_an_older_schema_is_migrated_and_keeps_its_data(db_path: str) -> None:
    sqlite_at(db_path, 1)
    with pytest.raises(errors.StoreLocked, match="migrated when opened for writing"):
        open_store(db_path, read_only=True)  # a reader never migrates
    store = open_store(db_path)
    try:
        assert store.get_promise("kept") == KEPT
        with store.transaction():  # the columns of version 2 are there
            store.insert_task(Task(id="t", counter=1, root_promise_id="kept", type="invoke", state="INIT",
                                   recv="poll://any@g", timeout=1, created_on=1, func="f", version=2))
        assert store.get_task("t") is not None and store.get_task("t").func == "f"  # type: ignore[union-attr]
    finally:
        store.close()
    assert sqlite_version(db_path) == "3"


@pytest.mark.parametrize("read_only", [False, True])
def test_sqlite_a_newer_schema_is_refused_and_left_alone(db_path: str, read_only: bool) -> None:
    sqlite_at(db_path, 99)
    with pytest.raises(errors.StartupError, match="schema version 99, newer than this program's 3"):
        open_store(db_path, read_only=read_only)
    assert sqlite_version(db_path) == "99"


# -- PostgreSQL -------------------------------------------------------------------------------------
def pg_exec(url: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql.encode(), params)
        return cur.fetchall() if cur.description else []


def test_postgres_an_older_schema_is_migrated_and_keeps_its_data(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:  # a database made by a version-1 program
        assert pg_schema.migrate(conn, "test", upto=1) == 0
        conn.execute("INSERT INTO promises (id, state, param_headers, param_data, timeout, tags, root_id, created_on) "
                     "VALUES ('kept', 'PENDING', '{\"h\":\"v\"}', 'eA==', 10000, %s, 'kept', 5)",
                     ('{"resonate:root":"kept","k":"v"}',))
    assert pg_exec(pg_url, "SELECT value FROM meta") == [("1",)]
    with pytest.raises(errors.StoreLocked, match="migrated when opened for writing"):
        open_store(pg_url, read_only=True)  # a reader never migrates
    store = open_store(pg_url)
    try:
        assert store.get_promise("kept") == KEPT
        with store.transaction():
            store.insert_task(Task(id="t", counter=1, root_promise_id="kept", type="invoke", state="INIT",
                                   recv="poll://any@g", timeout=1, created_on=1, func="f", version=2))
        assert store.get_task("t") is not None and store.get_task("t").func == "f"  # type: ignore[union-attr]
    finally:
        store.close()
    assert pg_exec(pg_url, "SELECT value FROM meta") == [("3",)]
    indexes = {r[0] for r in pg_exec(pg_url, "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}
    assert {"promises_tops", "promises_done", "callbacks_root_id", "promises_tags"} <= indexes


@pytest.mark.parametrize("read_only", [False, True])
def test_postgres_a_newer_schema_is_refused_and_left_alone(pg_url: str, read_only: bool) -> None:
    open_store(pg_url).close()
    pg_exec(pg_url, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(errors.StartupError, match="schema version 99, newer than this program's 3"):
        open_store(pg_url, read_only=read_only)
    assert pg_exec(pg_url, "SELECT value FROM meta") == [("99",)]


def test_postgres_reopening_the_current_schema_changes_nothing(pg_url: str) -> None:
    store = open_store(pg_url)
    with store.transaction():
        store.insert_promise(KEPT)
    store.close()
    before: Callable[[], list[tuple[object, ...]]] = lambda: pg_exec(  # noqa: E731
        pg_url, "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1")
    indexes = before()
    store = open_store(pg_url)
    try:
        assert store.get_promise("kept") == KEPT and before() == indexes
    finally:
        store.close()
