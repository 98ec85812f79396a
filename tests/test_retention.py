"""Retention on real processes: a daemon with a short ``--retention`` collects 20,000 finished workflows by
itself and the file returns to its size before them; ``resonate gc`` through a daemon and embedded on the
file, ``--dry-run``; what must survive (a pending promise, a schedule, a running workflow's finished
steps); bad durations; a file of schema 2 (no auto-vacuum) opened and switched.

The workflows are written straight into the file before the daemon starts (running 20,000 real ones would
take minutes); they look as the engine leaves them: a root with an invoke tag, two steps, a completed task.
Waiting is on a condition with a deadline, never a guessed sleep.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest
from daemon_proc import FAR, Daemon
from resonate_daemon import errors
from resonate_daemon.protocol.records import (
    COMPLETED,
    INIT,
    PENDING,
    RESOLVED,
    TAG_INVOKE,
    TAG_PARENT,
    TAG_ROOT,
    Promise,
    Schedule,
    Task,
    Value,
)
from resonate_daemon.server.config import DEFAULT_RETENTION_MS, ServeConfig, parse_retention
from resonate_daemon.server.scheduler import gc_interval_s
from resonate_daemon.store import open_store

from resonate_cli import exits

CLI = [sys.executable, "-m", "resonate_cli"]
RECV = "poll://any@default"
PARAM = Value({}, "eyJmdW5jIjogIm9yZGVyIiwgImFyZ3MiOiBbeyJpZCI6IDcsICJhbW91bnQiOiAzMH1dLCAia3dhcmdzIjoge319")
RESULT = Value({}, "eyJyZXNlcnZlZCI6ICJyZXNlcnZlZCA3IiwgImNoYXJnZWQiOiAzMH0=")
KEPT = ["keep-pending", "keep-root", "keep-root.1", "keep-root.2"]


@pytest.fixture
def folder() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="rg-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def put_kept(db: str) -> None:
    """What no collection may take: a pending promise, a schedule, and a running workflow whose two
    steps finished an hour ago (its replay reads them)."""
    store = open_store(db, "normal")
    old = now_ms() - 3_600_000
    try:
        with store.transaction():
            store.insert_promise(Promise("keep-pending", PENDING, Value(), Value(), FAR, {}, old))
            store.insert_promise(Promise("keep-root", PENDING, PARAM, Value(), FAR,
                                         {TAG_ROOT: "keep-root", TAG_INVOKE: RECV}, old))
            for n in (1, 2):
                store.insert_promise(Promise(f"keep-root.{n}", RESOLVED, PARAM, RESULT, FAR,
                                             {TAG_ROOT: "keep-root", TAG_PARENT: "keep-root"}, old, old + n))
            store.insert_task(Task(id="__invoke:keep-root", counter=1, root_promise_id="keep-root", type="invoke",
                                   state=INIT, recv="poll://any@nobody", timeout=FAR, created_on=old))
            store.upsert_schedule(Schedule(id="keep-schedule", cron="0 0 1 1 *", promise_id="s.{{.timestamp}}",
                                           promise_timeout=60_000, next_run_time=FAR, created_on=old))
    finally:
        store.close()


def put_finished(db: str, n: int, prefix: str = "wf") -> None:
    """``n`` workflows that finished an hour ago: a root, two steps, the completed invoke task."""
    store = open_store(db, "normal")
    old = now_ms() - 3_600_000
    try:
        with store.transaction():
            for i in range(n):
                root = f"{prefix}-{i}"
                store.insert_promise(Promise(root, RESOLVED, PARAM, RESULT, FAR, {TAG_ROOT: root, TAG_INVOKE: RECV},
                                             old, old + 30))
                for s in (1, 2):
                    store.insert_promise(Promise(f"{root}.{s}", RESOLVED, PARAM, RESULT, FAR,
                                                 {TAG_ROOT: root, TAG_PARENT: root}, old + s, old + 10 * s))
                store.insert_task(Task(id=f"__invoke:{root}", counter=1, root_promise_id=root, type="invoke",
                                       state=COMPLETED, recv=RECV, timeout=FAR, created_on=old, completed_on=old + 30))
    finally:
        store.close()


def file_size(db: str) -> int:
    return sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))


def survivors(db: str) -> tuple[list[str], bool, int]:
    """The promises left, whether the schedule is, and how many tasks are left."""
    store = open_store(db)
    try:
        found = sorted(p.id for p in store.search_promises(None, None, None, 1000, None)[0])
        return found, store.get_schedule("keep-schedule") is not None, sum(store.count_tasks_by_state().values())
    finally:
        store.close()


def cli(folder: str, *args: str, socket: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESONATE_")}
    env.update(NO_COLOR="1", COLUMNS="200", XDG_RUNTIME_DIR=folder)  # no default daemon of the user's
    if socket:
        env["RESONATE_SOCKET"] = socket
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def test_a_daemon_collects_20000_workflows_and_the_file_returns_to_its_size(folder: str) -> None:
    db = os.path.join(folder, "r.db")
    put_kept(db)
    before = file_size(db)
    put_finished(db, 20_000)
    full = file_size(db)
    daemon = Daemon("--retention", "1s", dir=folder, db=db)
    try:
        started = time.monotonic()
        daemon.start()
        slowest = 0.0
        deadline = time.monotonic() + 30
        with daemon.client() as c:
            while True:  # a poll bounded by the deadline; each poll also times a request made during the pass
                t = time.monotonic()
                counts = c.get("/v1/status").json()["promises"]
                slowest = max(slowest, time.monotonic() - t)
                if sum(counts.values()) == len(KEPT):
                    break
                assert time.monotonic() < deadline, f"not collected in 30 s: {counts}"
                time.sleep(0.05)
        took = time.monotonic() - started
    finally:
        daemon.stop()
    after = file_size(db)
    print(f"\nretention: 20,000 workflows (60,000 promises, 20,000 tasks): file {before:,} bytes before them, "
          f"{full:,} with them, {after:,} after the daemon collected them ({took:.1f} s from start, first pass "
          f"after {gc_interval_s(1000):.0f} s); slowest status request meanwhile {slowest * 1000:.0f} ms")
    assert after <= before * 1.2, (before, full, after)
    assert survivors(db) == (KEPT, True, 1)  # and the running workflow's task


def test_gc_through_the_daemon_dry_run_then_for_real(folder: str) -> None:
    db = os.path.join(folder, "r.db")
    put_kept(db)
    put_finished(db, 30)
    daemon = Daemon("--retention", "off", dir=folder, db=db).start()
    try:
        dry = cli(folder, "gc", "--older-than", "30m", "--dry-run", "--json", socket=daemon.socket)
        assert dry.returncode == 0, dry.stderr
        doc = json.loads(dry.stdout)
        assert (doc["promises"], doc["tasks"], doc["callbacks"], doc["dryRun"]) == (90, 30, 0, True)
        with daemon.client() as c:
            assert sum(c.get("/v1/status").json()["promises"].values()) == 90 + len(KEPT)
        young = cli(folder, "gc", "--older-than", "2h", socket=daemon.socket)  # they finished 1 h ago
        assert young.returncode == 0 and young.stdout.startswith("deleted 0 promises"), young.stderr
        real = cli(folder, "gc", "--older-than", "30m", socket=daemon.socket)
        assert real.returncode == 0, real.stderr
        assert real.stdout.startswith("deleted 90 promises, 30 tasks, 0 callbacks"), real.stdout
        assert "the database is now" in real.stdout
    finally:
        daemon.stop()
    assert survivors(db) == (KEPT, True, 1)


def test_gc_embedded_on_the_file(folder: str) -> None:
    db = os.path.join(folder, "r.db")
    put_kept(db)
    put_finished(db, 10)
    dry = cli(folder, "--db", db, "gc", "--older-than", "0s", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("would delete 30 promises, 10 tasks"), dry.stderr
    assert "embedded store" in dry.stderr
    real = cli(folder, "--db", db, "gc", "--older-than", "0s", "--json")
    assert real.returncode == 0, real.stderr
    doc = json.loads(real.stdout)
    assert (doc["promises"], doc["tasks"], doc["dryRun"]) == (30, 10, False) and doc["reclaimedBytes"] > 0
    assert survivors(db) == (KEPT, True, 1)


@pytest.mark.parametrize("args, message", [
    (["gc", "--older-than", "7x"], "'7x' is not a duration"),
    (["gc", "--older-than", "-1d"], "is not a duration"),
    (["gc"], "Missing option '--older-than'"),
])
def test_bad_gc_durations_are_usage_errors(folder: str, args: list[str], message: str) -> None:
    r = cli(folder, "--db", os.path.join(folder, "r.db"), *args)
    assert r.returncode == exits.USAGE and message in " ".join(r.stderr.split()), r.stderr
    assert not os.path.exists(os.path.join(folder, "r.db"))  # refused before anything was opened


def test_a_bad_retention_stops_serve_with_a_usage_error(folder: str) -> None:
    args = ["--socket", os.path.join(folder, "d.sock"), "--db", os.path.join(folder, "r.db"), "--retention", "soon"]
    r = cli(folder, "serve", *args)
    assert r.returncode == exits.USAGE and "'soon' is not a duration; use e.g. 7d, 12h, 30m" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "resonate_daemon", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "'soon' is not a duration" in r.stderr, r.stderr


@pytest.mark.parametrize("text, ms", [("7d", 7 * 86_400_000), ("12h", 43_200_000), ("30m", 1_800_000),
                                      ("45s", 45_000), ("90", 90_000), ("1.5h", 5_400_000), ("2w", 1_209_600_000),
                                      ("off", None), ("OFF", None), ("0", None), ("0s", None), ("never", None)])
def test_retention_durations(text: str, ms: int | None) -> None:
    assert parse_retention(text) == ms
    assert ServeConfig.resolve(socket="/tmp/x.sock", db="/tmp/x.db", retention=text, env={}).retention_ms == ms


def test_retention_defaults_to_a_week_and_reads_the_environment() -> None:
    assert ServeConfig.resolve(socket="/tmp/x.sock", db="/tmp/x.db", env={}).retention_ms == DEFAULT_RETENTION_MS
    assert ServeConfig.resolve(socket="/tmp/x.sock", db="/tmp/x.db",
                               env={"RESONATE_RETENTION": "12h"}).retention_ms == 43_200_000
    with pytest.raises(errors.InvalidRequest, match="not a duration"):
        ServeConfig.resolve(socket="/tmp/x.sock", db="/tmp/x.db", retention="7 days", env={})
    assert (gc_interval_s(DEFAULT_RETENTION_MS), gc_interval_s(1000), gc_interval_s(3_600_000)) == (600, 1, 360)


def test_a_schema_2_file_opens_and_is_switched_to_incremental_vacuum(folder: str) -> None:
    db = os.path.join(folder, "r.db")
    put_kept(db)
    put_finished(db, 5)
    con = sqlite3.connect(db, isolation_level=None)  # what a file of the previous version looks like
    con.execute("DROP INDEX promises_done")
    con.execute("DROP INDEX callbacks_root_id")
    con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    con.execute("PRAGMA auto_vacuum=NONE")
    con.execute("VACUUM")
    assert con.execute("PRAGMA auto_vacuum").fetchone() == (0,)
    con.close()
    dry = cli(folder, "--db", db, "gc", "--older-than", "0s", "--json")
    assert dry.returncode == 0 and json.loads(dry.stdout)["promises"] == 15, dry.stderr
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA auto_vacuum").fetchone() == (2,)
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("3",)
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"promises_done", "callbacks_root_id"} <= names
    finally:
        con.close()
    assert survivors(db) == (KEPT, True, 1)
