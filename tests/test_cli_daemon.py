"""The CLI against a real daemon subprocess and a real `resonate worker` subprocess.

Includes the interactive resolve, driven through a real pseudo-terminal (pexpect): pick the promise,
type bad JSON, see the validation error, type good JSON, confirm, and the waiting function continues
in the worker process.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pexpect
import pytest
from daemon_proc import Daemon
from typer.testing import CliRunner

from resonate_cli import exits
from resonate_cli.main import app

APP = os.path.join(os.path.dirname(__file__), "programs", "cli_app.py")
CLI = [sys.executable, "-m", "resonate_cli"]


def cli_env(daemon: Daemon) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESONATE_")}
    env.update(RESONATE_SOCKET=daemon.socket, NO_COLOR="1", COLUMNS="200")
    return env


def connected(daemon: Daemon, group: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    with daemon.client() as c:
        while time.monotonic() < deadline:
            if c.get("/v1/status").json()["workers"].get(group):
                return
            time.sleep(0.02)  # a poll interval bounded by the deadline, not a guess at readiness
    raise TimeoutError(f"no worker of {group!r} connected: {daemon.stderr()}")


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = Daemon().start()
    worker = subprocess.Popen([*CLI, "worker", APP, "--group", "default"], env=cli_env(d),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        connected(d, "default")
        yield d
    finally:
        worker.terminate()
        assert worker.wait(timeout=15) == 0, worker.stderr.read() if worker.stderr else ""
        if worker.stderr:
            worker.stderr.close()
        d.stop()
        d.cleanup()


def run(daemon: Daemon, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=cli_env(daemon), capture_output=True, text=True, timeout=timeout)


def inproc(daemon: Daemon, *args: str) -> Any:
    return CliRunner().invoke(app, ["--socket", daemon.socket, *args], env={"RESONATE_DB": "", "RESONATE_URL": ""})


def test_invoke_through_the_daemon_needs_no_app(daemon: Daemon) -> None:
    r = run(daemon, "invoke", "factorial", "5", "--id", "d-f5")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "120\n"
    tree = json.loads(inproc(daemon, "tree", "d-f5", "--json").stdout)
    assert tree["func"] == "factorial" and tree["children"][0]["kind"] == "run"
    assert tree["children"][0]["tags"]["resonate:parent"] == "d-f5"


def test_rejected_execution_exits_7(daemon: Daemon) -> None:
    r = run(daemon, "invoke", "fail", "boom", "--json")
    assert r.returncode == exits.REJECTED
    assert json.loads(r.stdout)["state"] == "REJECTED" and "boom" in r.stdout


def test_status_and_workers_report_the_daemon(daemon: Daemon) -> None:
    s = json.loads(inproc(daemon, "status", "--json").stdout)
    assert s["mode"] == "daemon" and s["socket"] == daemon.socket and s["db"] == daemon.db
    assert s["workers"]["default"] and isinstance(s["pid"], int)
    w = json.loads(inproc(daemon, "workers", "--json").stdout)
    assert w["workers"]["default"] == s["workers"]["default"]
    human = inproc(daemon, "workers")
    assert "default" in human.stdout
    t = json.loads(inproc(daemon, "tasks", "list", "--json").stdout)
    assert all({"id", "counter", "state"} <= set(x) for x in t["tasks"])


def test_promise_commands_and_exit_codes_over_the_socket(daemon: Daemon) -> None:
    assert inproc(daemon, "promises", "create", "d-ask", "--data", '{"q": 2}').exit_code == 0
    got = inproc(daemon, "promises", "get", "d-ask", "--json")
    assert got.exit_code == 0 and json.loads(got.stdout)["state"] == "PENDING"
    assert inproc(daemon, "promises", "get", "d-nope").exit_code == exits.NOT_FOUND
    assert inproc(daemon, "promises", "create", "d-ask", "--idempotency-key", "k").exit_code == exits.CONFLICT
    assert inproc(daemon, "promises", "resolve", "d-ask", "--data", "1").exit_code == 0
    assert inproc(daemon, "promises", "reject", "d-ask", "--data", "2").exit_code == exits.CONFLICT
    listed = json.loads(inproc(daemon, "promises", "search", "d-*", "--json").stdout)
    assert "d-ask" in {p["id"] for p in listed["promises"]}
    r = inproc(daemon, "promises", "wait", "d-ask", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["result"] == 1


def test_another_db_than_the_daemons_works_embedded(daemon: Daemon) -> None:
    other = os.path.join(daemon.dir, "other.db")
    r = CliRunner().invoke(app, ["--socket", daemon.socket, "--db", other, "status", "--json"])
    assert json.loads(r.stdout)["mode"] == "embedded" and json.loads(r.stdout)["db"] == other


def test_the_daemons_db_while_its_socket_is_silent_is_exit_4(daemon: Daemon) -> None:
    r = CliRunner().invoke(app, ["--socket", os.path.join(daemon.dir, "x.sock"), "--db", daemon.db, "status"])
    assert r.exit_code == exits.UNREACHABLE and "no resonate daemon answers" in r.stderr
    # Without naming a socket, the file is read beside the daemon that holds it, which is named; a write
    # is refused, naming it too.
    env = {"RESONATE_SOCKET": "", "XDG_RUNTIME_DIR": daemon.dir}
    r = CliRunner().invoke(app, ["--db", daemon.db, "status"], env=env)
    assert r.exit_code == exits.UNREACHABLE and f"read-only: process {daemon.proc.pid} holds it" in r.stderr, r.stderr
    r = CliRunner().invoke(app, ["--db", daemon.db, "promises", "create", "x"], env=env)
    assert r.exit_code == exits.UNREACHABLE and f"in use by another process (pid {daemon.proc.pid})" in r.stderr


def test_unreachable_url_is_exit_4() -> None:
    r = CliRunner().invoke(app, ["--url", "http://127.0.0.1:9", "promises", "list"])
    assert r.exit_code == exits.UNREACHABLE


def test_interactive_resolve_in_a_terminal(daemon: Daemon) -> None:
    r = run(daemon, "invoke", "approve", "42", "--id", "order-42", "--no-wait")
    assert r.returncode == 0 and r.stdout == "order-42\n", r.stderr
    # wait until the worker has reached the human wait (the child promise exists); bounded
    deadline = time.monotonic() + 15
    while json.loads(inproc(daemon, "promises", "get", "order-42.1", "--json").stdout or "{}").get("state") != "PENDING":
        assert time.monotonic() < deadline, "the worker never created order-42.1"
        time.sleep(0.02)  # polling another process's progress, bounded by the deadline

    child = pexpect.spawn(CLI[0], [*CLI[1:], "promises", "resolve"], env=cli_env(daemon), encoding="utf-8",
                          timeout=20, dimensions=(40, 200))
    try:
        child.expect("waiting on a person")
        child.expect("order-42.1")
        child.expect("Which one")
        child.sendline("1")
        child.expect("approve order 42")  # the promise's param is shown
        child.expect("execution order-42")  # ... and who waits on it
        child.expect(r"Value to resolve order-42\.1 with \(JSON\)")
        child.sendline('{"approved": tru')
        child.expect("not valid JSON")
        child.expect(r"Value to resolve order-42\.1 with \(JSON\)")
        child.sendline('{"approved": true}')
        child.expect(r"Resolve order-42\.1 with \{\"approved\": true\}\?")
        child.sendline("y")
        child.expect("resolved order-42.1")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    r = run(daemon, "promises", "wait", "order-42", "--timeout", "20s", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["result"] == {"order": 42, "approved": True}


def test_resolve_without_data_and_without_a_terminal_names_data(daemon: Daemon) -> None:
    r = run(daemon, "promises", "resolve", "order-x")
    assert r.returncode == exits.USAGE and "--data" in r.stderr


def test_stop_sends_sigterm_and_the_daemon_exits() -> None:
    d = Daemon().start()
    try:
        r = run(d, "stop")
        assert r.returncode == 0, r.stderr
        assert d.proc is not None and d.proc.wait(timeout=10) == 0
        assert run(d, "stop").returncode == exits.UNREACHABLE
    finally:
        d.cleanup()


def test_invoke_with_an_app_runs_it_here_through_the_daemon(daemon: Daemon) -> None:
    """README's first command with a daemon up: --app is this process's code, so this process runs it (as
    a worker of the group), not the group's worker, whose own factorial (tests/programs/cli_app.py)
    names its steps cli-factorial-N where examples/factorial.py names them factorial-N."""
    factorial = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples", "factorial.py")
    r = run(daemon, "invoke", "factorial", "6", "--id", "here-f6", "--app", factorial, timeout=60)
    assert (r.returncode, r.stdout) == (0, "720\n"), r.stderr
    got = json.loads(inproc(daemon, "promises", "get", "here-f6", "--json").stdout)
    assert got["state"] == "RESOLVED" and got["tags"]["resonate:invoke"].startswith("poll://any@default/")
    step = json.loads(inproc(daemon, "promises", "get", "factorial-5", "--json").stdout)
    assert step["tags"]["resonate:parent"] == "here-f6"


def test_a_named_socket_that_does_not_answer_is_exit_4_never_the_file(daemon: Daemon, short_dir: str) -> None:
    typo = os.path.join(short_dir, "typo.sock")
    for args in (["promises", "list"], ["status"], ["invoke", "factorial", "3", "--app", APP]):
        r = CliRunner().invoke(app, ["--socket", typo, *args], env={"RESONATE_DB": os.path.join(short_dir, "r.db")})
        assert r.exit_code == exits.UNREACHABLE and "no resonate daemon answers at" in r.stderr, (args, r.stderr)
        assert typo in r.stderr
    assert not os.path.exists(os.path.join(short_dir, "r.db"))  # the file was never opened


def test_embedded_mode_says_so_and_status_exits_4(short_dir: str) -> None:
    env = {"RESONATE_DB": os.path.join(short_dir, "r.db"), "RESONATE_SOCKET": "", "RESONATE_URL": "",
           "XDG_RUNTIME_DIR": short_dir}
    r = CliRunner().invoke(app, ["promises", "list"], env=env)
    assert r.exit_code == 0 and "embedded store at" in r.stderr and "no daemon at" in r.stderr
    r = CliRunner().invoke(app, ["status", "--json"], env=env)
    assert r.exit_code == exits.UNREACHABLE and json.loads(r.stdout)["mode"] == "embedded"
    assert "embedded store" not in r.stderr  # --json: stderr is for the error document only


def test_invoke_from_file_starts_one_execution_per_line(daemon: Daemon, tmp_path: Any) -> None:
    lines = [json.dumps([n]) for n in range(1, 201)] + ['{"id": "ff-greet", "args": ["x"]}']
    path = tmp_path / "starts.jsonl"
    path.write_text("\n".join(lines[:200]) + "\n\n")  # a blank line is skipped
    r = run(daemon, "invoke", "factorial", "--from-file", str(path))
    assert r.returncode == 0, r.stderr
    got = [line.split("\t") for line in r.stdout.splitlines()]
    assert [json.loads(v) for _, v in got] == [math.factorial(n) for n in range(1, 201)]
    assert "200 executions: 200 resolved" in r.stderr
    # From stdin: arrays, one plain value, objects with an id and kwargs; one that fails exits 7.
    stdin = '["ann"]\n"bob"\n{"id": "ff-cy", "args": ["cy"], "kwargs": {"punctuation": "?"}}\n'
    r = subprocess.run([*CLI, "invoke", "greet", "-f", "-", "--json"], input=stdin, env=cli_env(daemon),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["executions"], doc["resolved"]) == (3, 3)
    assert doc["results"][2] == {"id": "ff-cy", "state": "RESOLVED", "result": "hello cy?"}
    r = subprocess.run([*CLI, "invoke", "fail", "-f", "-"], input='["no"]\n', env=cli_env(daemon),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == exits.REJECTED and "1 executions: 0 resolved" in r.stderr


@pytest.mark.parametrize("stdin, message", [
    ('[1]\nnot json\n', "stdin:2: not JSON"),
    ('{"id": "a"}\n{"id": "a"}\n', "stdin:2: id 'a' is also on line 1"),
    ('{"args": 5}\n', "stdin:1: \"args\" must be an array"),
    ('{"ids": 5}\n', "stdin:1: unknown key(s) 'ids'"),
    ('\n\n', "stdin: no executions in it"),
])
def test_invoke_from_file_checks_every_line_before_starting_any(daemon: Daemon, stdin: str, message: str) -> None:
    before = json.loads(run(daemon, "promises", "list", "--limit", "1000", "--json").stdout)
    r = subprocess.run([*CLI, "invoke", "factorial", "-f", "-"], input=stdin, env=cli_env(daemon),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == exits.USAGE and message in r.stderr, r.stderr
    assert json.loads(run(daemon, "promises", "list", "--limit", "1000", "--json").stdout) == before  # nothing stored


def test_invoke_from_file_refuses_arguments_beside_it(daemon: Daemon) -> None:
    r = run(daemon, "invoke", "factorial", "5", "--from-file", "-")
    assert r.returncode == exits.USAGE and "no ARGS, --kwarg, --id or --app" in r.stderr
