"""The browser UI over HTTP (``tests/test_ui_browser.py`` drives it in a real Chromium): who may see it
on each listener, the CSRF and cross-site checks on actions, read-only mode, the pages' content on a
store of finished workflows (100,000 promises among them), the live stream, and ``resonate ui``.

A real daemon process (``resonate serve``, which hands the UI to the daemon) on a real socket and real
TCP ports. Correctness only: the list page's speed is measured by ``bench/ui_list.py``, not asserted.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import httpx
import pytest
import ui_data
from daemon_proc import FAR, Daemon, Stream, b64, free_port

SERVE = ["-m", "resonate_cli", "serve"]


def start(*args: str, workflows: int = 0) -> Daemon:
    d = Daemon(*args, "--retention", "off", dir=tempfile.mkdtemp(dir="/tmp", prefix="rui-"))
    d.command = SERVE
    if workflows:
        ui_data.build(d.db, workflows)
    return d.start(timeout=60)


def read_token(d: Daemon) -> str:
    with open(d.db + ".token") as f:
        return f.read().strip()


@pytest.fixture(scope="module")
def daemon() -> Iterator[tuple[Daemon, int, int]]:
    http, ui = free_port(), free_port()
    d = start("--http", f"127.0.0.1:{http}", "--ui-port", str(ui), workflows=30)
    yield d, http, ui
    d.stop()
    d.cleanup()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html
    return found.group(1)


def human(c: httpx.Client, id: str) -> None:
    """A promise only a person completes (what ctx.promise() makes): pending, no invoke target, not a step."""
    r = c.post("/promises", json={"id": id, "timeout": FAR, "param": {"data": b64('{"question": "ok?"}')},
                                  "tags": {"resonate:root": "wf-000001"}})
    assert r.status_code == 201, r.text


# -- who may look -------------------------------------------------------------------------------------

def test_the_unix_socket_serves_the_ui_to_its_owner_without_a_token(daemon: tuple[Daemon, int, int]) -> None:
    d, _, _ = daemon
    with d.client() as c:
        for page in ("/ui/", "/ui/waiting", "/ui/workers", "/ui/schedules", "/ui/status"):
            r = c.get(page)
            assert r.status_code == 200 and "<nav>" in r.text, (page, r.status_code)
        assert "order" in c.get("/ui/workers").text or "No worker" in c.get("/ui/workers").text


def test_tcp_needs_the_token_once_then_a_strict_httponly_cookie(daemon: tuple[Daemon, int, int]) -> None:
    d, http, _ = daemon
    token = read_token(d)
    with httpx.Client(base_url=f"http://127.0.0.1:{http}") as c:
        assert c.get("/ui/").status_code == 401
        wrong = c.get("/ui/login", params={"token": "wrong"})  # even a wrong token leaves the address bar
        assert wrong.status_code == 303 and wrong.headers["location"] == "/ui/login?failed=1"
        assert c.get(wrong.headers["location"]).status_code == 401
        assert c.get("/v1/status").status_code == 401  # the API keeps its own check
        r = c.get("/ui/login", params={"token": token})
        assert r.status_code == 303 and r.headers["location"] == "/ui/"
        assert r.headers["referrer-policy"] == "no-referrer" and r.headers["cache-control"] == "no-store"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
        assert "secure" not in cookie  # plain http: a Secure cookie would never come back (tests/test_ui_sessions.py has TLS)
        assert token not in r.headers["set-cookie"]  # the browser keeps a session id, never the token
        assert c.get("/ui/").status_code == 200
        assert c.get("/v1/status").status_code == 401  # the cookie opens the UI, not the API
    with httpx.Client(base_url=f"http://127.0.0.1:{http}", headers={"authorization": f"Bearer {token}"}) as c:
        assert c.get("/ui/status").status_code == 200


def test_the_ui_port_serves_only_the_ui_on_loopback(daemon: tuple[Daemon, int, int]) -> None:
    d, _, ui = daemon
    with httpx.Client(base_url=f"http://127.0.0.1:{ui}") as c:
        r = c.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/ui/"
        assert c.get("/ui/").status_code == 401
        assert c.get("/ui/login", params={"token": read_token(d)}).status_code == 303
        assert c.get("/ui/").status_code == 200
        assert c.get("/v1/status").status_code == 404  # browsers only: the API is on the socket and --http
    with d.client() as c:
        assert c.get("/v1/status").json()["ui"] == f"http://127.0.0.1:{ui}/ui/"


# -- actions --------------------------------------------------------------------------------------------

def test_a_form_resolves_a_waiting_promise_with_validated_json(daemon: tuple[Daemon, int, int]) -> None:
    d, _, _ = daemon
    with d.client() as c:
        human(c, "ask-1")
        page = c.get("/ui/waiting").text
        assert 'data-id="ask-1"' in page and "question" in page
        form = {"csrf": csrf_of(page), "action": "resolve", "id": "ask-1", "back": "/ui/waiting?id=ask-1"}
        r = c.post("/ui/act", data={**form, "data": "{not json"})
        assert r.status_code == 422 and "location" not in r.headers  # the value goes in no address
        assert "not valid JSON" in r.text and "{not json" in r.text  # the error, and what was typed, kept
        assert csrf_of(r.text) == form["csrf"] and 'data-id="ask-1"' in r.text  # the form again, to fix it
        assert c.get("/promises/ask-1").json()["state"] == "PENDING"
        r = c.post("/ui/act", data={**form, "data": '{"approved": true}'})
        assert r.status_code == 303 and "msg=" in r.headers["location"]
        done = c.get("/promises/ask-1").json()
        assert done["state"] == "RESOLVED" and done["value"]["data"] == b64('{"approved": true}')
        assert 'data-id="ask-1"' not in c.get("/ui/waiting").text
        again = c.post("/ui/act", data={**form, "action": "reject", "data": ""})
        assert "error=" in again.headers["location"]  # already resolved: said, not a 500


def test_actions_refuse_cross_site_requests_and_missing_csrf_tokens(daemon: tuple[Daemon, int, int]) -> None:
    d, _, _ = daemon
    with d.client() as c:
        human(c, "ask-2")
        form = {"csrf": csrf_of(c.get("/ui/waiting").text), "action": "cancel", "id": "ask-2", "back": "/ui/"}
        assert c.post("/ui/act", data={**form, "csrf": ""}).status_code == 403
        assert c.post("/ui/act", data={**form, "csrf": "0" * 64}).status_code == 403
        assert c.post("/ui/act", data=form, headers={"sec-fetch-site": "cross-site"}).status_code == 403
        assert c.post("/ui/act", data=form, headers={"origin": "http://evil.example"}).status_code == 403
        assert c.get("/promises/ask-2").json()["state"] == "PENDING"
        r = c.post("/ui/act", data={**form, "back": "https://evil.example/"}, headers={"sec-fetch-site": "same-origin"})
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/?")  # never sent off-site
        assert c.get("/promises/ask-2").json()["state"] == "REJECTED_CANCELED"


def test_read_only_hides_the_forms_and_refuses_actions() -> None:
    d = start("--ui-read-only")
    try:
        with d.client() as c:
            human(c, "ask-3")
            page = c.get("/ui/waiting").text
            assert 'data-id="ask-3"' in page and "<textarea" not in page and "read-only" in page
            assert "resonate promises resolve ask-3 --data" in page  # where to answer it instead
            r = c.post("/ui/act", data={"csrf": csrf_of(c.get("/ui/").text) if 'name="csrf"' in c.get("/ui/").text
                                        else "", "action": "resolve", "id": "ask-3", "data": "1"})
            assert r.status_code == 403 and "read-only" in r.text
            assert c.get("/promises/ask-3").json()["state"] == "PENDING"
    finally:
        d.stop()
        d.cleanup()


# -- pages ----------------------------------------------------------------------------------------------

def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-id="([^"]+)"', html)


def test_the_list_filters_pages_and_searches(daemon: tuple[Daemon, int, int]) -> None:
    d, _, _ = daemon
    with d.client() as c:
        page = c.get("/ui/").text
        assert rows(page) == [f"wf-{i:06d}" for i in range(29, -1, -1)] and "30 in all" in page
        failed = rows(c.get("/ui/", params={"state": "rejected"}).text)
        assert failed == [f"wf-{i:06d}" for i in range(29, -1, -1) if i % 7 == 0]
        assert rows(c.get("/ui/", params={"func": "refund", "state": "rejected"}).text) == ["wf-000021", "wf-000007"]
        assert rows(c.get("/ui/", params={"q": "wf-00001"}).text) == [f"wf-{i:06d}" for i in range(19, 9, -1)]
        r = c.get("/ui/", params={"q": "wf-000003"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/workflow?id=wf-000003"
        assert "CardDeclined" not in c.get("/ui/", params={"since": "1h"}).text  # a span, here: nothing that recent
        assert rows(c.get("/ui/", params={"since": "1h"}).text) == []


def test_a_workflow_page_shows_its_tree_steps_arguments_and_result(daemon: tuple[Daemon, int, int]) -> None:
    d, _, _ = daemon
    with d.client() as c:
        page = c.get("/ui/workflow", params={"id": "wf-000003"}).text
        assert all(f'<li style="--depth: 1" data-step="wf-000003.{k}"' in page for k in (1, 2, 3))
        assert page.count('<tr data-step="wf-000003') == 4
        assert "&#34;n&#34;: 3" in page and "&#34;done&#34;: 3" in page  # arguments and result, as JSON
        assert 'data-action="fork"' in page and 'data-action="retry"' not in page  # resolved: fork, no retry
        assert 'data-action="retry"' in c.get("/ui/workflow", params={"id": "wf-000007"}).text
        assert c.get("/ui/workflow", params={"id": "nope"}).status_code == 404


def test_the_live_stream_says_when_the_graph_changes(daemon: tuple[Daemon, int, int]) -> None:
    d, _, _ = daemon
    with d.client() as c:
        human(c, "ask-4")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(d.socket)
        stream = Stream(sock, "/ui/workflow/events?id=ask-4")
        try:
            assert stream.status == 200
            stream.next_comment()  # the stream is up
            assert c.patch("/promises/ask-4", json={"state": "RESOLVED"}).status_code == 201
            assert stream.next() == {"type": "changed"}
        finally:
            stream.close()


def test_the_list_of_100000_promises_is_right() -> None:
    """25,000 workflows of four promises each. The time it takes is bench/ui_list.py's (not asserted)."""
    d = start(workflows=25_000)
    try:
        with d.client(timeout=60) as c:
            page = c.get("/ui/").text
            assert rows(page) == [f"wf-{i:06d}" for i in range(24_999, 24_949, -1)] and "25000 in all" in page
            nxt = re.search(r'href="/ui/(\?cursor=[^"]+)" rel="next"', page)
            assert nxt
            assert rows(c.get("/ui/" + nxt.group(1).replace("&amp;", "&")).text)[0] == "wf-024949"
            assert f"{len(range(0, 25_000, 7))} in all" in c.get("/ui/", params={"state": "rejected"}).text
    finally:
        d.stop()
        d.cleanup()


# -- resonate ui ----------------------------------------------------------------------------------------

def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "resonate_cli", *args], capture_output=True, text=True, timeout=60)


def test_resonate_ui_prints_the_login_address(daemon: tuple[Daemon, int, int]) -> None:
    d, _, ui = daemon
    done = cli("--socket", d.socket, "ui", "--no-open")
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert url == f"http://127.0.0.1:{ui}/ui/login?token={read_token(d)}"
    with httpx.Client() as c:
        r = c.get(url)
        assert r.status_code == 303 and c.get(f"http://127.0.0.1:{ui}/ui/").status_code == 200


def test_resonate_ui_exits_4_without_a_daemon_or_without_a_ui() -> None:
    gone = cli("--socket", "/tmp/no-such-dir-rui/d.sock", "ui")
    assert gone.returncode == 4 and "no resonate daemon" in gone.stderr
    d = start()
    try:
        plain = cli("--socket", d.socket, "ui")
        assert plain.returncode == 4 and "--ui-port" in plain.stderr
    finally:
        d.stop()
        d.cleanup()


def test_fork_then_cancel_from_the_page(daemon: tuple[Daemon, int, int]) -> None:
    d, _, _ = daemon
    with d.client() as c:
        page = c.get("/ui/workflow", params={"id": "wf-000005"}).text
        form = {"csrf": csrf_of(page), "id": "wf-000005", "back": "/ui/workflow?id=wf-000005"}
        bad = c.post("/ui/act", data={**form, "action": "fork", "from_step": "9"})
        assert "error=" in bad.headers["location"] and "past them" in c.get(bad.headers["location"]).text
        r = c.post("/ui/act", data={**form, "action": "fork", "from_step": "2", "new_id": "wf-5b"})
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/workflow?id=wf-5b&")  # the fork's page
        assert "forked+wf-000005+as+wf-5b" in r.headers["location"]
        fork = c.get("/ui/workflow", params={"id": "wf-5b"}).text
        assert 'data-root-state="PENDING"' in fork and "forked from" in fork
        assert re.findall(r'data-step="(wf-5b[.0-9]*)" data-state="[A-Z_]+" data-reused="1"', fork) == ["wf-5b.1", "wf-5b.2"]
        assert 'data-action="cancel"' in fork
        r = c.post("/ui/act", data={**form, "id": "wf-5b", "action": "cancel", "back": "/ui/workflow?id=wf-5b"})
        assert "msg=" in r.headers["location"]
        assert c.get("/promises/wf-5b").json()["state"] == "REJECTED_CANCELED"
        r = c.post("/ui/act", data={**form, "action": "explode"})
        assert "unknown+action" in r.headers["location"]
