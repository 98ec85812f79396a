"""TCP listeners need the token (bearer, or basic with the token as password); the Unix socket does not."""

from __future__ import annotations

import base64
import os
import stat
import time
from collections.abc import Iterator

import httpx
import pytest
from daemon_proc import FAR, Daemon, Stream, free_port
from resonate_daemon.protocol import CompletePromise, CreatePromise, GetPromise


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    http, poll = free_port(), free_port()
    d = Daemon("--http", f"127.0.0.1:{http}", "--poll-port", str(poll)).start()
    d.http_port, d.poll_port = http, poll  # type: ignore[attr-defined]
    yield d
    d.stop()
    d.cleanup()


@pytest.fixture
def token(daemon: Daemon) -> str:
    with open(f"{daemon.db}.token") as f:
        return f.read().strip()


def tcp(daemon: Daemon) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{daemon.http_port}", timeout=10)  # type: ignore[attr-defined]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_generated_token_file_is_private(daemon: Daemon, token: str) -> None:
    assert len(token) >= 32
    assert stat.S_IMODE(os.stat(f"{daemon.db}.token").st_mode) == 0o600
    assert token not in daemon.stderr()  # never logged


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Bearer  x", "Basic !!!", "Token abc", "bearer"])
def test_missing_or_wrong_token_is_401(daemon: Daemon, header: str | None) -> None:
    headers = {"authorization": header} if header is not None else {}
    with tcp(daemon) as c:
        r = c.get("/ping", headers=headers)
    assert r.status_code == 401 and r.json()["error"]["code"] == 40100


def test_wrong_basic_password_is_401(daemon: Daemon) -> None:
    with tcp(daemon) as c:
        assert c.get("/ping", auth=("user", "nope")).status_code == 401


def test_bearer_and_basic_are_accepted(daemon: Daemon, token: str) -> None:
    with tcp(daemon) as c:
        assert c.get("/ping", headers={"authorization": f"Bearer {token}"}).json() == {"status": "ok"}
        assert c.get("/ping", auth=("anyone", token)).json() == {"status": "ok"}
        r = c.post("/promises", json={"id": "over-tcp", "timeout": FAR}, auth=("", token))
        assert r.status_code == 201


def test_unix_socket_needs_no_token(daemon: Daemon) -> None:
    with daemon.client() as c:
        assert c.get("/ping").status_code == 200


def test_legacy_poll_port(daemon: Daemon, token: str) -> None:
    port = daemon.poll_port  # type: ignore[attr-defined]
    for headers in ({}, {"authorization": basic("u", "bad")}):
        refused = Stream.tcp(port, "/legacy/w1", headers)
        refused.close()
        assert refused.status == 401
    w = Stream.tcp(port, "/legacy/w1", {"authorization": basic("u", token)})
    assert w.status == 200
    with tcp(daemon) as c:
        c.post("/promises", json={"id": "legacy-job", "timeout": FAR,
                                  "tags": {"resonate:invoke": "poll://any@legacy"}}, auth=("u", token))
        task = w.next()["task"]
        assert task["id"] == "__invoke:legacy-job"
        r = c.post("/tasks/claim", json={"id": task["id"], "counter": 1, "processId": "w1", "ttl": 60_000},
                   auth=("u", token))
        assert r.status_code == 201
        w.close()
        # Official 0.6.x workers keep running across a stream reconnect: the lease, not the
        # disconnect, decides. Wait (bounded) until the daemon saw the close, then check the task.
        deadline = time.monotonic() + 10
        while "legacy" in c.get("/v1/status", auth=("u", token)).json()["workers"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        tasks = c.get("/v1/tasks", auth=("u", token)).json()["tasks"]
        held = next(t for t in tasks if t["id"] == task["id"])
        assert held["state"] == "CLAIMED" and held["counter"] == 1 and held["processId"] == "w1"


def test_poll_port_serves_only_streams(daemon: Daemon, token: str) -> None:
    port = daemon.poll_port  # type: ignore[attr-defined]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, auth=("u", token)) as c:
        assert c.post("/promises", json={"id": "x", "timeout": FAR}).status_code in (404, 405)
        assert c.get("/a/b/c").status_code == 404


def test_explicit_token() -> None:
    port = free_port()
    d = Daemon("--http", f"127.0.0.1:{port}", "--token", "s3cret-token").start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            assert c.get("/ping", headers={"authorization": "Bearer s3cret-token"}).status_code == 200
            assert c.get("/ping", headers={"authorization": "Bearer other"}).status_code == 401
        assert not os.path.exists(f"{d.db}.token")
    finally:
        d.stop()
        d.cleanup()


def test_our_sdk_over_tcp_with_the_token(daemon: Daemon, token: str) -> None:
    from resonate_daemon import errors

    from resonate.remote import RemoteTransport

    url = f"http://127.0.0.1:{daemon.http_port}"  # type: ignore[attr-defined]
    good = RemoteTransport(url=url, token=token, retry_for=5)
    try:
        created = good.call(CreatePromise("sdk-over-tcp", FAR))
        assert created.status == 201 and good.call(GetPromise("sdk-over-tcp")).state == "PENDING"
        assert good.call(CompletePromise("sdk-over-tcp", "RESOLVED")).promise.state == "RESOLVED"
    finally:
        good.close()
    bad = RemoteTransport(url=url, token="not-the-token", retry_for=5)
    try:
        started = time.monotonic()
        with pytest.raises(errors.ResonateError) as info:
            bad.call(GetPromise("sdk-over-tcp"))
        assert info.value.status == 401 and time.monotonic() - started < 2  # a 4xx is not retried
    finally:
        bad.close()


def test_our_sdk_says_so_when_the_url_is_not_a_daemon() -> None:
    import http.server
    import threading

    from resonate.errors import Unreachable
    from resonate.remote import RemoteTransport

    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>a web page</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Html)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    transport = RemoteTransport(url=f"http://127.0.0.1:{server.server_address[1]}", retry_for=1)
    try:
        with pytest.raises(Unreachable, match="not JSON.*resonate daemon"):
            transport.call(GetPromise("p"))
    finally:
        transport.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_port_alone_listens_on_this_machine_only() -> None:
    from resonate_daemon.server.config import parse_hostport

    assert parse_hostport("8123") == ("127.0.0.1", 8123) and parse_hostport(":8123") == ("127.0.0.1", 8123)
    assert parse_hostport("0.0.0.0:8123") == ("0.0.0.0", 8123) and parse_hostport("[::1]:80") == ("::1", 80)
    port = free_port()
    d = Daemon("--http", str(port)).start()
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=d.socket), base_url="http://d") as c:
            assert c.get("/v1/status").json()["http"] == f"127.0.0.1:{port}"
    finally:
        d.stop()
        d.cleanup()


def test_a_token_file_instead_of_a_token_on_the_command_line(short_dir: str) -> None:
    """The daemon and the CLI read the token from a private file; a readable-by-others file is refused;
    a token typed on the command line works but is warned about (it shows in ps)."""
    import subprocess
    import sys

    path = os.path.join(short_dir, "token")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write("s3cret-token-of-forty-characters-or-so-x\n")
    port = free_port()
    d = Daemon("--http", f"127.0.0.1:{port}", "--token-file", path).start()
    cli = [sys.executable, "-m", "resonate_cli", "--url", f"http://127.0.0.1:{port}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESONATE_")}
    try:
        ok = subprocess.run([*cli, "--token-file", path, "status", "--json"], env=env, capture_output=True,
                            text=True, timeout=60)
        assert ok.returncode == 0, ok.stderr
        assert subprocess.run([*cli, "status"], env={**env, "RESONATE_TOKEN_FILE": path}, capture_output=True,
                              timeout=60).returncode == 0
        typed = subprocess.run([*cli, "--token", "s3cret-token-of-forty-characters-or-so-x", "status"], env=env,
                               capture_output=True, text=True, timeout=60)
        assert typed.returncode == 0 and "shows in `ps`" in typed.stderr
        wrong = subprocess.run([*cli, "--token", "nope", "status"], env=env, capture_output=True, text=True,
                               timeout=60)
        assert wrong.returncode != 0
        os.chmod(path, 0o644)
        loose = subprocess.run([*cli, "--token-file", path, "status"], env=env, capture_output=True, text=True,
                               timeout=60)
        assert loose.returncode == 2 and "can be read by others" in loose.stderr
        refused = subprocess.run([sys.executable, "-m", "resonate_daemon", "--socket", os.path.join(short_dir, "x.s"),
                                  "--db", os.path.join(short_dir, "x.db"), "--http", "0", "--token-file", path],
                                 env=env, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "can be read by others" in refused.stderr
    finally:
        d.stop()
        d.cleanup()
