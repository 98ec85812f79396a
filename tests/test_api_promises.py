"""Promise, callback and /v1 endpoints of a real daemon over its Unix socket: happy paths and documented errors."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from daemon_proc import FAR, Daemon, b64

_ids = itertools.count()


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = Daemon().start()
    yield d
    d.stop()
    d.cleanup()


@pytest.fixture
def c(daemon: Daemon) -> Iterator[httpx.Client]:
    with daemon.client() as client:
        yield client


def uid(prefix: str = "p") -> str:
    return f"{prefix}-{next(_ids)}"


def test_ping(c: httpx.Client) -> None:
    assert c.get("/ping").json() == {"status": "ok"}


def test_create_get_and_deduplicate(c: httpx.Client) -> None:
    id = uid("a/b/c")  # ids may contain slashes
    body = {"id": id, "timeout": FAR, "param": {"headers": {"h": "v"}, "data": b64('{"x":1}')}, "tags": {"t": "1"}}
    r = c.post("/promises", json=body, headers={"idempotency-key": "k1", "strict": "False"})
    assert r.status_code == 201
    p = r.json()
    assert p["id"] == id and p["state"] == "PENDING" and p["param"]["data"] == b64('{"x":1}')
    assert p["tags"] == {"t": "1"} and p["idempotencyKeyForCreate"] == "k1" and "createdOn" in p
    assert c.get(f"/promises/{id}").json() == p
    assert c.get("/promises/" + quote(id, safe="")).json() == p  # our SDK percent-encodes ids
    again = c.post("/promises", json=body, headers={"idempotency-key": "k1"})
    assert again.status_code == 200 and again.json() == p
    clash = c.post("/promises", json=body, headers={"idempotency-key": "other"})
    assert clash.status_code == 409 and clash.json()["error"]["code"] == 40900


def test_get_unknown_is_404(c: httpx.Client) -> None:
    r = c.get("/promises/nope/never")
    assert r.status_code == 404 and r.json()["error"]["code"] == 40400


@pytest.mark.parametrize("state", ["RESOLVED", "REJECTED", "REJECTED_CANCELED"])
def test_complete(c: httpx.Client, state: str) -> None:
    id = uid()
    c.post("/promises", json={"id": id, "timeout": FAR})
    r = c.patch(f"/promises/{id}", json={"state": state, "value": {"data": b64("42")}},
                headers={"idempotency-key": "done"})
    assert r.status_code == 201
    assert r.json()["state"] == state and r.json()["value"]["data"] == b64("42")
    again = c.patch(f"/promises/{id}", json={"state": state}, headers={"idempotency-key": "done"})
    assert again.status_code == 200 and again.json()["value"]["data"] == b64("42")
    other = c.patch(f"/promises/{id}", json={"state": state}, headers={"idempotency-key": "x"})
    assert other.status_code == 403
    assert other.json()["error"]["code"] == {"RESOLVED": 40301, "REJECTED": 40302, "REJECTED_CANCELED": 40303}[state]


def test_complete_unknown_is_404_and_timed_out_is_403_when_strict(c: httpx.Client) -> None:
    assert c.patch("/promises/missing-x", json={"state": "RESOLVED"}).status_code == 404
    id = uid()
    c.post("/promises", json={"id": id, "timeout": 1})  # born timed out
    r = c.patch(f"/promises/{id}", json={"state": "RESOLVED"}, headers={"strict": "true"})
    assert r.status_code == 403 and r.json()["error"]["code"] == 40304
    lenient = c.patch(f"/promises/{id}", json={"state": "RESOLVED"})
    assert lenient.status_code == 200 and lenient.json()["state"] == "REJECTED_TIMEDOUT"


def test_empty_data_is_stored_as_none(c: httpx.Client) -> None:
    # official 0.6.x SDKs json-decode any data present; "" would break them
    id = uid()
    p = c.post("/promises", json={"id": id, "timeout": FAR, "param": {"data": ""}}).json()
    assert p["param"]["data"] is None and p["value"] == {"headers": {}, "data": None}


def test_search(c: httpx.Client) -> None:
    base = uid("search")
    for i in range(5):
        c.post("/promises", json={"id": f"{base}/{i}", "timeout": FAR, "tags": {"kind": "odd" if i % 2 else "even"}})
    c.patch(f"/promises/{base}/0", json={"state": "RESOLVED"})
    c.patch(f"/promises/{base}/2", json={"state": "REJECTED_CANCELED"})

    def ids(**params: str) -> list[str]:
        r = c.get("/promises", params={"id": f"{base}/*", **params})
        assert r.status_code == 200, r.text
        return [p["id"] for p in r.json()["promises"]]

    assert sorted(ids()) == [f"{base}/{i}" for i in range(5)]
    assert sorted(ids(state="pending")) == [f"{base}/1", f"{base}/3", f"{base}/4"]
    assert ids(state="resolved") == [f"{base}/0"]
    assert ids(state="rejected") == [f"{base}/2"]  # covers REJECTED_CANCELED
    assert sorted(ids(**{"tags[kind]": "odd"})) == [f"{base}/1", f"{base}/3"]

    seen: list[str] = []
    cursor = None
    while True:
        params = {"id": f"{base}/*", "limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = c.get("/promises", params=params).json()
        assert len(page["promises"]) <= 2
        seen += [p["id"] for p in page["promises"]]
        cursor = page["cursor"]
        if not cursor:
            break
    assert sorted(seen) == [f"{base}/{i}" for i in range(5)] and len(seen) == 5


@pytest.mark.parametrize("params", [{"state": "bogus"}, {"limit": "0"}, {"limit": "x"}, {"cursor": "!!"}])
def test_search_bad_query_is_400(c: httpx.Client, params: dict[str, str]) -> None:
    r = c.get("/promises", params=params)
    assert r.status_code == 400 and r.json()["error"]["code"] == 40000


def test_create_with_task_claims_it(c: httpx.Client) -> None:
    id = uid()
    body = {"promise": {"id": id, "timeout": FAR, "tags": {"resonate:invoke": "poll://any@g-none"}},
            "task": {"processId": "me", "ttl": 5000}}
    r = c.post("/promises/task", json=body, headers={"idempotency-key": id})
    assert r.status_code == 201
    task = r.json()["task"]
    assert task["id"] == f"__invoke:{id}" and task["counter"] == 1 and task["state"] == "CLAIMED"
    assert task["processId"] == "me" and task["ttl"] == 5000
    again = c.post("/promises/task", json=body, headers={"idempotency-key": id})
    assert again.status_code == 200 and again.json()["task"] is None
    assert c.post("/tasks/complete", json={"id": task["id"], "counter": 1}).status_code == 201


def test_callbacks(c: httpx.Client) -> None:
    root, leaf = uid("root"), uid("leaf")
    c.post("/promises", json={"id": root, "timeout": FAR})
    c.post("/promises", json={"id": leaf, "timeout": FAR})
    body = {"rootPromiseId": root, "timeout": FAR, "recv": "poll://any@g-none/w"}
    r = c.post(f"/promises/callback/{leaf}", json=body)
    assert r.status_code == 201
    cb = r.json()["callback"]
    assert cb["id"] == f"__resume:{root}:{leaf}" and cb["promiseId"] == leaf and "createdOn" in cb
    dup = c.post(f"/promises/callback/{leaf}", json=body)
    assert dup.status_code == 200 and dup.json()["callback"] is None  # never 409: it kills 0.6.x workers
    listed = c.get(f"/v1/promises/{leaf}/callbacks").json()["callbacks"]
    assert [x["id"] for x in listed] == [cb["id"]] and listed[0]["kind"] == "resume"
    c.patch(f"/promises/{leaf}", json={"state": "RESOLVED"})
    done = c.post(f"/promises/callback/{leaf}", json=body)
    assert done.status_code == 200 and done.json()["promise"]["state"] == "RESOLVED"
    assert done.json()["callback"] is None
    assert c.post("/promises/callback/ghost", json=body).status_code == 404


def test_subscribe(c: httpx.Client) -> None:
    id = uid()
    c.post("/promises", json={"id": id, "timeout": FAR})
    body = {"id": "sub1", "timeout": FAR, "recv": "poll://uni@clients/sub1"}
    r = c.post(f"/promises/subscribe/{id}", json=body)
    assert r.status_code == 201 and r.json()["callback"]["id"] == f"__notify:{id}:sub1"
    assert r.json()["promise"]["id"] == id
    assert c.post(f"/promises/subscribe/{id}", json=body).status_code == 200
    bad = c.post(f"/promises/subscribe/{id}", json=body | {"recv": "poll://uni@clients"})
    assert bad.status_code == 400


def test_v1_status_tasks_children(c: httpx.Client, daemon: Daemon) -> None:
    parent = uid("parent")
    c.post("/promises", json={"id": parent, "timeout": FAR})
    for n in (1, 2):
        c.post("/promises", json={"id": f"{parent}.{n}", "timeout": FAR, "tags": {"resonate:parent": parent}})
    kids = c.get(f"/v1/promises/{parent}/children").json()["promises"]
    assert sorted(k["id"] for k in kids) == [f"{parent}.1", f"{parent}.2"]
    assert c.get("/v1/promises/ghost-parent/children").status_code == 404

    status = c.get("/v1/status").json()
    assert status["socket"] == daemon.socket and status["db"] == daemon.db
    assert status["promises"]["PENDING"] >= 3 and isinstance(status["tasks"], dict)
    assert status["workers"] == {} and status["version"]

    c.post("/promises", json={"id": uid(), "timeout": FAR, "tags": {"resonate:invoke": "poll://any@nobody"}})
    tasks = c.get("/v1/tasks", params={"state": "INIT"}).json()["tasks"]
    assert tasks and all(t["state"] == "INIT" for t in tasks)
    assert c.get("/v1/tasks", params={"state": "NOPE"}).status_code == 400
