"""Browser sessions of the UI: the token leaves the address bar at once and is never logged, a session ends
on logout, when idle and at its absolute age (a fake clock, no waiting), and ``--ui-port`` speaks https
with the daemon's certificate (``--tls-cert/--tls-key``), the cookie then Secure.

``Sessions`` and ``Guard`` are tested in this process; the rest on a real daemon (``resonate serve``).
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import httpx
import pytest
from daemon_proc import Daemon, free_port
from starlette.requests import Request
from tls_certs import Certs, make_certs

from resonate_ui.sessions import COOKIE, Guard, Sessions

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("RESONATE_")}


def serve(*args: str) -> Daemon:
    d = Daemon(*args, "--retention", "off", dir=tempfile.mkdtemp(dir="/tmp", prefix="rus-"))
    d.command = ["-m", "resonate_cli", "serve"]
    return d.start(timeout=60)


def read_token(d: Daemon) -> str:
    with open(d.db + ".token") as f:
        return f.read().strip()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html
    return found.group(1)


# -- sessions, on a fake clock ------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_session_ends_when_idle_and_at_its_absolute_age_however_busy() -> None:
    clock = Clock()
    sessions = Sessions(idle_s=60, absolute_s=300, clock=clock)
    idle, busy = sessions.open(), sessions.open()
    assert idle.id != busy.id and idle.csrf != busy.csrf  # each login its own id and its own CSRF token
    for _ in range(4):  # busy is used every 50 s: never idle
        clock.t += 50
        assert sessions.get(busy.id) is busy
    assert sessions.get(idle.id) is None  # 200 s without a request: gone, and forgotten
    assert len(sessions) == 1
    clock.t += 50
    assert sessions.get(busy.id) is busy  # 250 s old
    clock.t += 51
    assert sessions.get(busy.id) is None  # 301 s since its login: over, however busy
    assert sessions.get("") is None and sessions.get("made-up") is None


def test_logout_ends_one_session_and_the_oldest_give_way_past_the_limit() -> None:
    sessions = Sessions(limit=3, clock=Clock())
    a, b, c = sessions.open(), sessions.open(), sessions.open()
    sessions.close(b.id)
    assert sessions.get(b.id) is None and sessions.get(a.id) is a
    d, e = sessions.open(), sessions.open()  # a was used after c: c is the least recently used
    assert sessions.get(c.id) is None and all(sessions.get(s.id) is s for s in (a, d, e))


def request(cookie: str = "", authorization: str = "") -> Request:
    headers = [(b"cookie", f"{COOKIE}={cookie}".encode())] if cookie else []
    if authorization:
        headers.append((b"authorization", authorization.encode()))
    return Request({"type": "http", "method": "GET", "path": "/ui/", "headers": headers, "query_string": b""})


def test_the_guard_knows_a_browser_by_its_session_and_a_script_by_the_token() -> None:
    clock = Clock()
    guard = Guard("sekrit", read_only=False, sessions=Sessions(idle_s=60, clock=clock))
    assert guard.login("wrong") is None and guard.login("") is None
    session = guard.login("sekrit")
    assert session is not None
    viewer = guard.viewer(request(cookie=session.id))
    assert viewer is not None and viewer.session == session.id and viewer.csrf == session.csrf
    assert guard.viewer(request()) is None and guard.viewer(request(cookie="forged")) is None
    script = guard.viewer(request(authorization="Bearer sekrit"))
    assert script is not None and script.session is None  # nothing to log out of
    assert guard.alive(viewer)
    guard.logout(viewer)
    assert not guard.alive(viewer) and guard.viewer(request(cookie=session.id)) is None
    again = guard.login("sekrit")
    assert again is not None
    clock.t += 61
    assert guard.viewer(request(cookie=again.id)) is None  # idle past the limit
    socket_guard = Guard(None, read_only=False)  # the Unix socket: the peer check let it in
    assert socket_guard.viewer(request()) is not None and socket_guard.login("anything") is None


# -- over HTTP --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def daemon() -> Iterator[tuple[Daemon, int]]:
    ui = free_port()
    d = serve("--ui-port", str(ui), "--log-level", "debug")
    yield d, ui
    d.stop()
    d.cleanup()


def login(c: httpx.Client, token: str) -> None:
    r = c.get("/ui/login", params={"token": token})
    assert r.status_code == 303 and r.headers["location"] == "/ui/"


def test_logout_ends_this_browsers_session_only(daemon: tuple[Daemon, int]) -> None:
    d, ui = daemon
    token = read_token(d)
    with httpx.Client(base_url=f"http://127.0.0.1:{ui}") as one, httpx.Client(base_url=f"http://127.0.0.1:{ui}") as two:
        login(one, token)
        login(two, token)
        page = one.get("/ui/").text
        assert 'data-action="logout"' in page
        assert one.post("/ui/logout", data={"csrf": ""}).status_code == 403  # a forged logout is refused too
        assert one.post("/ui/logout", data={"csrf": csrf_of(two.get("/ui/").text)}).status_code == 403
        old = one.cookies[COOKIE]
        r = one.post("/ui/logout", data={"csrf": csrf_of(page)})
        assert r.status_code == 303 and r.headers["location"] == "/ui/login?bye=1"
        assert 'Max-Age=0' in r.headers["set-cookie"] or "expires=" in r.headers["set-cookie"].lower()
        assert "Logged out" in one.get(r.headers["location"]).text
        with httpx.Client(base_url=f"http://127.0.0.1:{ui}", cookies={COOKIE: old}) as replay:
            gone = replay.get("/ui/")  # the old cookie, kept by someone: worthless now
            assert gone.status_code == 401 and "resonate ui" in gone.text
        assert two.get("/ui/").status_code == 200  # the other browser is still in
    with d.client() as c:  # the Unix socket has no session: nothing to log out of
        assert 'data-action="logout"' not in c.get("/ui/").text


def test_the_token_is_never_logged_and_never_answered_with_a_page(daemon: tuple[Daemon, int]) -> None:
    d, ui = daemon
    token = read_token(d)
    with httpx.Client(base_url=f"http://127.0.0.1:{ui}") as c:
        for given in (token, "wrong-token", ""):
            r = c.get("/ui/login", params={"token": given})
            assert r.status_code == 303 and "token" not in r.headers["location"]
            assert token not in r.text and token not in str(r.headers)
        assert token not in c.get("/ui/").text
    with d.client() as c:
        c.get("/ui/status")
    assert token not in d.stderr() and "/ui/login" not in d.stderr()  # even at --log-level debug


# -- TLS ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certs() -> Iterator[Certs]:
    directory = tempfile.mkdtemp(prefix="rutls-", dir="/tmp")
    try:
        yield make_certs(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_the_ui_port_speaks_https_with_the_daemons_certificate(certs: Certs) -> None:
    ui = free_port()
    d = serve("--ui-port", str(ui), "--tls-cert", certs.cert, "--tls-key", certs.key)  # no --http needed
    try:
        done = subprocess.run([sys.executable, "-m", "resonate_cli", "--socket", d.socket, "ui", "--no-open"],
                              env=CLEAN_ENV, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        url = done.stdout.strip()
        assert url.startswith(f"https://127.0.0.1:{ui}/ui/login?token=")
        assert f"ui https://127.0.0.1:{ui}/ui/" in d.stderr()
        trusted = ssl.create_default_context(cafile=certs.ca)
        with httpx.Client(verify=trusted) as c:
            r = c.get(url)
            assert r.status_code == 303
            cookie = r.headers["set-cookie"].lower()
            assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
            assert c.get(f"https://127.0.0.1:{ui}/ui/status").status_code == 200
        with httpx.Client(verify=ssl.create_default_context(cafile=certs.other_ca)) as c, \
                pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            c.get(f"https://127.0.0.1:{ui}/ui/")
        with httpx.Client() as c, pytest.raises(httpx.RemoteProtocolError):
            c.get(f"http://127.0.0.1:{ui}/ui/")  # plain http to an https port: no answer it understands
    finally:
        d.stop()
        d.cleanup()
