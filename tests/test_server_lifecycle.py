"""The daemon process: socket permissions, stale and live sockets, signals, crash durability, db lock."""

from __future__ import annotations

import os
import signal
import socket
import stat
from collections.abc import Iterator

import pytest
from daemon_proc import FAR, Daemon, Stream, b64


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    made: list[Daemon] = []
    yield made
    for d in made:
        d.cleanup()


def new(daemons: list[Daemon], *args: str, **kw: str) -> Daemon:
    d = Daemon(*args, **kw)
    daemons.append(d)
    return d


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_socket_is_0600_in_a_0700_dir(daemons: list[Daemon]) -> None:
    d = new(daemons).start()
    assert stat.S_ISSOCK(os.stat(d.socket).st_mode)
    assert mode(d.socket) == 0o600
    assert mode(os.path.dirname(d.socket)) == 0o700
    assert f"listening on unix:{d.socket}" in d.stderr()


def test_stale_socket_is_replaced(daemons: list[Daemon]) -> None:
    d = new(daemons)
    os.makedirs(os.path.dirname(d.socket), mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(d.socket)  # a socket file nobody listens on: what a SIGKILLed daemon leaves behind
    dead.close()
    d.start()
    with d.client() as c:
        assert c.get("/ping").status_code == 200


def test_live_socket_is_never_removed(daemons: list[Daemon]) -> None:
    first = new(daemons).start()
    second = new(daemons, dir=first.dir, db=os.path.join(first.dir, "other.db"))
    proc = second.spawn()
    assert proc.wait(timeout=10) == 3
    assert "another resonate daemon is listening" in second.stderr()
    with first.client() as c:
        assert c.get("/ping").status_code == 200


def test_non_socket_file_is_not_replaced(daemons: list[Daemon]) -> None:
    d = new(daemons)
    os.makedirs(os.path.dirname(d.socket))
    with open(d.socket, "w") as f:
        f.write("precious")
    assert d.spawn().wait(timeout=10) == 3
    assert "not a socket" in d.stderr()
    with open(d.socket) as f:
        assert f.read() == "precious"


def test_second_daemon_on_same_db_is_refused(daemons: list[Daemon]) -> None:
    first = new(daemons).start()
    second = new(daemons, db=first.db)
    assert second.spawn().wait(timeout=10) == 3
    assert "in use by another process" in second.stderr()
    assert not os.path.exists(second.socket)  # it bound nothing


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_and_exits_0(daemons: list[Daemon], sig: int) -> None:
    d = new(daemons).start()
    stream = Stream.unix(d.socket, "g", "w")  # an open push stream must not hold up the shutdown
    try:
        assert d.signal(sig) == 0
    finally:
        stream.close()
    assert not os.path.exists(d.socket)
    assert "Traceback" not in d.stderr()


def test_sigkill_then_restart_keeps_acknowledged_promises(daemons: list[Daemon]) -> None:
    d = new(daemons).start()
    with d.client() as c:
        for i in range(20):
            assert c.post("/promises", json={"id": f"p{i}", "timeout": FAR, "param": {"data": b64(str(i))}}).status_code == 201
        for i in range(0, 20, 2):
            assert c.patch(f"/promises/p{i}", json={"state": "RESOLVED", "value": {"data": b64("ok")}}).status_code == 201
        c.post("/promises", json={"id": "job", "timeout": FAR, "tags": {"resonate:invoke": "poll://any@g"}})
    assert d.signal(signal.SIGKILL) == -signal.SIGKILL
    assert os.path.exists(d.socket)  # left behind: the restart must probe and replace it

    again = new(daemons, dir=d.dir, db=d.db).start()
    with again.client() as c:
        for i in range(20):
            p = c.get(f"/promises/p{i}").json()
            assert p["param"]["data"] == b64(str(i))
            assert p["state"] == ("RESOLVED" if i % 2 == 0 else "PENDING")
        w = Stream.unix(again.socket, "g", "w")
        try:
            assert w.next()["task"]["rootPromiseId"] == "job"  # the unsent task survives too
        finally:
            w.close()


def test_bad_arguments_exit_2(daemons: list[Daemon]) -> None:
    d = new(daemons, "--http", "no-port-here")
    assert d.spawn().wait(timeout=10) == 2
    assert "HOST:PORT" in d.stderr()
