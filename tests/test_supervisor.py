"""``serve --app APP --workers N [--reload]``: the daemon starts, restarts and reloads real worker processes.

Worker process ids come from the supervisor's stderr lines ("worker 0 started (pid 123, ..."), the
connected workers from ``GET /v1/status``. Every wait is bounded polling on a condition.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import resonate_daemon
from daemon_proc import Daemon
from resonate_daemon.errors import InvalidRequest
from resonate_daemon.server.config import ServeConfig
from resonate_daemon.server.supervisor import watch_paths

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "programs", "supervised_app.py")
GROUP = "sup"
STARTED = re.compile(r"worker (\d+) started \(pid (\d+)")


def wait_for(cond: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)  # a poll interval, bounded by the deadline, not a synchronisation guess
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead: its parent just has not reaped it yet
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


class Served(Daemon):
    """A daemon with supervised workers; knows their pids from its log and who is connected."""

    cli = False  # True: `python -m resonate_cli serve ...` instead of `python -m resonate_daemon ...`

    def spawn(self) -> subprocess.Popen[bytes]:
        if not self.cli:
            return super().spawn()
        cmd = [sys.executable, "-m", "resonate_cli", "serve", "--socket", self.socket, "--db", self.db, *self.args]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        return self.proc

    def started(self) -> dict[int, list[int]]:
        """Slot -> every pid it has had, oldest first."""
        slots: dict[int, list[int]] = {}
        for slot, pid in STARTED.findall(self.stderr()):
            slots.setdefault(int(slot), []).append(int(pid))
        return slots

    def current(self) -> dict[int, int]:
        return {slot: pids[-1] for slot, pids in self.started().items()}

    def connected(self) -> list[str]:
        with self.client() as c:
            return list(c.get("/v1/status").json()["workers"].get(GROUP, []))

    def wait_workers(self, n: int, *, not_in: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Wait until exactly n workers are connected and none of them is in ``not_in``."""
        def ok() -> list[str] | None:
            now = self.connected()
            return now if len(now) == n and not set(now) & not_in else None
        return list(wait_for(ok, f"{n} new workers connected; log:\n{self.stderr()}"))


@pytest.fixture
def served() -> Iterator[Callable[..., Served]]:
    made: list[Served] = []

    def make(*args: str, app: str = APP, cli: bool = False) -> Served:
        # the CLI's serve has no --group flag: RESONATE_GROUP reaches ServeConfig.resolve either way
        d = Served("--app", app, *args) if cli else Served("--app", app, "--group", GROUP, *args)
        d.cli = cli
        made.append(d)
        return d.start()

    yield make
    for d in made:
        pids = [p for ps in d.started().values() for p in ps]
        try:
            d.stop()
            assert d.proc is not None and d.proc.returncode == 0, d.stderr()
            # shutdown stops every worker it started, before the daemon exits
            assert not [p for p in pids if alive(p)], d.stderr()
        finally:
            for p in pids:
                if alive(p):
                    os.kill(p, signal.SIGKILL)
            d.cleanup()


def test_workers_start_and_a_killed_one_is_restarted(served: Callable[..., Served],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESONATE_GROUP", GROUP)
    d = served("--workers", "2", cli=True)  # through `resonate serve`, the command users run
    first = set(d.wait_workers(2))
    slots = d.current()
    assert sorted(slots) == [0, 1] and len(set(slots.values())) == 2

    victim = slots[1]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(d.started().get(1, [])) == 2, "slot 1 restarted")

    def replaced() -> bool:
        now = set(d.connected())
        return len(now) == 2 and len(now - first) == 1  # the dead one dropped, its replacement joined
    wait_for(replaced, f"the replacement connected; log:\n{d.stderr()}")
    assert d.current()[0] == slots[0]  # the healthy worker was left alone
    assert d.current()[1] != victim
    assert not alive(victim)
    log = d.stderr()
    assert f"worker 1 (pid {victim}) exited with SIGKILL" in log
    assert "restart #1: worker 1" in log


def test_reload_restarts_every_worker_when_the_app_changes(served: Callable[..., Served]) -> None:
    work = os.path.join(Daemon().dir, "app")  # a copy, so the test edits its own file
    os.makedirs(work)
    app = os.path.join(work, "myapp.py")
    shutil.copy(APP, app)
    try:
        d = served("--workers", "2", "--reload", app=app)
        before = set(d.wait_workers(2))
        old = set(d.current().values())
        assert "for changes" in d.stderr()

        def edited_and_reloaded() -> bool:
            # rewrite (not just touch) until the supervisor reacts: the watch may still be arming
            with open(app, "a") as f:
                f.write("# edited\n")
            return wait_until(lambda: "restarting 2 worker(s)" in d.stderr(), 1.0)

        wait_for(edited_and_reloaded, "a reload after editing the app")
        wait_for(lambda: not set(d.current().values()) & old, "both slots restarted")
        d.wait_workers(2, not_in=before)
        assert not [p for p in old if alive(p)]
        assert "changed: " in d.stderr() and "myapp.py" in d.stderr()
    finally:
        shutil.rmtree(os.path.dirname(work), ignore_errors=True)


def wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    try:
        wait_for(cond, "", timeout)
        return True
    except AssertionError:
        return False


def test_config_needs_app_for_workers_and_finds_a_module_s_package() -> None:
    with pytest.raises(InvalidRequest):
        ServeConfig.resolve(socket="/tmp/x.sock", db="/tmp/x.db", workers=2, env={})
    config = ServeConfig.resolve(socket="/tmp/x.sock", db="/tmp/x.db", app="pkg.mod", env={"RESONATE_WORKERS": "3"})
    assert (config.app, config.workers, config.reload, config.group) == ("pkg.mod", 3, False, "default")
    assert watch_paths(APP) == [os.path.dirname(APP)]
    assert watch_paths("resonate_daemon.server.supervisor") == [os.path.dirname(resonate_daemon.__file__)]
