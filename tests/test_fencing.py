"""A paused worker cannot act on work it lost (real processes: a daemon, two workers, SIGSTOP/SIGCONT).

Worker A runs a workflow's step 1 and is SIGSTOPped past its one-second lease; the daemon gives the task
to worker B, which finishes the workflow. When A continues, its step 1 ends (it was running: that cannot
be helped), but the step's result is refused (TaskFenced: the task is B's now), and A abandons the
execution: it starts no further step. Side effects are counted in a log of every step's start and end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from daemon_proc import Daemon
from resonate_daemon import protocol as P
from resonate_daemon.protocol.records import Value

from resonate import Resonate
from resonate.errors import PromiseNotFound, TaskFenced
from resonate.remote import RemoteTransport

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "programs", "paced_worker.py")
CLI = [sys.executable, "-m", "resonate_cli"]
WAIT_S = 30.0


def until(predicate: Any, what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)  # a poll interval of a bounded wait on other processes
    raise TimeoutError(what)


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    d = Daemon().start()
    yield d
    d.stop()
    d.cleanup()


def test_a_worker_paused_past_its_lease_starts_no_step_after_the_takeover(daemon: Daemon, short_dir: str) -> None:
    log, gate = os.path.join(short_dir, "steps.log"), os.path.join(short_dir, "gate")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESONATE_")}
    env.update(RESONATE_SOCKET=daemon.socket, PACED_LOG=log, PACED_GATE=gate)

    def lines() -> list[str]:
        if not os.path.exists(log):
            return []
        with open(log) as f:
            return f.read().splitlines()

    def worker() -> subprocess.Popen[str]:
        w = subprocess.Popen([sys.executable, WORKER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        assert w.stdout is not None and w.stdout.readline() == "ready\n"
        return w

    a = worker()
    b: subprocess.Popen[str] | None = None
    try:
        started = subprocess.run([*CLI, "invoke", "paced", "4", "--id", "p1", "--group", "paced", "--no-wait"],
                                 env=env, capture_output=True, text=True, timeout=60)
        assert started.returncode == 0, started.stderr
        until(lambda: f"start 1 {a.pid}" in lines(), "worker A to start step 1")
        a.send_signal(signal.SIGSTOP)
        b = worker()
        until(lambda: f"start 1 {b.pid}" in lines(), "worker B to take over and start step 1")  # A's lease lapsed
        with open(gate, "w"):
            pass
        client = Resonate.remote(group="paced-client", socket=daemon.socket)
        try:
            assert client.get("p1").result(timeout=WAIT_S) == 0 + 1 + 2 + 3
        finally:
            client.stop()
        a.send_signal(signal.SIGCONT)
        until(lambda: f"end 1 {a.pid}" in lines(), "worker A to finish the step it was in")
        until(lambda: a.poll() is None, "")
        a.terminate()
        try:
            _, a_err = a.communicate(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            a.kill()
            _, a_err = a.communicate()
            raise AssertionError(f"worker A did not stop on SIGTERM: {a_err}; log: {lines()}") from None
        assert "abandoned p1" in a_err and "no longer held by this worker" in a_err, a_err
    finally:
        for w in (a, b):
            if w is not None and w.poll() is None:
                w.send_signal(signal.SIGCONT)
                w.kill()
                w.communicate()
    by_a = [ln.rsplit(" ", 1)[0] for ln in lines() if ln.endswith(f" {a.pid}")]
    assert by_a == ["start 0", "end 0", "start 1", "end 1"]  # nothing after the takeover but the step in flight
    by_b = [ln.rsplit(" ", 1)[0] for ln in lines() if b is not None and ln.endswith(f" {b.pid}")]
    assert by_b == ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]


def test_a_fenced_write_is_refused_and_changes_nothing(daemon: Daemon) -> None:
    """Through the daemon's API: a write that carries a stale fence is refused (and a malformed one is a
    400); the same write with the current counter goes through."""
    t = RemoteTransport(socket=daemon.socket)
    far = 2**62
    t.call(P.CreatePromise("f-root", far, tags={"resonate:invoke": "poll://any@nobody", "resonate:root": "f-root"}))
    t.call(P.ClaimTask("__invoke:f-root", 1, "p-old", 60_000))
    t.call(P.DropTask("__invoke:f-root", 1))  # as the daemon does when a lease lapses: counter 2 now
    t.call(P.ClaimTask("__invoke:f-root", 2, "p-new", 60_000))
    step = P.SettleStep("f-root.1", far, "RESOLVED", Value.of_text("1"), tags={"resonate:root": "f-root"})
    with pytest.raises(TaskFenced):
        t.call(step, fence=("__invoke:f-root", 1))
    with pytest.raises(PromiseNotFound):
        t.call(P.GetPromise("f-root.1"))  # the refused write left nothing
    assert t.call(step, fence=("__invoke:f-root", 2)).status == 201
    with daemon.client() as c:
        bad = c.post("/v1/promises/settled", headers={"resonate-fence": "x:y"},
                     json={"id": "f-root.2", "timeout": far, "state": "RESOLVED"})
        assert bad.status_code == 400 and "resonate-fence" in bad.json()["error"]["message"]
    t.close()
