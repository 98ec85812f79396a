"""Failures a user can see and act on: arguments that do not fit fail at once, retries end and say so,
errors keep their type and traceback, and the schema migrates in place. Local mode on a real SQLite file,
the CLI in process and as a subprocess; the daemon cases are in tests/test_routing.py and
tests/test_history.py."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
from typing import Any

import pytest
from typer.testing import CliRunner

from resonate import Constant, Context, NonRetryable, Resonate, codec
from resonate_cli import exits
from resonate_cli.main import app

HERE = os.path.dirname(os.path.abspath(__file__))
CLI_APP = os.path.join(HERE, "programs", "cli_app.py")


@pytest.fixture
def r(db_path: str) -> Any:
    res = Resonate.local(path=db_path)
    yield res
    res.stop()


def test_arguments_that_do_not_fit_fail_before_anything_is_stored(r: Resonate) -> None:
    calls: list[int] = []

    @r.register
    def charge(ctx: Context, amount: int, currency: str = "EUR") -> int:
        calls.append(amount)
        return amount

    with pytest.raises(TypeError, match=r"charge\(amount, currency='EUR'\): too many positional"):
        charge.run("c-1", 1, "EUR", "extra")
    with pytest.raises(TypeError, match="unexpected keyword argument 'cents'"):
        charge.run("c-2", 5, cents=5)
    assert calls == [] and r.promises.search("c-*")[0] == []  # nothing ran, nothing stored


def test_a_step_called_with_wrong_arguments_is_not_retried(r: Resonate, caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[int] = []

    def step(ctx: Context, a: int) -> int:
        attempts.append(a)
        return a

    @r.register
    def wf(ctx: Context) -> Any:
        return (yield ctx.run(step, 1, 2))  # one argument too many: no retry can fix it

    with pytest.raises(TypeError, match="positional"):
        wf.run("wf-args")
    assert attempts == [] and r.promises.get("wf-args.1").state == "REJECTED"
    assert r.promises.search("wf-args.1.retry.*")[0] == []


def test_non_retryable_errors_fail_at_once(r: Resonate) -> None:
    attempts = {"declined": 0, "typed": 0}

    class Declined(NonRetryable):
        pass

    def declined(ctx: Context) -> None:
        attempts["declined"] += 1
        raise Declined("card declined")

    def typed(ctx: Context) -> None:
        attempts["typed"] += 1
        raise KeyError("sku")

    @r.register
    def wf(ctx: Context) -> Any:
        out = []
        for step in (declined, typed):
            try:
                yield ctx.run(step).options(retry_policy=Constant(delay=0, max_retries=5, non_retryable=(KeyError,)))
            except Exception as exc:
                out.append(type(exc).__name__)
        return out

    assert wf.run("nr") == ["Declined", "KeyError"]
    assert attempts == {"declined": 1, "typed": 1}


def test_each_failed_attempt_is_a_warning_and_the_timer_records_it(r: Resonate,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    def flaky(ctx: Context) -> int:
        if ctx.info.attempt < 3:
            raise ConnectionError(f"try {ctx.info.attempt}")
        return ctx.info.attempt

    @r.register
    def wf(ctx: Context) -> Any:
        return (yield ctx.run(flaky).options(retry_policy=Constant(delay=0, max_retries=4)))

    with caplog.at_level(logging.WARNING, logger="resonate"):
        assert wf.run("flaky") == 3
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert any("attempt 1 of 5 failed: ConnectionError: try 1" in w for w in warnings), warnings
    assert any("attempt 2 of 5 failed: ConnectionError: try 2" in w for w in warnings), warnings
    timer = codec.decode(r.promises.get("flaky.1.retry.2").param)
    assert timer["attempt"] == 2 and timer["of"] == 5 and timer["error"] == {
        "type": "builtins:ConnectionError", "message": "try 2"} and isinstance(timer["next"], int)
    step = r.promises.get("flaky.1")
    assert step.value.headers[codec.ATTEMPTS_HEADER] == "3"
    assert int(step.value.headers[codec.STARTED_HEADER]) <= step.completed_on  # type: ignore[operator]
    assert step.value.headers[codec.WORKER_HEADER].endswith(f":{os.getpid()}")


@pytest.fixture
def cli(short_dir: str) -> Any:
    env = {"RESONATE_DB": os.path.join(short_dir, "r.db"), "RESONATE_SOCKET": "", "RESONATE_URL": "",
           "XDG_RUNTIME_DIR": short_dir}
    return lambda *args: CliRunner().invoke(app, list(args), env=env)


def test_invoke_shows_the_error_type_and_traceback(cli: Any) -> None:
    r = cli("invoke", "fail", "boom", "--id", "f-1", "--app", CLI_APP)
    assert r.exit_code == exits.REJECTED
    assert "error: f-1 failed: ValueError: boom" in r.stderr and "Traceback (most recent call last)" in r.stderr
    assert "cli_app.py" in r.stderr and "execution.py" not in r.stderr  # the user's frames, not ours
    doc = json.loads(cli("promises", "get", "f-1", "--json").stdout)
    assert doc["error"]["type"] == "builtins:ValueError" and doc["error"]["name"] == "ValueError"
    assert doc["error"]["message"] == "boom" and "raise ValueError" in doc["error"]["traceback"]
    human = cli("promises", "get", "f-1")
    assert "ValueError: boom" in human.stdout and "traceback" in human.stdout


def test_invoke_with_arguments_that_do_not_fit_is_a_usage_error(cli: Any) -> None:
    r = cli("invoke", "factorial", "5", "6", "--app", CLI_APP)
    assert r.exit_code == exits.USAGE and "factorial(n): too many positional arguments" in r.stderr
    assert json.loads(cli("promises", "list", "--json").stdout)["promises"] == []


def test_a_version_1_database_is_migrated_in_place(db_path: str) -> None:
    r = Resonate.local(path=db_path)
    r.promises.create("kept", ikey="kept")
    r.stop()
    db = sqlite3.connect(db_path)  # what a schema-1 file looks like: no task columns of schema 2
    for column in ("func", "version", "claimed_on", "last_process_id"):
        db.execute(f"ALTER TABLE tasks DROP COLUMN {column}")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    probe = ("import sys\nfrom resonate import Resonate, Context\nr = Resonate.local(path=sys.argv[1])\n"
             "@r.register\ndef f(ctx: Context, x: int) -> int:\n    return x + 1\n"
             "print(f.run('after', 1), r.promises.get('kept').state)\nr.stop()")
    out = subprocess.run([sys.executable, "-c", probe, db_path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["2", "PENDING"], out.stderr
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("3",)
        assert db.execute("SELECT func FROM tasks WHERE id = '__invoke:after'").fetchone() == ("f",)
    finally:
        db.close()


def test_a_plain_step_retries_ten_times_by_default_then_fails() -> None:
    from resonate.options import default_retry_policy
    from resonate.retry import max_attempts

    def plain(ctx: Context) -> None: ...

    def durable(ctx: Context) -> Any:
        yield ctx.sleep(0)

    policy = default_retry_policy(plain)
    assert max_attempts(policy) == 10
    assert [policy.next(a) for a in (1, 2, 3, 6, 9, 10)] == [1, 2, 4, 30, 30, None]
    assert default_retry_policy(durable).next(1) is None  # generators replay, never retried
