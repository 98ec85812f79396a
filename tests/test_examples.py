"""The programs in examples/ run, as a user would run them, and print what their docstrings promise."""

from __future__ import annotations

import os
import subprocess
import sys

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
TIMEOUT = 60


def run(name: str, *args: str, cwd: str | None = None) -> str:
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def test_factorial() -> None:
    assert run("factorial.py") == "factorial(5) = 120\n"
    assert run("factorial.py", "10") == "factorial(10) = 3628800\n"


def test_factorial_with_a_db_file_twice(short_dir: str) -> None:
    db = os.path.join(short_dir, "f.db")
    assert run("factorial.py", "12", "--db", db) == "factorial(12) = 479001600\n"
    assert run("factorial.py", "12", "--db", db) == "factorial(12) = 479001600\n"


def test_human_in_the_loop_approves() -> None:
    out = run("human_in_the_loop.py").splitlines()
    assert out == ["[reviewer] promise expense-42.1: approve 120 EUR for expense-42? -> yes",
                   "[main] expense expense-42 approved by ada"]


def test_human_in_the_loop_denies() -> None:
    out = run("human_in_the_loop.py", "--deny").splitlines()
    assert out[-1] == "[main] expense expense-42 denied by ada"
