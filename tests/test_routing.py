"""Routing by function: workers announce what they run; a task goes only to a worker that has its
function; with none, it waits and the CLI and status say so; a worker never rejects a promise for lacking
a function. Real processes: a daemon, `resonate worker` subprocesses of two apps sharing one group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from daemon_proc import Daemon

from resonate import Resonate
from resonate_cli import exits

HERE = os.path.dirname(os.path.abspath(__file__))
CLI_APP = os.path.join(HERE, "programs", "cli_app.py")
ADDER = os.path.join(HERE, "programs", "adder_app.py")
CLI = [sys.executable, "-m", "resonate_cli"]


def env_for(daemon: Daemon) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESONATE_")}
    env.update(RESONATE_SOCKET=daemon.socket, NO_COLOR="1", COLUMNS="200")
    return env


def until(predicate: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)  # a poll interval of a bounded wait on other processes
    raise TimeoutError(what)


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = Daemon().start()
    workers = [subprocess.Popen([*CLI, "worker", app, "--group", "shared"], env=env_for(d),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for app in (CLI_APP, ADDER)]
    try:
        def both_connected() -> bool:
            with d.client() as c:
                functions = c.get("/v1/status").json()["functions"].get("shared", {})
            return len(functions) == 2
        until(both_connected, "both workers to connect")
        yield d
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            assert w.wait(timeout=15) == 0, w.stderr.read() if w.stderr else ""
            if w.stderr:
                w.stderr.close()
        d.stop()
        d.cleanup()


def test_two_apps_in_one_group_every_call_lands_on_a_worker_that_has_it(daemon: Daemon) -> None:
    client = Resonate.remote(group="routing-client", socket=daemon.socket).options(target="shared")
    try:
        adds = [client.begin_rpc(f"add-{i}", "add", i, 1) for i in range(20)]
        greets = [client.begin_rpc(f"greet-{i}", "greet", f"n{i}") for i in range(20)]
        sums = [h.result(timeout=30) for h in adds]
        assert [s["sum"] for s in sums] == [i + 1 for i in range(20)]
        assert len({s["pid"] for s in sums}) == 1  # all on the one worker that has add
        assert [h.result(timeout=30) for h in greets] == [f"hello n{i}!" for i in range(20)]
        rejected, _ = client.promises.search("add-*", state="rejected")
        assert rejected == []
    finally:
        client.stop()


def test_status_shows_what_each_worker_runs_and_what_waits(daemon: Daemon) -> None:
    client = Resonate.remote(group="routing-client2", socket=daemon.socket)
    try:
        status = client.status()
        announced = sorted(sorted(fs or {}) for fs in status.functions["shared"].values())
        assert announced == [["add"], ["approve", "factorial", "fail", "greet"]]
        assert status.has_function("shared", "add") and not status.has_function("shared", "multiply")
        handle = client.options(target="shared").begin_rpc("mul-1", "multiply", 2, 3)
        waiting = until(lambda: client.status().waiting, "the task to be reported as waiting")
        assert waiting == [{"group": "shared", "func": "multiply", "version": 0, "tasks": 1}]
        assert not handle.done() and client.promises.get("mul-1").state == "PENDING"  # waits, never rejected
    finally:
        client.stop()


def test_invoke_says_which_worker_is_missing_and_fails_fast(daemon: Daemon) -> None:
    started = time.monotonic()
    r = subprocess.run([*CLI, "invoke", "multiply", "2", "3", "--group", "shared"], env=env_for(daemon),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == exits.NOT_FOUND, r.stderr
    assert "no worker of group 'shared' has 'multiply'" in r.stderr and "add" in r.stderr
    assert time.monotonic() - started < 20
    r = subprocess.run([*CLI, "invoke", "add", "2", "3", "--group", "shared", "--json"], env=env_for(daemon),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["result"]["sum"] == 5, r.stderr
