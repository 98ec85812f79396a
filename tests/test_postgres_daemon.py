"""``resonate serve --db postgresql://...`` end to end, on the session's real PostgreSQL: the daemon and a
worker as real subprocesses on a Unix socket, ``resonate invoke`` of a three-step workflow; the daemon
SIGKILLed and restarted on the same database with everything still there. Also: a bad URL is one clear
line and a non-zero exit, a password never shows, and psycopg is loaded only for a PostgreSQL URL.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from daemon_proc import Daemon
from pg_cluster import Cluster

APP = os.path.join(os.path.dirname(__file__), "programs", "pg_app.py")
CLI = [sys.executable, "-m", "resonate_cli"]
SECRET = "s3cret-pw"


def env_for(daemon: Daemon) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESONATE_")}
    env.update(RESONATE_SOCKET=daemon.socket, NO_COLOR="1", COLUMNS="200")
    return env


def cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env_for(daemon), capture_output=True, text=True, timeout=60)


def status(daemon: Daemon) -> dict[str, object]:
    with daemon.client() as c:
        doc: dict[str, object] = c.get("/v1/status").json()
        return doc


def wait_connected(daemon: Daemon, group: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if status(daemon)["workers"].get(group):  # type: ignore[attr-defined]
            return
        time.sleep(0.02)  # a poll interval bounded by the deadline, not a guess at readiness
    raise TimeoutError(f"no worker of {group!r} connected: {daemon.stderr()}")


def with_password(url: str, password: str) -> str:
    """The URL with a password in its user part (the test cluster trusts local users: it is not asked for)."""
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@", 1)


@pytest.fixture
def served(pg_cluster: Cluster) -> Iterator[Daemon]:
    """``resonate serve`` on a fresh database of its own (its URL carries a password), and one worker."""
    daemon = Daemon(db=with_password(pg_cluster.fresh_url(database=True), SECRET))
    daemon.command = ["-m", "resonate_cli", "serve"]
    try:
        daemon.start(timeout=30)
        yield daemon
    finally:
        daemon.cleanup()


def test_serve_invoke_sigkill_restart_on_postgres(served: Daemon) -> None:
    worker = subprocess.Popen([*CLI, "worker", APP, "--group", "default"], env=env_for(served),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_connected(served, "default")
        r = cli(served, "invoke", "pipeline", "4", "--id", "pg-1")
        assert (r.returncode, r.stdout) == (0, "55\n"), r.stderr  # ((4 + 1) * 10) + 5
        s = status(served)
        assert str(s["db"]).startswith("postgresql://postgres:***@") and SECRET not in json.dumps(s)
        embedded_beside_the_daemon(served)
        before = json.loads(cli(served, "tree", "pg-1", "--json").stdout)
        assert len(before["children"]) == 3

        assert served.proc is not None
        served.proc.send_signal(signal.SIGKILL)  # no goodbye: its connection (and its lock) just vanish
        served.proc.wait(timeout=10)
        served.start(timeout=30)  # the same socket, the same database

        got = json.loads(cli(served, "promises", "get", "pg-1", "--json").stdout)
        assert got["state"] == "RESOLVED" and base64.b64decode(got["value"]["data"]) == b"55"
        assert json.loads(cli(served, "tree", "pg-1", "--json").stdout) == before
        wait_connected(served, "default")  # the worker found the daemon again by itself
        r = cli(served, "invoke", "pipeline", "7", "--id", "pg-2")
        assert (r.returncode, r.stdout) == (0, "85\n"), r.stderr

        # A search by glob and by tag runs off the daemon's loop, on its own connections (PgReader).
        found = json.loads(cli(served, "promises", "search", "pg-*", "--json").stdout)["promises"]
        assert sorted(p["id"] for p in found if p["id"] in ("pg-1", "pg-2")) == ["pg-1", "pg-2"]
        tagged = json.loads(cli(served, "promises", "list", "--tag", "resonate:root=pg-2", "--json").stdout)
        assert len(tagged["promises"]) == 4  # the workflow and its three steps
        # Retention through the daemon: both finished workflows go, whole.
        gone = cli(served, "gc", "--older-than", "0s", "--json")
        assert gone.returncode == 0 and json.loads(gone.stdout)["promises"] == 8, gone.stdout + gone.stderr
        assert json.loads(cli(served, "promises", "list", "--json").stdout)["promises"] == []
    finally:
        worker.terminate()
        assert worker.wait(timeout=15) == 0, worker.stderr.read() if worker.stderr else ""
        if worker.stderr:
            worker.stderr.close()
    served.stop()
    assert SECRET not in served.stderr() and "(db postgresql://postgres:***@" in served.stderr()


def embedded_beside_the_daemon(served: Daemon) -> None:
    """The CLI with ``--db URL`` and no daemon at its socket: a read reads a snapshot beside the daemon that
    holds the database; a write is refused, saying who holds it; the password shows nowhere."""
    alone = {k: v for k, v in env_for(served).items() if k != "RESONATE_SOCKET"}
    alone["XDG_RUNTIME_DIR"] = served.dir  # its default socket is there, and nothing answers it

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, "--db", served.db, *args], env=alone, capture_output=True, text=True,
                              timeout=60)

    read = run("promises", "get", "pg-1", "--json")
    assert read.returncode == 0 and json.loads(read.stdout)["state"] == "RESOLVED", read.stderr
    human = run("promises", "get", "pg-1")
    assert human.returncode == 0 and "embedded store at postgresql://postgres:***@" in human.stderr, human.stderr
    write = run("promises", "create", "from-the-side")
    assert write.returncode != 0 and "in use by another process (resonate pid" in write.stderr, write.stderr
    assert SECRET not in read.stdout + human.stdout + human.stderr + write.stdout + write.stderr and "Traceback" not in write.stderr


def test_a_second_daemon_on_the_same_database_is_refused(served: Daemon) -> None:
    other = Daemon(db=served.db)
    try:
        other.spawn()
        assert other.proc is not None and other.proc.wait(timeout=30) != 0
        err = other.stderr()
        assert "in use by another process (resonate pid" in err and SECRET not in err and "Traceback" not in err
    finally:
        other.cleanup()


@pytest.mark.parametrize("db, says", [
    ("postgresql://u:{pw}@/nope?host=/nonexistent-dir", "cannot connect to the PostgreSQL database"),
    ("postgresql://u:{pw}@localhost:notaport/db", "bad PostgreSQL URL"),
    ("postgresql://u:{pw}@/db?host=/tmp&bogus_option=1", "bad PostgreSQL URL"),
    ("mysql://u:{pw}@localhost/db", "a file path or a postgresql:// URL"),
])
def test_a_bad_url_is_one_clear_line_and_no_password(short_dir: str, db: str, says: str) -> None:
    url = db.format(pw=SECRET)
    r = subprocess.run([*CLI, "serve", "--socket", os.path.join(short_dir, "d.sock"), "--db", url],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "RESONATE_DB": ""})
    assert r.returncode != 0 and says in r.stderr, r.stderr
    assert SECRET not in r.stderr + r.stdout and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_psycopg_is_loaded_only_for_a_postgres_url(short_dir: str, pg_url: str) -> None:
    probe = ("import sys\nimport resonate\nprint('sdk', 'psycopg' in sys.modules)\n"
             "from resonate_daemon.server import server\nfrom resonate_daemon.store import open_store\n"
             "open_store(sys.argv[1] + '/s.db').close()\n"
             "print('sqlite', 'psycopg' in sys.modules)\n"
             "open_store(sys.argv[2]).close()\nprint('postgres', 'psycopg' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", probe, short_dir, pg_url], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["sdk", "False", "sqlite", "False", "postgres", "True"], r.stderr
