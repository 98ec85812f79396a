"""README.md opens with exactly two set-up commands; both run here exactly as written.

The first (install, then a durable factorial through the CLI on the embedded store) runs in full, in a
shell, with a bounded time; only its database file is pointed into a temp folder (RESONATE_DB) so the
test does not touch the user's data dir, and XDG_RUNTIME_DIR (where the default socket lives) into it too,
so that it runs embedded even on a machine where `resonate serve` is up. The second (install the test extras, run the
suite) runs as written too, but with PYTEST_ADDOPTS=--collect-only: running the whole suite from inside
the suite would recurse; .ci/run runs that same line for real.
"""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def setup_commands() -> list[str]:
    with open(os.path.join(ROOT, "README.md")) as f:
        lines = f.read().splitlines()
    fences = [i for i, ln in enumerate(lines) if ln.startswith("```")]
    assert len(fences) >= 2, "README.md has no code block"
    return [ln for ln in lines[fences[0] + 1:fences[1]] if ln.strip()]


def shell(command: str, short_dir: str, timeout: float, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESONATE_", "PYTEST_"))}
    # `pip` and `resonate` must be this interpreter's, as they are for a user whose PATH has one Python.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(RESONATE_DB=os.path.join(short_dir, "readme.db"), XDG_RUNTIME_DIR=short_dir,
               PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_readme_starts_with_exactly_two_commands() -> None:
    first, second = setup_commands()  # exactly two, or this unpacking fails
    assert first.startswith("pip install -e . && resonate invoke ")
    assert second.startswith('pip install -e ".[test,postgres]" && ') and "pytest" in second
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read()
    assert "sed -n 2p" in ci  # .ci/run takes its test command from the same line
    assert second in ci  # and names it in a comment, which must not drift either


def test_first_command_runs_a_durable_workflow(short_dir: str) -> None:
    first = setup_commands()[0]
    r = shell(first, short_dir, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.splitlines()[-1] == "120", r.stdout[-2000:]
    assert os.path.getsize(os.path.join(short_dir, "readme.db")) > 0  # on the embedded SQLite file


def test_second_command_installs_and_finds_the_tests(short_dir: str) -> None:
    second = setup_commands()[1]
    r = shell(second, short_dir, timeout=600, PYTEST_ADDOPTS="--collect-only -p no:cacheprovider")
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    assert "test_readme.py::test_second_command_installs_and_finds_the_tests" in r.stdout
    collected = [ln for ln in r.stdout.splitlines() if "::" in ln]
    assert len(collected) > 100, r.stdout[-2000:]
