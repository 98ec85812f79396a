"""``resonate schedules ...`` and ``resonate promises cancel --tree``, embedded on a database file (CliRunner)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from typer.testing import CliRunner

from resonate_cli import exits
from resonate_cli.main import app

SCHEDULE_FIELDS = {"id", "cron", "promiseId", "promiseTimeout", "promiseParam", "promiseTags", "nextRunTime",
                   "createdOn"}


@pytest.fixture
def cli(short_dir: str) -> Any:
    runner = CliRunner()
    env = {"RESONATE_DB": os.path.join(short_dir, "r.db"), "RESONATE_SOCKET": "", "XDG_RUNTIME_DIR": short_dir,
           "RESONATE_URL": "", "RESONATE_TOKEN": ""}

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env)

    return run


def test_create_get_list_delete(cli: Any) -> None:
    r = cli("schedules", "create", "nightly", "--cron", "0 2 * * *", "--func", "report", "--arg", "eu",
            "--kwarg", "fmt=csv", "--target", "reports", "--timeout", "1h", "--json")
    assert r.exit_code == 0, r.stderr
    s = json.loads(r.stdout)
    assert SCHEDULE_FIELDS <= set(s) and s["promiseId"] == "nightly.{{.timestamp}}"
    assert s["promiseTimeout"] == 3_600_000
    assert s["promiseTags"]["resonate:invoke"] == "poll://any@reports"
    # the same again is fine; another cron under the same name is a conflict
    assert cli("schedules", "create", "nightly", "--cron", "0 2 * * *", "--func", "report", "--arg", "eu",
               "--kwarg", "fmt=csv", "--target", "reports", "--timeout", "1h").exit_code == 0
    r = cli("schedules", "create", "nightly", "--cron", "0 3 * * *", "--func", "report")
    assert r.exit_code == exits.CONFLICT and "already exists" in r.stderr

    assert json.loads(cli("schedules", "get", "nightly", "--json").stdout)["cron"] == "0 2 * * *"
    human = cli("schedules", "get", "nightly")
    assert human.exit_code == 0 and "report('eu', fmt='csv')" in human.stdout
    listed = json.loads(cli("schedules", "list", "--json").stdout)
    assert [x["id"] for x in listed["schedules"]] == ["nightly"] and listed["cursor"] is None
    assert cli("schedules", "delete", "nightly").exit_code == 0
    r = cli("schedules", "get", "nightly", "--json")
    assert r.exit_code == exits.NOT_FOUND and json.loads(r.stderr)["error"]["code"] == 40401


def test_a_bad_cron_is_a_usage_error_with_the_reason(cli: Any) -> None:
    r = cli("schedules", "create", "bad", "--cron", "every night", "--func", "report", "--json")
    assert r.exit_code == exits.USAGE
    assert "invalid cron expression 'every night'" in json.loads(r.stderr)["error"]["message"]


def test_cancel_tree(cli: Any) -> None:
    for id, parent in (("o-7", None), ("o-7.1", "o-7"), ("o-7.2", "o-7"), ("o-7.1.1", "o-7.1")):
        args = ["promises", "create", id]
        if parent:
            args += ["--tag", f"resonate:parent={parent}", "--tag", "resonate:root=o-7"]
        assert cli(*args).exit_code == 0
    assert cli("promises", "resolve", "o-7.2", "--data", "1").exit_code == 0
    r = cli("promises", "cancel", "o-7", "--tree", "--json")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["promise"]["state"] == "REJECTED_CANCELED" and sorted(d["canceled"]) == ["o-7.1", "o-7.1.1"]
    assert json.loads(cli("promises", "get", "o-7.2", "--json").stdout)["state"] == "RESOLVED"
    r = cli("promises", "create", "o-7.3", "--tag", "resonate:parent=o-7", "--json")
    assert r.exit_code == exits.CONFLICT and "was canceled" in r.stderr
