"""The database stays the one we opened, and one daemon holds it, whatever its name (real daemons).

- a second daemon on a hard link or a symlink to a held file is refused (the lock is on the file's inode);
- a file deleted or replaced under a running daemon: writes are refused (503, StoreGone), nothing is
  acknowledged into it, the log says so once and `status` shows it;
- a damaged, truncated or emptied file at start: a clear message and exit 3, no traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from daemon_proc import FAR, Daemon
from resonate_daemon.protocol import CreatePromise

from resonate.errors import StoreGone
from resonate.remote import RemoteTransport

EXIT_STARTUP_FAILURE = 3


def _raised(fn: Any) -> BaseException:
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError("no error")


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    d = Daemon().start()
    yield d
    d.stop()
    d.cleanup()


def start(db: str, where: str) -> subprocess.CompletedProcess[str]:
    """A daemon that is expected not to start: its exit and its stderr."""
    return subprocess.run([sys.executable, "-m", "resonate_daemon", "--socket", os.path.join(where, "other.sock"),
                           "--db", db], capture_output=True, text=True, timeout=60)


def create(d: Daemon, id: str) -> int:
    with d.client() as c:
        return c.post("/promises", json={"id": id, "timeout": FAR}).status_code


@pytest.mark.parametrize("how", ["hard link", "symlink"])
def test_a_second_daemon_on_the_same_file_by_another_name_is_refused(daemon: Daemon, how: str) -> None:
    assert create(daemon, "before") == 201
    other = os.path.join(daemon.dir, "other-name.db")
    (os.link if how == "hard link" else os.symlink)(daemon.db, other)
    refused = start(other, daemon.dir)
    assert refused.returncode == EXIT_STARTUP_FAILURE, refused.stderr
    assert f"in use by another process (pid {daemon.proc.pid})" in refused.stderr  # type: ignore[union-attr]
    assert "Traceback" not in refused.stderr
    assert create(daemon, "after") == 201  # the holder goes on


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_file_deleted_or_replaced_under_the_daemon_refuses_writes(daemon: Daemon, how: str) -> None:
    assert create(daemon, "kept") == 201
    if how == "deleted":
        os.unlink(daemon.db)
    else:
        shutil.copyfile(daemon.db, daemon.db + ".new")
        os.replace(daemon.db + ".new", daemon.db)
    with daemon.client() as c:
        refused = [c.post("/promises", json={"id": f"lost-{i}", "timeout": FAR}) for i in range(20)]
        status = c.get("/v1/status").json()
    assert {r.status_code for r in refused} == {503}
    assert {r.json()["error"]["code"] for r in refused} == {50311}
    word = "deleted" if how == "deleted" else "replaced by another file"
    assert word in refused[0].json()["error"]["message"] and word in status["problem"]
    log = daemon.stderr()
    assert log.count("while open: writes are refused") == 1 and len(log) < 100_000
    # The SDK does not retry it as it would a passing 5xx (waiting will not bring the file back).
    t = RemoteTransport(socket=daemon.socket, retry_for=600)
    outcome: list[BaseException] = []
    thread = threading.Thread(target=lambda: outcome.append(_raised(lambda: t.call(CreatePromise("sdk", FAR)))))
    thread.start()
    thread.join(timeout=30)
    t.close()
    assert not thread.is_alive() and isinstance(outcome[0], StoreGone)


def test_a_damaged_or_emptied_file_is_refused_at_start(short_dir: str) -> None:
    garbage = os.path.join(short_dir, "garbage.db")
    with open(garbage, "wb") as f:
        f.write(b"this is not a database, whatever its name says" * 100)
    r = start(garbage, short_dir)
    assert r.returncode == EXIT_STARTUP_FAILURE and "cannot be read" in r.stderr and "Traceback" not in r.stderr

    d = Daemon(dir=short_dir, db=os.path.join(short_dir, "real.db")).start()
    try:
        with d.client() as c:
            for i in range(300):
                assert c.post("/promises", json={"id": f"p-{i}", "timeout": FAR, "param": {"data": "eA=="},
                                                 "tags": {"k": "v" * 200}}).status_code == 201
    finally:
        d.stop()
    size = os.path.getsize(d.db)
    with open(d.db, "r+b") as f:
        f.truncate(size // 2)
    r = start(d.db, short_dir)
    assert r.returncode == EXIT_STARTUP_FAILURE, r.stderr
    assert ("damaged" in r.stderr or "cannot be read" in r.stderr) and "Traceback" not in r.stderr
    with open(d.db, "r+b") as f:
        f.truncate(0)
    r = start(d.db, short_dir)
    assert r.returncode == EXIT_STARTUP_FAILURE and "is empty (0 bytes), but a store was here before" in r.stderr
    os.unlink(d.db + ".lock")  # what the message says to do to start afresh
    fresh = Daemon(dir=short_dir, db=d.db).start()
    try:
        assert create(fresh, "new") == 201
    finally:
        fresh.stop()
