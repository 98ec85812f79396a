"""What only the PostgreSQL store has: a connection that can be lost and found again, the one-writer
lock of a session, URLs that carry passwords, and errors that must read as ours.
"""

from __future__ import annotations

import pytest
from resonate_daemon import errors
from resonate_daemon.paths import display_db, is_db_url, resolve_db
from resonate_daemon.protocol.records import PENDING, Promise, Value
from resonate_daemon.server.config import ServeConfig
from resonate_daemon.store import open_store


def promise(id: str) -> Promise:
    return Promise(id=id, state=PENDING, param=Value(), value=Value(), timeout=10_000, tags={}, created_on=1)


def kill_connections(admin_url: str, of_url: str) -> int:
    """Terminate every server process connected to ``of_url``'s database but ours: a server restart, seen
    from the store. How many were terminated."""
    import psycopg

    with psycopg.connect(of_url, autocommit=True) as probe:
        row = probe.execute("SELECT current_database()").fetchone()
        assert row is not None
        database = row[0]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND "
                            "pid <> pg_backend_pid() AND application_name LIKE 'resonate pid %%'",
                            (database,)).fetchall()
    return len(rows)


def test_a_lost_connection_fails_one_request_with_503_then_reconnects(pg_cluster: object, pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        with store.transaction():
            store.insert_promise(promise("before"))
        assert kill_connections(pg_cluster.admin_url, pg_url) >= 1  # type: ignore[attr-defined]
        with pytest.raises(errors.StoreGone, match="cannot be reached") as info:
            with store.transaction():
                store.insert_promise(promise("lost"))
        assert info.value.status == 503
        assert store.problem() is None  # looking reconnects
        with store.transaction():  # and the store works on, its one-writer lock taken again
            store.insert_promise(promise("after"))
        assert store.get_promise("before") is not None and store.get_promise("after") is not None
        assert store.get_promise("lost") is None
        with pytest.raises(errors.StoreLocked, match="in use by another process"):
            open_store(pg_url)
    finally:
        store.close()


def test_closing_releases_the_database_for_the_next_process(pg_url: str) -> None:
    first = open_store(pg_url)
    with pytest.raises(errors.StoreLocked, match=r"in use by another process \(resonate pid \d+ on "):
        open_store(pg_url)
    reader = open_store(pg_url, read_only=True)  # readers open beside the holder
    reader.close()
    first.close()
    open_store(pg_url).close()


def test_durability_normal_commits_and_a_bad_one_is_refused(pg_url: str) -> None:
    store = open_store(pg_url, "normal")
    try:
        with store.transaction():
            store.insert_promise(promise("n"))
        assert store.get_promise("n") == promise("n")
    finally:
        store.close()
    with pytest.raises(errors.InvalidRequest, match="durability"):
        open_store(pg_url, "off")


def test_a_value_postgres_cannot_hold_is_a_400_and_nothing_is_kept(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        with pytest.raises(errors.InvalidRequest, match="PostgreSQL cannot store this value"):
            with store.transaction():
                store.insert_promise(promise("ok"))
                store.insert_promise(Promise(id="nul", state=PENDING, param=Value({}, "a\x00b"), value=Value(),
                                             timeout=1, tags={}, created_on=1))
        assert store.get_promise("ok") is None
    finally:
        store.close()


@pytest.mark.parametrize("url, shown", [
    ("postgresql://me:pw@host:5432/db", "postgresql://me:***@host:5432/db"),
    ("postgres://me@/db?host=/run/pg&password=pw&sslmode=require", "postgres://me@/db?host=/run/pg&password=***&sslmode=require"),
    ("postgresql://me:p%40ss@h/db", "postgresql://me:***@h/db"),
    ("postgresql:///db", "postgresql:///db"),
    ("/var/lib/r.db", "/var/lib/r.db"),
])
def test_a_password_is_never_shown(url: str, shown: str) -> None:
    assert display_db(url) == shown


def test_a_url_is_kept_as_given_and_a_path_made_absolute() -> None:
    url = "postgresql://me@/db?host=/run/pg"
    assert is_db_url(url) and is_db_url("POSTGRES://x") and not is_db_url("/tmp/postgresql.db")
    assert resolve_db(url) == url and resolve_db("r.db").startswith("/")
    config = ServeConfig.resolve(socket="/tmp/rs/d.sock", db=url, env={})
    assert config.db == url and config.token_path == "/tmp/rs/d.sock.token"


@pytest.mark.parametrize("db, says", [
    ("mysql://localhost/db", "a file path or a postgresql:// URL"),
    ("postgresql://h:port/db", "bad PostgreSQL URL"),
])
def test_a_bad_url_is_refused_by_the_configuration(db: str, says: str) -> None:
    with pytest.raises(errors.InvalidRequest, match=says):
        ServeConfig.resolve(socket="/tmp/rs/d.sock", db=db, env={})


def test_without_psycopg_a_postgres_url_says_what_to_install(pg_url: str) -> None:
    import subprocess
    import sys

    probe = ("import sys\nsys.modules['psycopg'] = None  # as if it were not installed\n"
             "from resonate_daemon import errors\nfrom resonate_daemon.store import open_store\n"
             "try:\n    open_store(sys.argv[1])\nexcept errors.StartupError as exc:\n    print(exc)\n")
    r = subprocess.run([sys.executable, "-c", probe, pg_url], capture_output=True, text=True, timeout=60)
    assert "needs psycopg 3: pip install" in r.stdout, r.stderr


def test_a_group_commit_keeps_its_good_transactions_and_undoes_a_failed_one_alone(pg_url: str) -> None:
    """``begin_batch``: every transaction until ``end_batch`` is a savepoint of one; a failed one is undone
    alone; nothing is visible to others until the COMMIT (run on another thread) returns."""
    import threading

    store = open_store(pg_url)
    other = open_store(pg_url, read_only=True)
    try:
        store.begin_batch()
        with store.transaction():
            store.insert_promise(promise("kept-1"))
        with pytest.raises(RuntimeError), store.transaction():
            store.insert_promise(promise("undone"))
            raise RuntimeError("this one fails")
        with store.transaction():
            store.insert_promise(promise("kept-2"))
        assert store.get_promise("kept-1") is not None and store.get_promise("undone") is None
        assert other.get_promise("kept-1") is None  # not committed yet
        commit = store.end_batch()
        committer = threading.Thread(target=commit)
        committer.start()
        with store.transaction():  # waits for the commit, then runs on its own
            store.insert_promise(promise("after"))
        committer.join(timeout=30)
        assert not committer.is_alive()
        assert [other.get_promise(i) is not None for i in ("kept-1", "undone", "kept-2", "after")] == [
            True, False, True, True]
    finally:
        other.close()
        store.close()
