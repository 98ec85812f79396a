"""Durability: a promise the daemon acknowledged (201) survives a SIGKILL of the daemon, every time.

``synchronous=FULL`` (the default ``--durability full``) makes the commit durable before the answer is
sent. A SIGKILL cannot lose a commit even with ``--durability normal`` (the OS still holds the WAL
pages); only power loss or an OS crash can, which a test cannot stage, so README says what that mode risks.

The loop runs 200 kill/restart rounds on one database and socket. A restart is made cheap by a zygote
(tests/programs/warm_daemon.py) that imports the daemon once and forks each daemon process: a restart
then costs a fork, opening the store and binding the socket, not a Python start-up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from daemon_proc import FAR, Daemon

WARM = os.path.join(os.path.dirname(__file__), "programs", "warm_daemon.py")
ROUNDS = 200


class WarmDaemon:
    """Daemons on one db and socket, forked by a zygote that imported the daemon once."""

    def __init__(self, base: Daemon) -> None:
        self.base = base
        self.log = open(base.log, "ab")
        self.zygote = subprocess.Popen([sys.executable, WARM, "--socket", base.socket, "--db", base.db],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        assert self._line() == "warm"
        self.pid: int | None = None

    def _line(self) -> str:
        assert self.zygote.stdout is not None
        return self.zygote.stdout.readline().decode().strip()

    def start(self, timeout: float = 10.0) -> None:
        """Fork a daemon and wait until its socket accepts connections."""
        assert self.zygote.stdin is not None and self.pid is None
        self.zygote.stdin.write(b"go\n")
        self.zygote.stdin.flush()
        self.pid = int(self._line())
        deadline = time.monotonic() + timeout
        while not self._accepting():
            assert time.monotonic() < deadline, f"daemon not accepting after {timeout}s: {self.base.stderr()}"
            time.sleep(0.002)  # polling interval of a bounded wait

    def _accepting(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(self.base.socket)
            except OSError:
                return False
        return True

    def kill(self) -> None:
        """SIGKILL the daemon and wait until the zygote reaped it (its database lock is gone then)."""
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        assert self._line() == f"exited {-signal.SIGKILL}"
        self.pid = None

    def close(self) -> None:
        if self.pid is not None:
            self.kill()
        for pipe in (self.zygote.stdin, self.zygote.stdout):
            if pipe is not None:
                pipe.close()
        self.zygote.wait(timeout=10)
        self.log.close()


@pytest.fixture
def warm() -> Iterator[WarmDaemon]:
    base = Daemon()
    w = WarmDaemon(base)
    try:
        yield w
    finally:
        w.close()
        base.cleanup()


def test_acknowledged_promises_survive_200_sigkills(warm: WarmDaemon) -> None:
    started = time.monotonic()
    warm.start()
    acked: list[str] = []
    for i in range(ROUNDS):
        with warm.base.client() as c:
            r = c.post("/promises", json={"id": f"durable-{i}", "timeout": FAR, "param": {"data": "aGk="}})
            assert r.status_code == 201, r.text
            acked.append(f"durable-{i}")
        warm.kill()  # at once after the 201: nothing else happens between the answer and the kill
        warm.start()
        with warm.base.client() as c:
            got = c.get(f"/promises/durable-{i}")
            assert got.status_code == 200, f"round {i}: promise lost after SIGKILL: {got.text}"
            assert got.json()["param"]["data"] == "aGk="
    with warm.base.client() as c:
        stored = {p["id"] for p in _all(c, "durable-*")}
    assert stored == set(acked)
    elapsed = time.monotonic() - started
    print(f"\n{ROUNDS} create/SIGKILL/restart rounds in {elapsed:.1f}s, none lost")


def _all(c: httpx.Client, glob: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    cursor = None
    while True:
        params = {"id": glob, "limit": 1000, **({"cursor": cursor} if cursor else {})}
        body = c.get("/promises", params=params).json()
        out.extend(body["promises"])
        cursor = body.get("cursor")
        if not cursor:
            return out


def test_normal_durability_also_survives_sigkill() -> None:
    """``--durability normal`` drops the fsync per commit; a process kill still loses nothing."""
    d = Daemon("--durability", "normal").start()
    try:
        for i in range(10):
            with d.client() as c:
                assert c.post("/promises", json={"id": f"n-{i}", "timeout": FAR}).status_code == 201
            d.signal(signal.SIGKILL)
            d.start()
        with d.client() as c:
            assert {p["id"] for p in _all(c, "n-*")} == {f"n-{i}" for i in range(10)}
    finally:
        d.stop()
        d.cleanup()
