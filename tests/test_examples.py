"""The programs in examples/ run, as a user would run them, and print what their docstrings promise."""

from __future__ import annotations

import os
import subprocess
import sys
import time

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


def test_load_balancing_across_three_workers() -> None:
    """examples/load_balancing: a daemon, three worker.py processes and client.py, as its docstring says."""
    from daemon_proc import Daemon

    daemon = Daemon().start()
    workers: list[subprocess.Popen[str]] = []
    env = {**os.environ, "RESONATE_SOCKET": daemon.socket}
    try:
        for _ in range(3):
            w = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, "load_balancing", "worker.py")],
                                 env=env, stderr=subprocess.PIPE, text=True)
            workers.append(w)
            assert w.stderr is not None and "ready" in w.stderr.readline()  # its push stream is up
        proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, "load_balancing", "client.py"), "30"],
                              env=env, capture_output=True, text=True, timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        shares = [ln for ln in lines if ln.startswith("worker pid ")]
        assert sorted(int(ln.split()[2].rstrip(":")) for ln in shares) == sorted(w.pid for w in workers)
        assert sum(int(ln.split()[3]) for ln in shares) == 30
        assert lines[-1] == "factorial(10) = 3628800"
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=30)
            if w.stderr is not None:
                w.stderr.close()
        daemon.stop()
        daemon.cleanup()


def test_human_in_the_loop_answered_from_another_process() -> None:
    """examples/human_in_the_loop_remote: the worker suspends on the approval; the CLI, a third process,
    resolves it; the client gets the workflow's result."""
    from daemon_proc import Daemon

    daemon = Daemon().start()
    env = {**os.environ, "RESONATE_SOCKET": daemon.socket}
    here = os.path.join(EXAMPLES, "human_in_the_loop_remote")
    worker = subprocess.Popen([sys.executable, os.path.join(here, "worker.py")], env=env,
                              stderr=subprocess.PIPE, text=True)
    client: subprocess.Popen[str] | None = None
    try:
        assert worker.stderr is not None and "ready" in worker.stderr.readline()
        client = subprocess.Popen([sys.executable, os.path.join(here, "client.py"), "expense-7", "120"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert client.stderr is not None
        assert "resonate promises resolve expense-7.1" in client.stderr.readline()
        with daemon.client() as c:  # the approval promise exists once the worker reached ctx.promise()
            deadline = time.monotonic() + TIMEOUT
            while c.get("/promises/expense-7.1").status_code != 200:
                assert time.monotonic() < deadline, "the workflow never asked for approval"
                time.sleep(0.02)  # a poll interval of a bounded wait
        answer = '{"approved": true, "reviewer": "ada"}'
        cli = subprocess.run([sys.executable, "-m", "resonate_cli", "promises", "resolve", "expense-7.1",
                              "--data", answer], env=env, capture_output=True, text=True, timeout=TIMEOUT)
        assert cli.returncode == 0, cli.stderr
        out, _ = client.communicate(timeout=TIMEOUT)
        assert client.returncode == 0
        assert out == "[client] expense expense-7 approved by ada\n"
    finally:
        if client is not None:
            if client.poll() is None:
                client.kill()
            client.communicate(timeout=30)  # reaps it and closes its pipes
        worker.terminate()
        worker.wait(timeout=30)
        if worker.stderr is not None:
            worker.stderr.close()
        daemon.stop()
        daemon.cleanup()
