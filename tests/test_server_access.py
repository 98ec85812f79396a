"""Access: only the daemon's own user reaches the Unix socket; TCP listeners need the token, compared in
constant time, and the token never shows in the daemon's log or in an error.

The other-user test forks a child that drops to ``nobody`` (65534) with setgid/setuid before it connects;
it needs root, and skips with the reason otherwise.
"""

from __future__ import annotations

import errno
import inspect
import os
import re
import socket
import stat
from collections.abc import Iterator

import httpx
import pytest
from daemon_proc import Daemon, Stream, free_port
from resonate_daemon.server import api

NOBODY = 65534
TOKEN = "tok-" + "7f3a9c" * 8  # distinctive text to look for in logs and answers

@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    http, poll = free_port(), free_port()
    d = Daemon("--http", f"127.0.0.1:{http}", "--poll-port", str(poll), "--token", TOKEN,
               "--log-level", "debug").start()
    d.http_port, d.poll_port = http, poll  # type: ignore[attr-defined]
    yield d
    d.stop()
    d.cleanup()


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def as_nobody(path: str) -> int:
    """Fork; the child drops to nobody (groups, gid, then uid) and connects. Returns its errno, 0 if it got in."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: plain system calls only, then _exit (no pytest teardown in here)
        code = 255
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                try:
                    s.connect(path)
                    code = 0
                except OSError as exc:
                    code = exc.errno or 254
        finally:
            os.write(write_end, str(code).encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        out = f.read()
    os.waitpid(pid, 0)
    return int(out)


def test_socket_0600_in_a_0700_directory_owned_by_us(daemon: Daemon) -> None:
    st = os.stat(daemon.socket)
    assert stat.S_ISSOCK(st.st_mode) and mode(daemon.socket) == 0o600 and st.st_uid == os.getuid()
    assert mode(os.path.dirname(daemon.socket)) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user (setuid) needs root")
def test_another_user_cannot_connect(daemon: Daemon) -> None:
    assert as_nobody(daemon.socket) == errno.EACCES  # the 0700 directory stops it
    directory = os.path.dirname(daemon.socket)
    os.chmod(directory, 0o711)  # open the directory: the socket's own 0600 must still refuse
    try:
        assert as_nobody(daemon.socket) == errno.EACCES
    finally:
        os.chmod(directory, 0o700)
    with daemon.client() as c:  # and the owner still gets in
        assert c.get("/ping").status_code == 200


WRONG = [None, "Bearer", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Bearer {TOKEN.upper()}",
         f"Token {TOKEN}", TOKEN, "Basic " + "dTo=", "Basic %%%"]


@pytest.mark.parametrize("header", WRONG)
def test_tcp_listener_refuses_missing_or_wrong_token(daemon: Daemon, header: str | None) -> None:
    headers = {"authorization": header} if header is not None else {}
    port = daemon.http_port  # type: ignore[attr-defined]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        for method, path in (("GET", "/ping"), ("POST", "/promises"), ("GET", "/v1/status")):
            r = c.request(method, path, headers=headers, json={"id": "x", "timeout": 1})
            assert r.status_code == 401 and r.json()["error"]["code"] == 40100, r.text
            assert TOKEN not in r.text and TOKEN not in str(r.headers)


@pytest.mark.parametrize("header", WRONG)
def test_legacy_poll_port_refuses_missing_or_wrong_token(daemon: Daemon, header: str | None) -> None:
    stream = Stream.tcp(daemon.poll_port, "/g/p", {"authorization": header} if header is not None else {})  # type: ignore[attr-defined]
    try:
        assert stream.status == 401
        assert TOKEN.encode() not in stream.buf
    finally:
        stream.close()


def test_right_token_is_accepted_on_both(daemon: Daemon) -> None:
    port = daemon.http_port  # type: ignore[attr-defined]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        assert c.get("/ping", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    stream = Stream.tcp(daemon.poll_port, "/g/p", {"authorization": f"Bearer {TOKEN}"})  # type: ignore[attr-defined]
    stream.close()
    assert stream.status == 200


def test_token_is_compared_in_constant_time() -> None:
    # The check lives in token_ok, which TokenAuth (and the browser UI's guard) call.
    assert "token_ok(scope, self.token)" in inspect.getsource(api.TokenAuth)
    source = inspect.getsource(api.TokenAuth) + inspect.getsource(api.token_ok)
    assert "hmac.compare_digest(given, token)" in source
    # No other comparison touches the token: a plain == would return early on the first differing byte.
    assert not re.search(r"(==|!=)\s*(self\.)?token\b|\btoken\s*(==|!=)", source)


def test_token_never_in_the_log(daemon: Daemon) -> None:
    """Startup, refused requests and accepted ones at log level debug: the token text never shows."""
    port = daemon.http_port  # type: ignore[attr-defined]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        c.get("/ping", headers={"authorization": f"Bearer {TOKEN}x"})
        c.get("/ping", headers={"authorization": f"Bearer {TOKEN}"})
        c.get("/nope", headers={"authorization": f"Bearer {TOKEN}"})
    log = daemon.stderr()
    assert "listening on" in log
    assert TOKEN not in log and TOKEN[4:20] not in log


def test_generated_token_never_in_the_log() -> None:
    port = free_port()
    d = Daemon("--http", f"127.0.0.1:{port}", "--log-level", "debug").start()
    try:
        with open(f"{d.db}.token") as f:
            token = f.read().strip()
        assert mode(f"{d.db}.token") == 0o600
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            assert c.get("/ping", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert token not in d.stderr()
    finally:
        d.stop()
        d.cleanup()

