"""Bad input gets a 400 (or 404/405/413) in the error shape, never a 500, and never hurts the daemon."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from daemon_proc import FAR, Daemon

MAX_BODY = 4096


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = Daemon("--max-body", str(MAX_BODY)).start()
    yield d
    d.stop()
    d.cleanup()


@pytest.fixture
def c(daemon: Daemon) -> Iterator[httpx.Client]:
    with daemon.client() as client:
        yield client


def assert_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] // 100 == status and isinstance(err["message"], str) and err["message"]
    return str(err["message"])


RAW_BODIES = [b"", b"   ", b"{", b"not json", b"[1, 2]", b'"text"', b"null", b"\xff\xfe", b"[" * 3000]


@pytest.mark.parametrize("path", ["/promises", "/promises/task", "/promises/callback/x", "/promises/subscribe/x",
                                  "/tasks/claim", "/tasks/complete", "/tasks/drop", "/tasks/heartbeat"])
@pytest.mark.parametrize("raw", RAW_BODIES, ids=lambda b: repr(b[:8]))
def test_malformed_json_is_400(c: httpx.Client, path: str, raw: bytes) -> None:
    assert_error(c.post(path, content=raw, headers={"content-type": "application/json"}), 400)


def test_malformed_patch_is_400(c: httpx.Client) -> None:
    assert_error(c.patch("/promises/x", content=b"{oops"), 400)


BAD_CREATES: list[tuple[dict[str, Any], str]] = [
    ({"timeout": FAR}, "id"),
    ({"id": "", "timeout": FAR}, "id"),
    ({"id": 5, "timeout": FAR}, "id"),
    ({"id": "a\x00b", "timeout": FAR}, "control"),
    ({"id": "x" * 2000, "timeout": FAR}, "limit"),
    ({"id": "ok"}, "timeout"),
    ({"id": "ok", "timeout": "soon"}, "timeout"),
    ({"id": "ok", "timeout": -1}, "timeout"),
    ({"id": "ok", "timeout": True}, "timeout"),
    ({"id": "ok", "timeout": 1.5}, "timeout"),
    ({"id": "ok", "timeout": FAR, "param": "x"}, "param"),
    ({"id": "ok", "timeout": FAR, "param": {"data": "not base64!"}}, "base64"),
    ({"id": "ok", "timeout": FAR, "param": {"data": 12}}, "base64"),
    ({"id": "ok", "timeout": FAR, "param": {"headers": {"a": 1}}}, "headers"),
    ({"id": "ok", "timeout": FAR, "param": {"headers": []}}, "headers"),
    ({"id": "ok", "timeout": FAR, "tags": {"a": 1}}, "tags"),
    ({"id": "ok", "timeout": FAR, "tags": ["a"]}, "tags"),
    ({"id": "ok", "timeout": FAR, "tags": {"resonate:invoke": "poll://bad@g"}}, "mode"),
    ({"id": "ok", "timeout": FAR, "tags": {"resonate:invoke": "poll://uni@g"}}, "process"),
]


@pytest.mark.parametrize(("body", "word"), BAD_CREATES)
def test_bad_create_is_400(c: httpx.Client, body: dict[str, Any], word: str) -> None:
    assert word in assert_error(c.post("/promises", json=body), 400)


@pytest.mark.parametrize("strict", ["maybe", "yes please"])
def test_bad_strict_header_is_400(c: httpx.Client, strict: str) -> None:
    assert_error(c.post("/promises", json={"id": "s", "timeout": FAR}, headers={"strict": strict}), 400)


@pytest.mark.parametrize("body", [{}, {"state": "PENDING"}, {"state": "REJECTED_TIMEDOUT"}, {"state": 3},
                                  {"state": "RESOLVED", "value": {"data": "%%%"}}, {"state": "RESOLVED", "value": 7}])
def test_bad_complete_is_400(c: httpx.Client, body: dict[str, Any]) -> None:
    c.post("/promises", json={"id": "to-complete", "timeout": FAR})
    assert_error(c.patch("/promises/to-complete", json=body), 400)


@pytest.mark.parametrize(("path", "body"), [
    ("/promises/task", {"promise": {"id": "t", "timeout": FAR}}),
    ("/promises/task", {"promise": "x", "task": {"processId": "p", "ttl": 1}}),
    ("/promises/task", {"promise": {"id": "t", "timeout": FAR}, "task": {"ttl": 1}}),
    ("/promises/callback/x", {"rootPromiseId": "r", "timeout": FAR}),
    ("/promises/callback/x", {"rootPromiseId": "r", "timeout": FAR, "recv": 5}),
    ("/promises/callback/x", {"rootPromiseId": "r", "timeout": FAR, "recv": "poll://what@g"}),
    ("/promises/subscribe/x", {"timeout": FAR, "recv": "poll://any@g"}),
    ("/tasks/claim", {"id": "t", "counter": 0, "processId": "p", "ttl": 1}),
    ("/tasks/claim", {"id": "t", "counter": "1", "processId": "p", "ttl": 1}),
    ("/tasks/claim", {"id": "t", "counter": 1, "ttl": 1}),
    ("/tasks/claim", {"id": "t", "counter": 1, "processId": "p", "ttl": -5}),
    ("/tasks/complete", {"id": "t"}),
    ("/tasks/drop", {"counter": 1}),
    ("/tasks/heartbeat", {"processId": 7}),
    ("/tasks/heartbeat", {}),
])
def test_bad_fields_are_400(c: httpx.Client, path: str, body: dict[str, Any]) -> None:
    assert_error(c.post(path, json=body), 400)


def test_body_over_limit_is_413(c: httpx.Client) -> None:
    big = {"id": "big", "timeout": FAR, "param": {"data": "A" * (MAX_BODY + 4)}}
    assert_error(c.post("/promises", json=big), 413)

    def chunks() -> Iterator[bytes]:  # no content-length: the limit holds while streaming too
        yield b'{"id": "big", "timeout": 1, "param": {"data": "'
        for _ in range(10):
            yield b"A" * 1024
        yield b'"}}'

    assert_error(c.post("/promises", content=chunks()), 413)
    assert c.get("/ping").status_code == 200


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/nowhere", 404), ("POST", "/tasks/nothing", 404), ("GET", "/v1/promises/ghost/children", 404),
    ("DELETE", "/promises/x", 405), ("GET", "/tasks/claim", 405), ("PUT", "/promises", 405),
])
def test_unknown_routes_and_methods(c: httpx.Client, method: str, path: str, status: int) -> None:
    assert_error(c.request(method, path), status)


@pytest.mark.parametrize(("body", "code"), [
    ({"id": "__invoke:ghost", "counter": 1, "processId": "p", "ttl": 1000}, 40403),
])
def test_claim_unknown_task_is_404(c: httpx.Client, body: dict[str, Any], code: int) -> None:
    r = c.post("/tasks/claim", json=body)
    assert r.status_code == 404 and r.json()["error"]["code"] == code


@pytest.mark.parametrize(("path", "raw"), [
    ("/promises", rb'{"id": "lone\ud800", "timeout": 1}'),
    ("/promises", rb'{"id": "lone-tag", "timeout": 1, "tags": {"\udc00": "v"}}'),
    ("/promises", rb'{"id": "lone-header", "timeout": 1, "param": {"headers": {"h": "\ud83d"}}}'),
    ("/promises/subscribe/x", rb'{"id": "s", "timeout": 1, "recv": "poll://any@g\udfff"}'),
    ("/tasks/heartbeat", rb'{"processId": "p\udfff"}'),
    ("/schedules", rb'{"id": "lone\ud800", "cron": "* * * * *", "promiseId": "p", "promiseTimeout": 1}'),
])
def test_lone_surrogate_is_400_not_500(c: httpx.Client, path: str, raw: bytes) -> None:
    # JSON lets "\ud800" through as a one-character string that no UTF-8 store can hold: it was a 500.
    assert "surrogate" in assert_error(c.post(path, content=raw), 400)


def test_escaped_surrogate_pair_is_fine(c: httpx.Client) -> None:
    r = c.post("/promises", content=rb'{"id": "pair-\ud83d\ude00", "timeout": 1}')
    assert r.status_code == 201 and r.json()["id"] == "pair-\U0001f600"


def test_integers_beyond_int64_are_400_not_500(c: httpx.Client) -> None:
    # SQLite integers are 64-bit: a bigger timeout failed at the insert (a 500). A ttl or a promiseTimeout
    # up to int64 max is accepted (the official SDK sends sys.maxsize) and its sum with now is clamped.
    assert_error(c.post("/promises", json={"id": "huge", "timeout": 2**63}), 400)
    assert c.post("/promises", json={"id": "huge", "timeout": 2**63 - 1}).status_code == 201
    assert_error(c.post("/promises/callback/huge", json={"rootPromiseId": "r", "timeout": 2**64, "recv": "g"}), 400)
    assert_error(c.post("/schedules", json={"id": "huge", "cron": "* * * * *", "promiseId": "p",
                                            "promiseTimeout": 2**63}), 400)
    r = c.post("/schedules", json={"id": "huge", "cron": "* * * * *", "promiseId": "p", "promiseTimeout": 2**63 - 1})
    assert r.status_code == 201 and r.json()["promiseTimeout"] == 2**63 - 1
    task = {"processId": "p", "ttl": 2**63 - 1}
    r = c.post("/promises/task", json={"promise": {"id": "huge-task", "timeout": FAR,
                                                   "tags": {"resonate:invoke": "poll://any@g"}}, "task": task})
    assert r.status_code == 201 and r.json()["task"]["expiresAt"] == 2**63 - 1  # clamped, not refused
    assert c.post("/promises", json={"id": "huge-ttl", "timeout": FAR,
                                     "tags": {"resonate:invoke": "poll://any@g"}}).status_code == 201
    claim = {"id": "__invoke:huge-ttl", "counter": 1, "processId": "p"}
    assert_error(c.post("/tasks/claim", json=dict(claim, ttl=2**63)), 400)
    assert_error(c.post("/tasks/claim", json=dict(claim, counter=2**63)), 400)
    r = c.post("/tasks/claim", json=dict(claim, ttl=2**63 - 1))
    assert r.status_code == 201 and r.json()["task"]["expiresAt"] == 2**63 - 1


def test_names_no_worker_could_use_are_400(c: httpx.Client) -> None:
    # GET /poll refuses a group or process name with control characters, so an address or a process id
    # with one would only ever wait: refused where it comes in.
    assert "control" in assert_error(c.post("/promises", json={
        "id": "ctl-recv", "timeout": FAR, "tags": {"resonate:invoke": "poll://any@g\x16"}}), 400)
    assert "control" in assert_error(c.post("/promises/subscribe/x", json={
        "id": "s", "timeout": 1, "recv": "g\x16"}), 400)
    body = {"promise": {"id": "ctl-pid", "timeout": FAR, "tags": {"resonate:invoke": "poll://any@g"}},
            "task": {"processId": "p\x00"}}
    assert "process id" in assert_error(c.post("/promises/task", json=body), 400)
    assert "1024" in assert_error(c.post("/promises/task", json=dict(body, task={"processId": "p" * 1025})), 400)
    assert c.get("/promises/ctl-pid").status_code == 404  # nothing was created on the way


def test_daemon_survives_all_of_the_above(c: httpx.Client, daemon: Daemon) -> None:
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert c.get("/ping").json() == {"status": "ok"}
    assert "Traceback" not in daemon.stderr()
