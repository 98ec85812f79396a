"""Durable time with real processes: sleeps across daemon restarts and program kills, retry counts across
a SIGKILL mid-backoff, and how late a short sleep resumes through a real daemon.

Programs: tests/programs/time_workflows.py. Waits are bounded polls on conditions (a side file, a row in
the database read-only, the daemon's API); the only wall-clock wait is for a deadline itself to pass.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from resonate import Context, Resonate
from tests.daemon_proc import Daemon

PROGRAM = os.path.join(os.path.dirname(__file__), "programs", "time_workflows.py")
DEADLINE = 30.0


def until(cond: Callable[[], Any], what: str, proc: subprocess.Popen[Any] | None = None) -> Any:
    tick = threading.Event()
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"program exited early ({proc.returncode}) waiting for {what}")
        tick.wait(0.005)  # a poll interval of a bounded wait on a condition
    raise AssertionError(f"timed out waiting for {what}")


def lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def row(db: str, id: str) -> tuple[str, int] | None:
    """A promise's (state, timeout) read straight from the file, read-only, while its owner runs."""
    if not os.path.exists(db):
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            found = con.execute("select state, timeout from promises where id = ?", (id,)).fetchone()
        finally:
            con.close()
    except sqlite3.OperationalError:  # the schema is not there yet
        return None
    return (found[0], int(found[1])) if found else None


def program(*args: str) -> list[str]:
    return [sys.executable, PROGRAM, *args]


def kill(proc: subprocess.Popen[Any]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=DEADLINE)


def test_local_sleep_resumes_when_the_program_runs_again(short_dir: str) -> None:
    db, side = os.path.join(short_dir, "r.db"), os.path.join(short_dir, "side.txt")
    args = ["sleep", "--db", db, "--side", side, "--id", "nap", "--secs", "0.5"]
    first = subprocess.Popen(program(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        recorded = until(lambda: row(db, "nap.1"), "the sleep to be recorded", first)
        until(lambda: "sleeping" in lines(side), "the workflow to sleep", first)
    finally:
        kill(first)
        first.stderr.close()  # type: ignore[union-attr]
    state, deadline = recorded
    assert state == "PENDING"
    until(lambda: time.time() * 1000 > deadline + 50, "the deadline to pass while nothing runs")
    again = subprocess.run(program(*args), capture_output=True, text=True, timeout=DEADLINE)
    assert again.returncode == 0, again.stderr
    woke_at = json.loads(again.stdout.strip().splitlines()[-1])["result"] * 1000
    assert woke_at >= deadline
    assert lines(side).count("woke") == 1
    assert row(db, "nap.1")[0] == "RESOLVED"  # type: ignore[index]


def test_retry_count_survives_a_sigkill_mid_backoff(short_dir: str) -> None:
    db, side = os.path.join(short_dir, "r.db"), os.path.join(short_dir, "side.txt")
    args = ["retry", "--db", db, "--side", side, "--id", "rk", "--delay", "1", "--fail", "3"]
    first = subprocess.Popen(program(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        until(lambda: row(db, "rk.1.retry.2"), "the second backoff to start", first)
        assert lines(side) == ["attempt 1", "attempt 2"]
    finally:
        kill(first)
        first.stderr.close()  # type: ignore[union-attr]
    again = subprocess.run(program(*args), capture_output=True, text=True, timeout=DEADLINE)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1])["result"] == "ok"
    # The count went on from 2 (not from zero): four attempts in all, each exactly once.
    assert lines(side) == ["attempt 1", "attempt 2", "attempt 3", "attempt 4"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_sleep_spans_a_daemon_restart(sig: int) -> None:
    daemon = Daemon().start()
    worker = None
    client = None
    try:
        worker = subprocess.Popen(program("worker", "--socket", daemon.socket, "--group", "sleepers"),
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert worker.stdout is not None and worker.stdout.readline().strip() == b"ready"
        client = Resonate.remote(group="client", socket=daemon.socket)
        handle = client.options(target="poll://any@sleepers").begin_rpc("nap-r", "nap", 1.0)
        with daemon.client() as c:
            sleep = until(lambda: (r := c.get("/promises/nap-r.1")).status_code == 200 and r.json(),
                          "the sleep to be created")
            until(lambda: not c.get("/v1/tasks", params={"state": "CLAIMED,ENQUEUED"}).json()["tasks"],
                  "the execution to suspend")
        daemon.signal(sig)
        daemon.spawn()
        daemon.wait_ready()
        woke_at = handle.result(timeout=DEADLINE) * 1000
        assert woke_at >= sleep["timeout"]
        with daemon.client() as c:
            assert c.get("/promises/nap-r").json()["state"] == "RESOLVED"
    finally:
        if client is not None:
            client.stop()
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=DEADLINE)
            worker.stdout.close()  # type: ignore[union-attr]
        daemon.stop()
        daemon.cleanup()


def test_a_200ms_sleep_resumes_within_100ms_of_its_deadline() -> None:
    daemon = Daemon().start()
    r = Resonate.remote(group="lateness", socket=daemon.socket)
    try:
        @r.register
        def nap(ctx: Context, secs: float) -> Any:
            yield ctx.sleep(secs)
            return time.time()

        late = []
        for i in range(5):
            woke_at = nap.run(f"lat-{i}", 0.2) * 1000
            late.append(woke_at - r.promises.get(f"lat-{i}.1").timeout)
    finally:
        r.stop()
        daemon.stop()
        daemon.cleanup()
    assert all(x >= 0 for x in late), late
    assert statistics.median(late) < 100, late
    assert max(late) < 100, late
