"""The CLI with no daemon: every command works embedded on the database file (CliRunner, in process)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from typer.testing import CliRunner

from resonate_cli import exits
from resonate_cli.main import app

APP = os.path.join(os.path.dirname(__file__), "programs", "cli_app.py")
PROMISE_FIELDS = {"id", "state", "param", "value", "timeout", "tags", "createdOn"}


@pytest.fixture
def cli(short_dir: str) -> Any:
    runner = CliRunner()
    env = {"RESONATE_DB": os.path.join(short_dir, "r.db"), "RESONATE_SOCKET": "", "XDG_RUNTIME_DIR": short_dir,
           "RESONATE_URL": "", "RESONATE_TOKEN": ""}

    def run(*args: str, input: str | None = None) -> Any:
        return runner.invoke(app, list(args), env=env, input=input)

    return run


def doc(result: Any) -> Any:
    return json.loads(result.stdout)


def test_invoke_runs_a_durable_function_here(cli: Any) -> None:
    r = cli("invoke", "factorial", "5", "--app", APP)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "120\n"
    # the steps are durable promises in the file
    r = cli("promises", "get", "cli-factorial-4", "--json")
    assert r.exit_code == 0 and doc(r)["state"] == "RESOLVED"


def test_invoke_json_has_the_promise_and_result(cli: Any) -> None:
    r = cli("invoke", "greet", "ada", "--kwarg", "punctuation=?", "--id", "g-1", "--app", APP, "--json")
    assert r.exit_code == 0, r.stderr
    d = doc(r)
    assert PROMISE_FIELDS <= set(d) and d["id"] == "g-1" and d["state"] == "RESOLVED"
    assert d["result"] == "hello ada?"
    assert d["tags"]["resonate:func"] == "greet"


def test_reinvoking_a_completed_id_prints_the_stored_result(cli: Any) -> None:
    assert cli("invoke", "greet", "bob", "--id", "g-2", "--app", APP).stdout == '"hello bob!"\n'
    r = cli("invoke", "greet", "bob", "--id", "g-2", "--app", APP)
    assert r.exit_code == 0 and r.stdout == '"hello bob!"\n'
    # Another function or other arguments under the same id: the id is taken, nothing runs.
    r = cli("invoke", "greet", "someone-else", "--id", "g-2", "--app", APP)
    assert r.exit_code == exits.CONFLICT and "'g-2' is taken: it is greet('bob')" in r.stderr
    assert cli("invoke", "factorial", "3", "--id", "g-2", "--app", APP).exit_code == exits.CONFLICT


def test_a_global_flag_after_the_command_says_where_it_goes(cli: Any) -> None:
    r = cli("promises", "list", "--db", "x.db")
    flat = " ".join(r.output.replace("│", " ").split())  # the error panel wraps the message
    assert r.exit_code == exits.USAGE and "--db is a global option and goes before the command" in flat


def test_a_read_of_a_database_that_does_not_exist_says_so_and_creates_nothing(cli: Any, short_dir: str) -> None:
    missing = os.path.join(short_dir, "typo", "r.db")
    r = cli("--db", missing, "workflows", "list")
    assert r.exit_code == 0 and "which does not exist: nothing is stored there" in r.stderr
    assert not os.path.exists(os.path.dirname(missing))  # nothing created by a read


def test_default_id_is_readable_and_unique(cli: Any) -> None:
    a = doc(cli("invoke", "greet", "x", "--app", APP, "--json"))["id"]
    b = doc(cli("invoke", "greet", "x", "--app", APP, "--json"))["id"]
    assert a != b and a.startswith("greet-x-") and len(a) == len("greet-x-") + 6


@pytest.mark.parametrize(("args", "code", "words"), [
    (["invoke", "fail", "boom", "--app", APP], exits.REJECTED, "boom"),
    (["invoke", "nope", "--app", APP], exits.NOT_FOUND, "not registered"),
    (["invoke", "factorial", "5"], exits.USAGE, "--app"),
    (["invoke", "factorial", "5", "--app", APP, "--group", "g"], exits.USAGE, "need a daemon"),
    (["invoke", "factorial", "5", "--app", "no/such/app.py"], exits.USAGE, "not found"),
    (["invoke", "factorial", "5", "--app", APP, "--timeout", "soon"], exits.USAGE, "duration"),
    (["promises", "get", "missing"], exits.NOT_FOUND, "not found"),
    (["promises", "resolve", "missing", "--data", "1"], exits.NOT_FOUND, "not found"),
    (["promises", "resolve", "x", "--data", "{bad"], exits.USAGE, "not valid JSON"),
    (["promises", "resolve", "x"], exits.USAGE, "--data"),
    (["promises", "resolve"], exits.USAGE, "ID"),
    (["promises", "list", "--state", "odd"], exits.USAGE, "pending"),
    (["tree", "missing"], exits.NOT_FOUND, "not found"),
    (["worker", APP], exits.UNREACHABLE, "resonate serve"),
    (["stop"], exits.UNREACHABLE, "no resonate daemon"),
])
def test_exit_codes(cli: Any, args: list[str], code: int, words: str) -> None:
    r = cli(*args)
    assert r.exit_code == code, (r.stdout, r.stderr)
    assert words in r.stderr
    assert r.stdout == ""


def test_errors_under_json_are_one_document_on_stderr(cli: Any) -> None:
    r = cli("promises", "get", "missing", "--json")
    assert r.exit_code == exits.NOT_FOUND and r.stdout == ""
    err = json.loads(r.stderr)["error"]
    assert err["code"] == 40400 and err["exit"] == exits.NOT_FOUND and "missing" in err["message"]


def test_create_get_resolve_conflict(cli: Any) -> None:
    r = cli("promises", "create", "ask-1", "--timeout", "1h", "--data", '{"q": 1}', "--tag", "team=ops", "--json")
    assert r.exit_code == 0, r.stderr
    d = doc(r)
    assert PROMISE_FIELDS <= set(d) and d["state"] == "PENDING" and d["tags"] == {"team": "ops"}
    assert cli("promises", "create", "ask-1", "--idempotency-key", "other").exit_code == exits.CONFLICT

    human = cli("promises", "get", "ask-1")
    assert human.exit_code == 0 and "ask-1" in human.stdout and "team" in human.stdout

    r = cli("promises", "resolve", "ask-1", "--data", '{"ok": true}', "--json")
    assert r.exit_code == 0 and doc(r)["state"] == "RESOLVED"
    again = cli("promises", "resolve", "ask-1", "--data", '{"ok": true}')
    assert again.exit_code == 0 and "already" in again.stderr
    assert cli("promises", "resolve", "ask-1", "--data", '{"ok": false}').exit_code == exits.CONFLICT
    assert cli("promises", "reject", "ask-1", "--data", '"no"').exit_code == exits.CONFLICT
    assert cli("promises", "cancel", "ask-1").exit_code == exits.CONFLICT


def test_data_from_file_and_stdin(cli: Any, short_dir: str) -> None:
    path = os.path.join(short_dir, "v.json")
    with open(path, "w") as f:
        f.write('{"from": "file"}')
    cli("promises", "create", "a")
    cli("promises", "create", "b")
    assert cli("promises", "resolve", "a", "--data", f"@{path}").exit_code == 0
    assert cli("promises", "reject", "b", "--data", "-", input='{"from": "stdin"}').exit_code == 0
    assert cli("promises", "wait", "a", "--json").stdout and doc(cli("promises", "wait", "a", "--json"))["result"] == {"from": "file"}
    assert cli("promises", "wait", "b").exit_code == exits.REJECTED
    assert cli("promises", "resolve", "a", "--data", "@/no/such/file").exit_code == exits.USAGE


def test_cancel_and_wait_exit_status(cli: Any) -> None:
    cli("promises", "create", "c")
    r = cli("promises", "cancel", "c", "--json")
    assert r.exit_code == 0 and doc(r)["state"] == "REJECTED_CANCELED"
    assert cli("promises", "wait", "c").exit_code == exits.REJECTED
    cli("promises", "create", "t", "--timeout", "0s")
    assert cli("promises", "wait", "t").exit_code == exits.TIMED_OUT


def test_list_search_json_and_json_lines(cli: Any) -> None:
    for id in ("order-1", "order-2", "other"):
        cli("promises", "create", id)
    cli("promises", "resolve", "order-2", "--data", "1")
    r = cli("promises", "list", "--json")
    assert r.exit_code == 0
    d = doc(r)
    assert set(d) == {"promises", "cursor"} and {p["id"] for p in d["promises"]} == {"order-1", "order-2", "other"}
    r = cli("promises", "search", "order-*", "--state", "pending", "--json-lines")
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [p["id"] for p in lines] == ["order-1"] and PROMISE_FIELDS <= set(lines[0])
    page = doc(cli("promises", "list", "--limit", "2", "--json"))
    assert len(page["promises"]) == 2 and page["cursor"]
    rest = doc(cli("promises", "list", "--limit", "2", "--cursor", page["cursor"], "--json"))
    assert [p["id"] for p in rest["promises"]] == ["order-1"]
    table = cli("promises", "list")
    assert table.exit_code == 0 and "order-1" in table.stdout


def test_human_wait_without_a_daemon(cli: Any) -> None:
    """Embedded: --no-wait runs until the function waits; resolve; wait --app runs the resume here."""
    r = cli("invoke", "approve", "7", "--id", "order-7", "--no-wait", "--app", APP)
    assert r.exit_code == 0 and r.stdout == "order-7\n"
    pending = doc(cli("promises", "list", "--state", "pending", "--json"))["promises"]
    assert {p["id"] for p in pending} == {"order-7", "order-7.1"}
    r = cli("promises", "wait", "order-7")
    assert r.exit_code == exits.UNREACHABLE and "--app" in r.stderr
    # The workflow's own id by mistake: refused, naming the promise it waits on; nothing changes.
    r = cli("promises", "resolve", "order-7", "--data", "true")
    assert r.exit_code == exits.USAGE and "it waits on order-7.1: resolve that instead" in r.stderr
    assert doc(cli("promises", "get", "order-7", "--json"))["state"] == "PENDING"
    steps = doc(cli("steps", "order-7", "--json"))["steps"]
    assert steps[0]["note"] == "suspended: waiting on what it called"
    assert cli("promises", "resolve", "order-7.1", "--data", '{"approved": true}').exit_code == 0
    r = cli("promises", "wait", "order-7", "--app", APP, "--json")
    assert r.exit_code == 0, r.stderr
    assert doc(r)["result"] == {"order": 7, "approved": True}


def test_wait_gives_up_after_timeout(cli: Any) -> None:
    cli("invoke", "approve", "8", "--id", "order-8", "--no-wait", "--app", APP)
    r = cli("promises", "wait", "order-8", "--app", APP, "--timeout", "50ms")
    assert r.exit_code == exits.TIMED_OUT and "still pending" in r.stderr


def test_tree_json_and_human(cli: Any) -> None:
    cli("invoke", "factorial", "3", "--id", "f3", "--app", APP)
    r = cli("tree", "f3", "--json")
    assert r.exit_code == 0
    root = doc(r)
    assert root["id"] == "f3" and root["func"] == "factorial" and root["kind"] == "invoke"
    child = root["children"][0]
    assert child["id"] == "cli-factorial-2" and child["kind"] == "run" and child["state"] == "RESOLVED"
    assert child["children"][0]["id"] == "cli-factorial-1"
    human = cli("tree", "f3")
    assert "factorial" in human.stdout and "cli-factorial-1" in human.stdout and "RESOLVED" in human.stdout


def test_status_tasks_workers_json(cli: Any) -> None:
    cli("invoke", "factorial", "2", "--app", APP)
    s = doc(cli("status", "--json"))
    assert s["mode"] == "embedded" and s["promises"]["RESOLVED"] >= 2 and s["workers"] == {}
    assert {"version", "pid", "socket", "db", "promises", "tasks", "workers"} <= set(s)
    assert "embedded" in cli("status").stdout
    t = doc(cli("tasks", "list", "--json"))
    assert t["tasks"] and {"id", "counter", "state", "rootPromiseId", "type"} <= set(t["tasks"][0])
    assert len(cli("tasks", "list", "--json-lines").stdout.splitlines()) == len(t["tasks"])
    w = doc(cli("workers", "--json"))
    assert w == {"workers": {}, "claimed": {}}


def test_no_wait_json_prints_the_promise(cli: Any) -> None:
    r = cli("invoke", "approve", "1", "--id", "nw", "--no-wait", "--app", APP, "--json")
    assert r.exit_code == 0 and doc(r)["id"] == "nw" and doc(r)["state"] == "PENDING"


def test_an_app_with_its_own_database_file_can_be_invoked_on_it(cli: Any, short_dir: str) -> None:
    """An app that says Resonate.local(path=...) locks that file as it is imported; the CLI only wants its
    functions, so it lets go of the file, and --db on the same file works (it used to say "in use")."""
    db = os.path.join(short_dir, "app.db")
    path = os.path.join(short_dir, "own_db_app.py")
    with open(path, "w") as f:
        f.write("from resonate import Context, Resonate\n"
                f"resonate = Resonate.local(path={db!r})\n\n"
                "@resonate.register\n"
                "def hello(ctx: Context, name: str) -> str:\n"
                "    return 'hello ' + name\n")
    r = cli("--db", db, "invoke", "hello", "bob", "--id", "h-1", "--app", path)
    assert (r.exit_code, r.stdout) == (0, '"hello bob"\n'), r.stderr
    assert doc(cli("--db", db, "promises", "get", "h-1", "--json"))["state"] == "RESOLVED"
