"""History on real processes: a daemon, a worker subprocess, the CLI as a subprocess. A step in flight
shows as running on its worker; when done it shows when it started, how long it took and who ran it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from daemon_proc import Daemon

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "programs", "history_app.py")
CLI = [sys.executable, "-m", "resonate_cli"]


def env_for(daemon: Daemon) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESONATE_")}
    env.update(RESONATE_SOCKET=daemon.socket, NO_COLOR="1", COLUMNS="250")
    return env


def cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env_for(daemon), capture_output=True, text=True, timeout=60)


@pytest.fixture
def worker() -> Iterator[tuple[Daemon, subprocess.Popen[bytes]]]:
    d = Daemon().start()
    proc = subprocess.Popen([*CLI, "worker", APP], env=env_for(d), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not json.loads(cli(d, "status", "--json").stdout)["workers"].get("default"):
            assert time.monotonic() < deadline, "the worker never connected"
            time.sleep(0.05)  # a poll interval of a bounded wait on another process
        yield d, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # a step held forever by a test that failed: do not hang
            proc.kill()
            proc.wait()
        d.stop()
        d.cleanup()


def steps(daemon: Daemon, id: str) -> list[dict[str, Any]]:
    r = cli(daemon, "steps", id, "--json")
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout)["steps"])


def test_a_step_in_flight_shows_as_running_then_its_real_duration(
        worker: tuple[Daemon, subprocess.Popen[bytes]], short_dir: str) -> None:
    daemon, proc = worker
    gate = os.path.join(short_dir, "gate")
    r = cli(daemon, "invoke", "held", gate, "--id", "h-1", "--no-wait")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 20
    while True:  # the worker reports a step once it has run for a second
        found = {s["id"]: s for s in steps(daemon, "h-1")}
        if found.get("h-1.2", {}).get("note", "") and "running on" in found["h-1.2"]["note"]:
            break
        assert time.monotonic() < deadline, found
        time.sleep(0.1)  # a poll interval of a bounded wait on another process
    running = found["h-1.2"]
    assert running["state"] == "PENDING" and running["func"] == "wait_for" and running["started"]
    assert f"{socket.gethostname()}:{proc.pid}" in running["note"]
    tree = cli(daemon, "tree", "h-1")
    assert "wait_for" in tree.stdout and "running on" in tree.stdout
    held_ms = int(time.time() * 1000) - running["started"]
    open(gate, "w").close()
    assert json.loads(cli(daemon, "promises", "wait", "h-1", "--json", "--timeout", "30s").stdout)["result"] == [
        42, "released"]
    done = {s["id"]: s for s in steps(daemon, "h-1")}
    step = done["h-1.2"]
    assert step["state"] == "RESOLVED" and step["note"] is None
    assert step["tookMs"] >= held_ms >= 1000  # the real duration, not the 0 ms between create and complete
    assert step["worker"] == f"{socket.gethostname()}:{proc.pid}" and step["args"].endswith("gate'")
    assert done["h-1.1"]["func"] == "double" and done["h-1.1"]["args"] == "21"
    assert done["h-1"]["worker"] == f"{socket.gethostname()}:{proc.pid}"
