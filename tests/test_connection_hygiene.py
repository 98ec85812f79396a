"""Connection hygiene and the socket's ownership, on a real daemon process.

- A slowloris flood on TCP at ``nofile=1024`` (more half-sent connections than descriptors) leaves the
  Unix socket answering, keeps the log small, and each held connection is closed after
  ``--request-timeout``; a complete request (a push stream) is never cut by it.
- The daemon refuses a socket directory that is a symlink, is writable by others, or belongs to another
  user; the SDK and the CLI refuse a socket another user listens on before sending a byte; the daemon
  refuses a Unix client running as another user even when the socket's mode would let it in.

The other-user cases drop a child process to ``nobody`` (65534) and need root; they skip otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
from daemon_proc import Daemon, Stream, free_port, raw_ping, slowloris
from resonate_daemon.server.guard import Budget, quiet_exception_handler
from typer.testing import CliRunner

import resonate
from resonate_cli import exits
from resonate_cli.main import app

NOBODY = 65534
TOKEN = "tok-" + "a1" * 20
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user (setuid) needs root")


def limit_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


@pytest.fixture
def flooded_daemon() -> Iterator[Daemon]:
    port = free_port()
    d = Daemon("--http", f"127.0.0.1:{port}", "--token", TOKEN, "--request-timeout", "2")
    d.preexec_fn = limit_nofile  # soft and hard: the daemon cannot raise it, as on a stingy host
    d.port = port  # type: ignore[attr-defined]
    d.start()
    yield d
    d.cleanup()


def unix_ping(path: str, timeout: float = 5.0) -> int:
    return raw_ping(path, timeout)[0]


def daemon_fds(d: Daemon) -> int:
    assert d.proc is not None
    return len(os.listdir(f"/proc/{d.proc.pid}/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts the daemon's descriptors in /proc")
def test_a_slowloris_flood_on_tcp_leaves_the_unix_socket_answering(flooded_daemon: Daemon) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1500:
        pytest.skip(f"this test opens 1,200 sockets; the hard open-files limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1500), hard))
    port = flooded_daemon.port  # type: ignore[attr-defined]
    baseline = daemon_fds(flooded_daemon)
    flood: list[socket.socket] = []
    try:
        flood = slowloris(port, 1200)  # more connections than the daemon has descriptors; requests never end
        answers = [unix_ping(flooded_daemon.socket) for _ in range(20)]
        assert answers == [200] * 20
        deadline = time.monotonic() + 10  # the daemon may still be accepting the flood: a bounded wait
        while (held := daemon_fds(flooded_daemon)) <= 300 and time.monotonic() < deadline:
            assert unix_ping(flooded_daemon.socket) == 200
        assert held > 300, f"the flood did not take hold ({held} descriptors)"
        # Each half-sent connection is closed after --request-timeout (2 s): the descriptors come back.
        # (Connections the kernel never handed over, past the listen backlog, are not the daemon's.)
        deadline = time.monotonic() + 30
        while daemon_fds(flooded_daemon) > baseline + 8 and time.monotonic() < deadline:
            unix_ping(flooded_daemon.socket)  # also a bounded wait: one round trip per poll
        assert daemon_fds(flooded_daemon) <= baseline + 8, "half-sent connections still held"
    finally:
        for s in flood:
            s.close()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # TCP serves again
        s.sendall(f"GET /ping HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {TOKEN}\r\n"
                  "Connection: close\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
    assert os.path.getsize(flooded_daemon.log) < 1_000_000, "the flood filled the log"


def test_a_complete_request_is_never_cut_by_the_request_timeout() -> None:
    port = free_port()
    d = Daemon("--http", f"127.0.0.1:{port}", "--token", TOKEN, "--request-timeout", "1",
               "--ping-interval", "1.5").start()
    try:
        stream = Stream.tcp(port, "/poll/g/p1", {"Authorization": f"Bearer {TOKEN}"})
        assert stream.status == 200
        stream.sock.settimeout(10)
        for _ in range(3):  # 4.5 s of pings: three times the request timeout, and still open
            assert stream.next_comment().startswith(b":")
        stream.close()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
            assert idle.recv(1) == b""  # a connection that never sends a request: closed after 1 s
    finally:
        d.stop()
        d.cleanup()


def test_the_budget_keeps_room_for_the_unix_socket() -> None:
    budget = Budget(1024)
    tcp = sum(budget.admit(tcp=True) for _ in range(2000))
    assert tcp == budget.tcp_cap == 576 and budget.refused == 2000 - 576
    unix = sum(budget.admit(tcp=False) for _ in range(2000))
    assert unix == budget.unix_cap - 576 and budget.open == budget.unix_cap == 960
    budget.release(tcp=True)  # one TCP connection closes: its room goes to the next, and no further
    assert budget.admit(tcp=True) and budget.tcp == budget.tcp_cap and not budget.admit(tcp=True)


def test_a_repeated_loop_error_is_said_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    handler = quiet_exception_handler(interval=10.0, clock=lambda: now[0])
    loop = asyncio.new_event_loop()
    try:
        context = {"message": "socket.accept() out of system resource", "exception": OSError(24, "Too many")}
        with caplog.at_level("ERROR"):
            for _ in range(1000):
                handler(loop, context)
            now[0] = 11.0
            handler(loop, context)
    finally:
        loop.close()
    lines = [r for r in caplog.records if "out of system resource" in r.getMessage()]
    assert len(lines) == 2  # the first in full, then one line with the count
    assert "1000 more time(s)" in lines[1].getMessage()


# -- the socket is the user's ----------------------------------------------------------------------

def start_fails(socket_path: str) -> str:
    d = Daemon(dir=tempfile.mkdtemp(dir="/tmp", prefix="rd-"))
    d.socket = socket_path
    proc = d.spawn()
    try:
        assert proc.wait(timeout=20) == 3
        return d.stderr()
    finally:
        d.cleanup()


def test_a_socket_directory_others_can_write_or_a_symlink_is_refused() -> None:
    base = tempfile.mkdtemp(dir="/tmp", prefix="rs-")
    shared = os.path.join(base, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o777)
    err = start_fails(os.path.join(shared, "d.sock"))
    assert "can be written by other users" in err and "Traceback" not in err
    private = os.path.join(base, "private")
    os.mkdir(private, 0o700)
    link = os.path.join(base, "link")
    os.symlink(private, link)
    err = start_fails(os.path.join(link, "d.sock"))
    assert "symbolic link" in err and "Traceback" not in err


def as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def nobody_dir() -> str:
    base = tempfile.mkdtemp(dir="/tmp", prefix="rs-")
    os.chmod(base, 0o711)  # nobody may pass through, not list or write
    theirs = os.path.join(base, "theirs")
    os.mkdir(theirs, 0o755)
    os.chown(theirs, NOBODY, NOBODY)
    return theirs


@root_only
def test_a_socket_directory_another_user_owns_is_refused() -> None:
    err = start_fails(os.path.join(nobody_dir(), "d.sock"))
    assert "belongs to uid 65534" in err and "Traceback" not in err


class Impostor:
    """A process running as nobody that listens on a socket and counts the bytes anyone sends it.

    Forked, not exec'd: nobody may not run the interpreter under /root."""

    def __init__(self, path: str) -> None:
        self.path = path
        ready_r, ready_w = os.pipe()
        self.report_r, report_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                as_nobody()
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(path)
                s.listen(16)
                os.write(ready_w, b"r")
                while True:
                    c, _ = s.accept()
                    c.settimeout(2.0)
                    try:
                        data = c.recv(65536)
                    except OSError:
                        data = b""
                    os.write(report_w, b"%d\n" % len(data))
                    c.close()
            finally:
                os._exit(0)
        os.close(ready_w)
        os.close(report_w)
        assert os.read(ready_r, 1) == b"r"
        os.close(ready_r)

    def stop(self) -> list[int]:
        """Stop it; the byte counts of each connection it accepted."""
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        with os.fdopen(self.report_r, "rb") as f:
            return [int(n) for n in f.read().split()]


@root_only
def test_the_sdk_and_the_cli_send_nothing_to_another_users_socket() -> None:
    impostor = Impostor(os.path.join(nobody_dir(), "d.sock"))
    try:
        client = resonate.Resonate.remote(socket=impostor.path)
        try:
            with pytest.raises(resonate.errors.UntrustedDaemon, match="runs as uid 65534"):
                client.promises.get("anything")
        finally:
            client.stop()
        r = CliRunner().invoke(app, ["--socket", impostor.path, "promises", "get", "x"])
        assert r.exit_code == exits.UNREACHABLE, r.output
        assert "runs as uid 65534" in r.stderr and "Traceback" not in r.stderr
    finally:
        counts = impostor.stop()
    assert counts and set(counts) == {0}  # it was reached, and got nothing


@root_only
def test_the_daemon_refuses_a_unix_client_of_another_user(tmp_path: Any) -> None:
    base = tempfile.mkdtemp(dir="/tmp", prefix="rs-")
    d = Daemon(dir=base)
    d.start()
    try:
        os.chmod(base, 0o711)
        os.chmod(os.path.dirname(d.socket), 0o711)
        os.chmod(d.socket, 0o666)  # a mistake: the mode would let anyone in; the peer check does not
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                as_nobody()
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(5)
                    s.connect(d.socket)
                    s.sendall(b"GET /v1/promises?id=* HTTP/1.1\r\nHost: r\r\n\r\n")
                    answer = b""
                    while chunk := s.recv(65536):
                        answer += chunk
                os.write(write_end, answer)
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as f:
            answer = f.read()
        os.waitpid(pid, 0)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 403"), answer[:200]
        assert json.loads(body)["error"]["code"] == 40311
        assert unix_ping(d.socket) == 200  # its own user still gets in
        assert "refused a connection on the Unix socket from uid 65534" in d.stderr()
    finally:
        d.stop()
        d.cleanup()
