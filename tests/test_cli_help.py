"""Help text is part of the interface: every command has help with an example; --help lists exit codes;
--version names this implementation; the checked-in completion scripts match what the app generates."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from resonate_cli import exits
from resonate_cli.main import app

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def commands() -> list[list[str]]:
    """Every leaf command's path, e.g. ["promises", "resolve"]."""
    found: list[list[str]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        if hasattr(cmd, "commands"):  # a group (Typer vendors its own Click, so no isinstance check)
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            found.append(path)

    walk(typer.main.get_command(app), [])
    return found


def test_the_commands_the_issue_lists_exist() -> None:
    names = {" ".join(c) for c in commands()}
    for want in ("serve", "worker", "status", "stop", "invoke", "tree", "workers", "tasks list",
                 "promises list", "promises search", "promises get", "promises create", "promises resolve",
                 "promises reject", "promises cancel", "promises wait"):
        assert want in names


@pytest.mark.parametrize("path", commands(), ids=lambda p: " ".join(p))
def test_every_command_has_help_with_an_example(path: list[str]) -> None:
    r = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "Example" in r.stdout and "resonate " in r.stdout


def test_root_help_lists_every_exit_code() -> None:
    r = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "400"})
    assert r.exit_code == 0
    text = " ".join(r.stdout.split())
    for code, what in exits.TABLE:
        assert f"{code} {what}" in text


def test_version_names_this_implementation() -> None:
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.startswith("resonate (resonate-local) ")


def test_unknown_flag_is_a_usage_error() -> None:
    r = CliRunner().invoke(app, ["promises", "list", "--nope"])
    assert r.exit_code == exits.USAGE


def test_completion_scripts_are_up_to_date() -> None:
    r = subprocess.run([sys.executable, os.path.join(ROOT, "completions", "generate.py"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_promise_ids_complete_dynamically(short_dir: str) -> None:
    env = dict(os.environ, RESONATE_DB=os.path.join(short_dir, "r.db"), XDG_RUNTIME_DIR=short_dir)
    env.pop("RESONATE_URL", None)
    env.pop("RESONATE_SOCKET", None)
    cli = [sys.executable, "-m", "resonate_cli"]
    subprocess.run([*cli, "promises", "create", "order-55"], env=env, check=True, capture_output=True, timeout=60)
    r = subprocess.run(cli, env=dict(env, _RESONATE_COMPLETE="complete_bash",
                                     COMP_WORDS="resonate promises get ord", COMP_CWORD="3"),
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["order-55"], r.stderr


def test_completion_is_silent_when_nothing_answers() -> None:
    env = dict(os.environ, RESONATE_URL="http://127.0.0.1:9", _RESONATE_COMPLETE="complete_bash",
               COMP_WORDS="resonate promises get ord", COMP_CWORD="3")
    r = subprocess.run([sys.executable, "-m", "resonate_cli"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr == ""
