"""Push streams and task endpoints: routing by address, claim/complete/drop, re-dispatch when a worker goes.

Each test uses its own group names, so one daemon serves the whole module. A message that must *not*
reach a stream is checked by ordering, never by waiting: a later message sent to that stream must be
the first one it reads.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from daemon_proc import FAR, Daemon, Stream, b64

_n = itertools.count()


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = Daemon("--ping-interval", "0.2").start()
    yield d
    d.stop()
    d.cleanup()


@pytest.fixture
def c(daemon: Daemon) -> Iterator[httpx.Client]:
    with daemon.client() as client:
        yield client


@pytest.fixture
def streams(daemon: Daemon) -> Iterator[Any]:
    opened: list[Stream] = []

    def connect(group: str, pid: str) -> Stream:
        s = Stream.unix(daemon.socket, group, pid)
        assert s.status == 200
        opened.append(s)
        return s

    yield connect
    for s in opened:
        s.close()


def name(prefix: str) -> str:
    return f"{prefix}{next(_n)}"


def invoke(c: httpx.Client, target: str, id: str | None = None) -> str:
    id = id or name("job-")
    r = c.post("/promises", json={"id": id, "timeout": FAR, "tags": {"resonate:invoke": target},
                                  "param": {"data": b64('{"func": "f", "args": [], "kwargs": {}, "version": 0}')}})
    assert r.status_code == 201, r.text
    return id


def claim(c: httpx.Client, task: dict[str, Any], pid: str) -> httpx.Response:
    return c.post("/tasks/claim", json={"id": task["id"], "counter": task["counter"], "processId": pid, "ttl": 10_000})


def task_state(c: httpx.Client, task_id: str) -> dict[str, Any]:
    return next(t for t in c.get("/v1/tasks").json()["tasks"] if t["id"] == task_id)


def test_invoke_claim_complete(c: httpx.Client, streams: Any) -> None:
    g = name("g")
    w = streams(g, "w1")
    id = invoke(c, f"poll://any@{g}")
    msg = w.next()
    assert msg == {"type": "invoke", "task": msg["task"]}
    assert msg["task"]["id"] == f"__invoke:{id}" and msg["task"]["counter"] == 1
    assert msg["task"]["rootPromiseId"] == id
    assert task_state(c, msg["task"]["id"])["state"] in ("ENQUEUED", "INIT")  # marked sent once written
    assert c.get("/v1/status").json()["workers"][g] == ["w1"]

    r = claim(c, msg["task"], "w1")
    assert r.status_code == 201
    body = r.json()
    assert body["type"] == "invoke" and "leaf" not in body["promises"]
    assert body["promises"]["root"]["id"] == id and body["promises"]["root"]["data"]["state"] == "PENDING"
    assert c.post("/tasks/heartbeat", json={"processId": "w1"}).json() == {"tasksAffected": 1}
    assert claim(c, msg["task"], "w1").json()["error"]["code"] == 40306

    c.patch(f"/promises/{id}", json={"state": "RESOLVED", "value": {"data": b64("1")}})
    # completing the promise completed the task: the worker's complete must still be a 2xx with JSON
    done = c.post("/tasks/complete", json={"id": msg["task"]["id"], "counter": 1})
    assert done.status_code == 200 and done.json()["state"] == "COMPLETED"
    assert c.post("/tasks/heartbeat", json={"processId": "w1"}).json() == {"tasksAffected": 0}


def test_complete_task_then_again(c: httpx.Client, streams: Any) -> None:
    g = name("g")
    w = streams(g, "w1")
    invoke(c, f"poll://any@{g}")
    task = w.next()["task"]
    claim(c, task, "w1")
    first = c.post("/tasks/complete", json={"id": task["id"], "counter": 1})
    assert first.status_code == 201 and first.json()["id"] == task["id"]
    assert c.post("/tasks/complete", json={"id": task["id"], "counter": 1}).status_code == 200


def test_closed_stream_gives_task_to_another_worker_with_next_counter(c: httpx.Client, streams: Any) -> None:
    g = name("g")
    w1 = streams(g, "w1")
    invoke(c, f"poll://any@{g}")
    task = w1.next()["task"]
    assert claim(c, task, "w1").status_code == 201
    w2 = streams(g, "w2")
    w1.close()  # the worker crashed
    again = w2.next()["task"]
    assert again["id"] == task["id"] and again["counter"] == task["counter"] + 1
    stale = claim(c, task, "w1")
    assert stale.status_code == 403 and stale.json()["error"]["code"] == 40308
    assert claim(c, again, "w2").status_code == 201
    assert c.get("/v1/status").json()["workers"][g] == ["w2"]


def test_drop_resends_with_next_counter(c: httpx.Client, streams: Any) -> None:
    g = name("g")
    w = streams(g, "w1")
    invoke(c, f"poll://any@{g}")
    task = w.next()["task"]
    not_claimed = c.post("/tasks/drop", json={"id": task["id"], "counter": 1})
    assert not_claimed.status_code == 403 and not_claimed.json()["error"]["code"] == 40309
    claim(c, task, "w1")
    dropped = c.post("/tasks/drop", json={"id": task["id"], "counter": 1})
    assert dropped.status_code == 201 and dropped.json()["counter"] == 2
    assert w.next()["task"]["counter"] == 2


def test_uni_and_any_with_process(c: httpx.Client, streams: Any) -> None:
    g = name("g")
    w1, w2 = streams(g, "w1"), streams(g, "w2")
    to_w2 = invoke(c, f"poll://uni@{g}/w2")
    assert w2.next()["task"]["rootPromiseId"] == to_w2
    to_w1 = invoke(c, f"poll://any@{g}/w1")
    assert w1.next()["task"]["rootPromiseId"] == to_w1  # w1's first message: it never saw to_w2
    w1.close()
    # any@G/P with P gone falls back to another worker of G; uni@G/P with P gone waits for P
    waits = invoke(c, f"poll://uni@{g}/w1")
    falls_back = invoke(c, f"poll://any@{g}/w1")
    # w2 also gets to_w1 back: w1 never claimed it, and its process is gone
    assert {w2.next()["task"]["rootPromiseId"], w2.next()["task"]["rootPromiseId"]} == {to_w1, falls_back}
    w1b = streams(g, "w1")
    assert w1b.next()["task"]["rootPromiseId"] == waits


def test_round_robin_without_process(c: httpx.Client, streams: Any) -> None:
    g = name("g")
    w1, w2 = streams(g, "w1"), streams(g, "w2")
    ids = [invoke(c, f"poll://any@{g}") for _ in range(4)]
    got = [w1.next()["task"]["rootPromiseId"] for _ in range(2)] + [w2.next()["task"]["rootPromiseId"] for _ in range(2)]
    assert sorted(got) == sorted(ids)


def test_backlog_is_sent_on_connect(c: httpx.Client, streams: Any) -> None:
    g = name("g")
    early = invoke(c, f"poll://any@{g}")  # nobody connected: stays INIT
    assert task_state(c, f"__invoke:{early}")["state"] == "INIT"
    bare = invoke(c, g)  # a bare group name is poll://any@group
    w = streams(g, "late")
    got = {w.next()["task"]["rootPromiseId"], w.next()["task"]["rootPromiseId"]}
    assert got == {early, bare}


def test_notify_goes_to_subscriber(c: httpx.Client, streams: Any) -> None:
    group = name("clients")
    sub = streams(group, "c1")
    id = name("watched-")
    c.post("/promises", json={"id": id, "timeout": FAR})
    r = c.post(f"/promises/subscribe/{id}", json={"id": "c1", "timeout": FAR, "recv": f"poll://uni@{group}/c1"})
    assert r.status_code == 201
    c.patch(f"/promises/{id}", json={"state": "RESOLVED", "value": {"data": b64('"yes"')}})
    msg = sub.next()
    assert msg["type"] == "notify" and msg["promise"]["id"] == id
    assert msg["promise"]["state"] == "RESOLVED" and msg["promise"]["value"]["data"] == b64('"yes"')


def test_resume_after_callback(c: httpx.Client, streams: Any) -> None:
    g = name("g")
    w = streams(g, "w1")
    root = invoke(c, f"poll://any@{g}")
    task = w.next()["task"]
    claim(c, task, "w1")
    leaf = f"{root}.1"
    c.post("/promises", json={"id": leaf, "timeout": FAR})
    c.post(f"/promises/callback/{leaf}", json={"rootPromiseId": root, "timeout": FAR, "recv": f"poll://any@{g}/w1"})
    assert c.post("/tasks/complete", json={"id": task["id"], "counter": 1}).status_code == 201  # suspended
    c.patch(f"/promises/{leaf}", json={"state": "RESOLVED", "value": {"data": b64("5")}})
    msg = w.next()
    assert msg["type"] == "resume" and msg["task"]["id"] == f"__resume:{root}:{leaf}"
    body = claim(c, msg["task"], "w1").json()
    assert body["type"] == "resume" and body["promises"]["leaf"]["data"]["state"] == "RESOLVED"
    assert body["promises"]["root"]["id"] == root


def test_idle_stream_gets_pings(streams: Any) -> None:
    w = streams(name("g"), "idle")
    assert w.next_comment() == b": connected"
    assert w.next_comment() == b": ping"


def test_bad_stream_path(c: httpx.Client) -> None:
    assert c.get("/poll/only-group").status_code == 404
