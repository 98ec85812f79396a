"""Acting on a failure: `resonate workflows list`, `resonate retry` and `resonate fork` on real processes (a
daemon, `resonate worker` subprocesses, the CLI as a subprocess), and embedded on a database file.

Side effects are counted in a file every step appends to (tests/programs/order_app.py): a retry must not
run again a step that resolved, a fork from step N must run only the steps after N."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pexpect
import pytest
from daemon_proc import Daemon
from typer.testing import CliRunner

from resonate_cli import exits
from resonate_cli.main import app

HERE = os.path.dirname(os.path.abspath(__file__))
ORDER_APP = os.path.join(HERE, "programs", "order_app.py")
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


class Setup:
    def __init__(self, daemon: Daemon, log: str) -> None:
        self.daemon, self.log = daemon, log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RESONATE_", "ORDER_"))}
        self.env.update(RESONATE_SOCKET=daemon.socket, NO_COLOR="1", COLUMNS="200", ORDER_LOG=log)
        self.worker: subprocess.Popen[bytes] | None = None

    def start_worker(self, **env: str) -> None:
        self.worker = subprocess.Popen([*CLI, "worker", ORDER_APP, "--group", "orders"], env={**self.env, **env},
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def connected() -> bool:
            with self.daemon.client() as c:
                groups = c.get("/v1/status").json()["functions"].get("orders", {})
            return any(fs and "order" in fs for pid, fs in groups.items())
        until(connected, "the worker to connect")

    def stop_worker(self) -> None:
        assert self.worker is not None
        self.worker.terminate()
        assert self.worker.wait(timeout=15) == 0
        self.worker = None

        def gone() -> bool:
            with self.daemon.client() as c:
                return not c.get("/v1/status").json()["functions"].get("orders")
        until(gone, "the worker to disconnect")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], env=self.env, capture_output=True, text=True, timeout=60)

    def effects(self) -> list[str]:
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return f.read().split()


@pytest.fixture
def setup(short_dir: str) -> Iterator[Setup]:
    d = Daemon().start()
    s = Setup(d, os.path.join(short_dir, "effects.log"))
    try:
        yield s
    finally:
        if s.worker is not None:
            s.worker.kill()
            s.worker.wait()
        d.stop()
        d.cleanup()


def test_retry_after_a_fix_runs_only_what_did_not_resolve_and_fork_only_what_follows(setup: Setup) -> None:
    s = setup
    s.start_worker(ORDER_BROKEN="1")
    failed = s.cli("invoke", "order", "7", "--id", "o1", "--group", "orders")
    assert failed.returncode == exits.REJECTED, failed.stderr
    assert "Broken: KeyError: 'reviewer'" in failed.stderr
    assert s.effects() == ["reserve", "charge"]

    listed = s.cli("workflows", "list", "--state", "failed", "--json")
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert (doc["total"], [w["id"] for w in doc["workflows"]], doc["workflows"][0]["func"]) == (1, ["o1"], "order")
    assert doc["workflows"][0]["error"]["type"].endswith("Broken")
    steps = json.loads(s.cli("steps", "o1", "--json").stdout)["steps"]
    assert [(x["step"], x["func"], x["state"]) for x in steps] == [
        (None, "order", "REJECTED"), ("1", "step", "RESOLVED"), ("2", "step", "REJECTED")]

    s.stop_worker()  # the fix: a worker with the new code
    s.start_worker()
    retried = s.cli("retry", "o1", "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["result"] == ["RESERVE", "CHARGE", "SHIP", 7]
    assert s.effects() == ["reserve", "charge", "charge", "ship"]  # reserve kept its result

    again = s.cli("retry", "o1")
    assert again.returncode == exits.CONFLICT and "already resolved" in again.stderr

    forked = s.cli("fork", "o1", "--from-step", "2", "--id", "o1b", "--json")
    assert forked.returncode == 0, forked.stderr
    assert json.loads(forked.stdout)["tags"]["resonate:forked-from"] == "o1@2"
    assert (json.loads(forked.stdout)["id"], json.loads(forked.stdout)["result"]) == (
        "o1b", ["RESERVE", "CHARGE", "SHIP", 7])
    assert s.effects() == ["reserve", "charge", "charge", "ship", "ship"]  # only the step after 2

    whole = s.cli("fork", "o1", "--from-step", "0", "--no-wait")
    assert (whole.returncode, whole.stdout) == (0, "o1-fork-1\n")
    until(lambda: s.effects()[5:] == ["reserve", "charge", "ship"], "the fork from step 0 to run every step")

    past = s.cli("fork", "o1", "--from-step", "4")
    assert past.returncode == exits.USAGE and "made 3 steps" in past.stderr
    taken = s.cli("fork", "o1", "--from-step", "1", "--id", "o1b")
    assert taken.returncode == exits.CONFLICT and "already exists" in taken.stderr
    resolved = json.loads(s.cli("workflows", "list", "--func", "order", "--state", "resolved", "--json").stdout)
    assert resolved["total"] == 3


def test_a_running_workflow_is_refused_with_a_clear_message(setup: Setup) -> None:
    s = setup
    s.start_worker()
    started = s.cli("invoke", "held", "1", "--id", "h1", "--group", "orders", "--no-wait")
    assert started.returncode == 0, started.stderr

    def waiting() -> bool:
        with s.daemon.client() as c:
            return c.get("/promises/h1.1").status_code == 200
    until(waiting, "the workflow to wait on its promise")
    for args in (("retry", "h1"), ("fork", "h1", "--from-step", "0")):
        refused = s.cli(*args)
        assert refused.returncode == exits.CONFLICT, refused.stderr
        assert "still running" in refused.stderr and "resonate promises cancel h1" in refused.stderr
    step = s.cli("retry", "h1.1")
    assert step.returncode == exits.USAGE and "a step of workflow 'h1', not a workflow: resonate retry h1" in step.stderr
    missing = s.cli("retry", "nope")
    assert missing.returncode == exits.NOT_FOUND


def test_no_worker_for_the_function_fails_fast_unless_queued(setup: Setup) -> None:
    s = setup
    s.start_worker(ORDER_BROKEN="1")
    assert s.cli("invoke", "order", "1", "--id", "o2", "--group", "orders").returncode == exits.REJECTED
    s.stop_worker()
    alone = s.cli("retry", "o2")
    assert alone.returncode == exits.NOT_FOUND and "no worker of group 'orders' has 'order'" in alone.stderr
    stored = s.cli("invoke", "order", "1", "--id", "o2", "--group", "orders")  # no worker, but nothing to run
    assert stored.returncode == exits.REJECTED and "Broken" in stored.stderr
    taken = s.cli("invoke", "order", "2", "--id", "o2", "--group", "orders")
    assert taken.returncode == exits.CONFLICT and "'o2' is taken: it is order(1) (rejected)" in taken.stderr
    here = s.cli("invoke", "order", "3", "--id", "o3", "--group", "orders", "--app", ORDER_APP)  # runs here
    assert (here.returncode, json.loads(here.stdout)) == (0, ["RESERVE", "CHARGE", "SHIP", 3]), here.stderr
    assert json.loads(s.cli("promises", "get", "o2", "--json").stdout)["state"] == "REJECTED"  # nothing changed
    queued = s.cli("retry", "o2", "--queue", "--no-wait")
    assert (queued.returncode, queued.stdout) == (0, "o2\n")
    waiting = json.loads(s.cli("steps", "o2", "--json").stdout)["steps"][0]["note"]
    assert waiting == "waiting for a worker of group orders with order"
    s.start_worker()
    until(lambda: json.loads(s.cli("promises", "get", "o2", "--json").stdout)["state"] == "RESOLVED",
          "the queued retry to run on the worker that connects")


def test_embedded_retry_and_fork_run_here_with_the_app(short_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    log = os.path.join(short_dir, "effects.log")
    monkeypatch.setenv("ORDER_LOG", log)
    monkeypatch.setenv("ORDER_BROKEN", "1")
    env = {"RESONATE_DB": os.path.join(short_dir, "r.db"), "RESONATE_SOCKET": "", "XDG_RUNTIME_DIR": short_dir,
           "RESONATE_URL": "", "RESONATE_TOKEN": ""}
    runner = CliRunner()

    def cli(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env)

    assert cli("invoke", "order", "3", "--id", "e1", "--app", ORDER_APP).exit_code == exits.REJECTED
    needs = cli("retry", "e1")
    assert needs.exit_code == exits.USAGE and "pass --app" in needs.stderr
    monkeypatch.delenv("ORDER_BROKEN")
    done = cli("retry", "e1", "--app", ORDER_APP)
    assert (done.exit_code, done.stdout) == (0, '["RESERVE", "CHARGE", "SHIP", 3]\n'), done.stderr
    assert done.stderr.count("embedded store at") == 1
    fork = cli("fork", "e1", "--from-step", "1", "--app", ORDER_APP, "--json")
    assert fork.exit_code == 0 and json.loads(fork.stdout)["id"] == "e1-fork-1"
    with open(log) as f:
        assert f.read().split() == ["reserve", "charge", "charge", "ship", "charge", "ship"]
    listed = cli("workflows", "list", "--since", "1h", "--json-lines")
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == ["e1-fork-1", "e1"]
    assert cli("workflows", "list", "--since", "yesterday-ish").exit_code == exits.USAGE
    assert cli("workflows", "list", "--state", "sideways").exit_code == exits.USAGE


def test_follow_prints_each_step_as_it_finishes_until_the_workflow_completes(setup: Setup) -> None:
    s = setup
    s.start_worker()
    assert s.cli("invoke", "gated", "5", "--id", "g1", "--group", "orders", "--no-wait").returncode == 0
    proc = subprocess.Popen([*CLI, "tree", "g1", "--follow", "--json-lines"], env=s.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []], daemon=True)
    reader.start()
    seen: list[tuple[str, str, str]] = []

    def until_event(event: str, id: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while (event, id) not in {(e, i) for e, i, _ in seen}:
            doc = json.loads(lines.get(timeout=max(deadline - time.monotonic(), 0.01)))
            seen.append((doc["event"], doc["id"], doc["state"]))

    try:
        until_event("started", "g1.2")  # the person's promise: the workflow waits on it, the follow goes on
        until_event("completed", "g1.1")
        assert ("completed", "g1.1", "RESOLVED") in seen and proc.poll() is None
        assert not any(i == "g1" and e == "completed" for e, i, _ in seen)
        assert s.cli("promises", "resolve", "g1.2", "--data", '"yes"').returncode == 0
        until_event("completed", "g1")
        assert proc.wait(timeout=WAIT_S) == 0
        reader.join(timeout=WAIT_S)
        while not lines.empty():
            doc = json.loads(lines.get_nowait())
            seen.append((doc["event"], doc["id"], doc["state"]))
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    done = [(i, state) for e, i, state in seen if e == "completed"]
    assert done == [("g1.1", "RESOLVED"), ("g1.2", "RESOLVED"), ("g1.3", "RESOLVED"), ("g1", "RESOLVED")]
    again = s.cli("tree", "g1", "--follow")  # already over: the tree at once
    assert again.returncode == 0 and "gated" in again.stdout and "g1.3" in again.stdout
    assert s.cli("tree", "nope", "--follow").returncode == exits.NOT_FOUND


def test_reads_work_while_another_process_holds_the_database(short_dir: str) -> None:
    """`invoke --app` embedded holds the file while it runs; read commands open it read-only beside it
    (and follow it), writes are refused with what to do, and nothing is changed by the readers."""
    gate = os.path.join(short_dir, "gate")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESONATE_", "ORDER_"))}
    env.update(RESONATE_DB=os.path.join(short_dir, "r.db"), XDG_RUNTIME_DIR=short_dir, NO_COLOR="1", COLUMNS="200",
               ORDER_LOG=os.path.join(short_dir, "effects.log"))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)

    holder = subprocess.Popen([*CLI, "invoke", "gated_by_file", gate, "--id", "w1", "--app", ORDER_APP], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    follower: subprocess.Popen[str] | None = None
    try:
        def first_step_done() -> bool:
            r = cli("promises", "get", "w1.1", "--json")
            return r.returncode == 0 and json.loads(r.stdout)["state"] == "RESOLVED"
        try:
            until(first_step_done, "the holder to run the first step")
        except TimeoutError:
            holder.kill()
            raise AssertionError(f"holder: {holder.communicate()}; get: {cli('promises', 'get', 'w1.1')}") from None
        listed = cli("promises", "list")
        assert listed.returncode == 0 and f"read-only: process {holder.pid} holds it" in listed.stderr
        assert [w["id"] for w in json.loads(cli("workflows", "list", "--json").stdout)["workflows"]] == ["w1"]
        assert cli("steps", "w1").returncode == 0
        status = cli("status", "--json")
        assert status.returncode == exits.UNREACHABLE and json.loads(status.stdout)["promises"]["PENDING"] >= 1
        refused = cli("promises", "create", "other", "--timeout", "1h")
        assert refused.returncode == exits.UNREACHABLE and "in use by another process" in refused.stderr
        follower = subprocess.Popen([*CLI, "tree", "w1", "--follow", "--json-lines"], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert follower.stdout is not None
        first = json.loads(follower.stdout.readline())
        assert (first["event"], first["id"], first["state"]) == ("started", "w1", "PENDING")
        with open(gate, "w"):
            pass
        assert holder.wait(timeout=WAIT_S) == 0
        assert follower.wait(timeout=WAIT_S) == 0
        rest = [json.loads(line) for line in follower.stdout.read().splitlines()]
        assert ("completed", "w1", "RESOLVED") == (rest[-1]["event"], rest[-1]["id"], rest[-1]["state"])
        assert [e["id"] for e in rest if e["event"] == "completed"][-2:] == ["w1.3", "w1"]
    finally:
        for proc in (holder, follower):
            if proc is not None:
                proc.kill()
                proc.wait()
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
    assert cli("promises", "get", "other").returncode == exits.NOT_FOUND  # the refused write left nothing


def test_the_readme_walkthrough_does_what_it_says(short_dir: str) -> None:
    """README's "With a daemon" block, command by command, on examples/orders.py."""
    example = os.path.join(os.path.dirname(HERE), "examples", "orders.py")
    d = Daemon().start()
    s = Setup(d, os.path.join(short_dir, "unused.log"))

    def worker(**env: str) -> subprocess.Popen[bytes]:
        w = subprocess.Popen([*CLI, "worker", example], env={**s.env, **env}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)

        def connected() -> bool:
            with d.client() as c:
                return bool(c.get("/v1/status").json()["functions"].get("default"))
        until(connected, "the worker to connect")
        return w

    first = worker()
    try:
        ok = s.cli("invoke", "order", '{"id": 7, "amount": 30}', "--id", "order-7")
        assert (ok.returncode, json.loads(ok.stdout)) == (0, {"reserved": "reserved 7", "charged": 30,
                                                              "shipped": "shipped 7"}), ok.stderr
        steps = s.cli("steps", "order-7")
        assert steps.returncode == 0 and all(f in steps.stdout for f in ("reserve", "charge", "ship"))
        bad = s.cli("invoke", "order", '{"id": 8, "amount": 500}', "--id", "order-8")
        assert bad.returncode == exits.REJECTED
        assert "CardDeclined: 500 is over the card's limit of 100" in bad.stderr and "Traceback" in bad.stderr
        failed = s.cli("workflows", "list", "--state", "failed")
        assert "order-8" in failed.stdout and "CardDeclined" in failed.stdout
        first.terminate()
        first.wait(timeout=15)
        first = worker(ORDERS_CARD_LIMIT="1000")
        retried = s.cli("retry", "order-8", "--json")
        assert json.loads(retried.stdout)["result"]["charged"] == 500, retried.stderr
        history = json.loads(s.cli("steps", "order-8", "--json").stdout)["steps"]
        assert history[1]["worker"] != history[2]["worker"]  # reserve kept (first worker), charge ran again
        forked = s.cli("fork", "order-7", "--from-step", "2", "--id", "order-7b")
        assert forked.returncode == 0 and json.loads(forked.stdout)["shipped"] == "shipped 7"
        assert s.cli("invoke", "approve_order", '{"id": 9, "amount": 20}', "--id", "order-9",
                     "--no-wait").stdout == "order-9\n"
        follow = subprocess.Popen([*CLI, "tree", "order-9", "--follow"], env=s.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        assert follow.stdout is not None
        while "order-9.2" not in (line := follow.stdout.readline()):
            assert line, "the follow ended before the person's promise appeared"
        assert s.cli("promises", "resolve", "order-9.2", "--data", '{"approved": true}').returncode == 0
        out, _ = follow.communicate(timeout=WAIT_S)
        assert follow.returncode == 0 and "completed approve_order order-9 RESOLVED" in out
        gc = s.cli("gc", "--older-than", "30d", "--dry-run")
        assert gc.returncode == 0 and gc.stdout.startswith("would delete 0 promises"), gc.stderr
        status = s.cli("status")
        assert status.returncode == 0 and "default: 1" in status.stdout
    finally:
        first.kill()
        first.wait()
        d.stop()
        d.cleanup()


def test_the_spinner_says_which_attempt_failed_and_when_the_next_is(short_dir: str) -> None:
    """On a terminal, invoke's spinner shows a retrying step: its attempt, the last error, the next time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESONATE_", "ORDER_"))}
    env.update(RESONATE_DB=os.path.join(short_dir, "r.db"), XDG_RUNTIME_DIR=short_dir, COLUMNS="200",
               ORDER_LOG=os.path.join(short_dir, "effects.log"))
    env["NO_COLOR"] = "1"
    counter = os.path.join(short_dir, "attempts")
    child = pexpect.spawn(CLI[0], [*CLI[1:], "invoke", "flaky_flow", counter, "--id", "fl", "--app", ORDER_APP],
                          env=env, encoding="utf-8", timeout=WAIT_S, dimensions=(40, 250))
    try:
        child.expect(r"attempt 1 of 6 failed \(ConnectionError: refused on attempt 1\), next in")
        child.expect(r"attempt 2 of 6 failed \(ConnectionError: refused on attempt 2\), next in")
        child.expect(r"\x1b\[2K(\x1b\[1m)?3(\x1b\[0m)?\r\n")  # the result, where the spinner was
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
