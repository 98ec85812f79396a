"""Property-based fuzzing (hypothesis) of the daemon's bad-input handling, against a real daemon.

One daemon on a real Unix socket and a real SQLite file (``--max-body 4096``, so over-limit bodies stay
cheap), seeded with known promises, tasks (one INIT, two CLAIMED), a callback, a subscription and a
schedule. Every generated request is invalid by construction (a malformed body, one field given a wrong
type or an invalid value, a bad header, a bad id, a bad cron, a body over the limit), except in the one
property whose requests are valid no-ops (deduplicated creates, a complete that matches, searches).

Each request must get the status its construction expects (never a 5xx); every 4xx must carry the
PROTOCOL error shape ``{"error": {"code": int, "message": non-empty str}}`` with ``code // 100`` the
status; and after *every* example the store (all promises, schedules, tasks, the seeded callbacks) must
equal the snapshot taken after seeding. Because the templates the mutations start from are valid
requests that would change the store (``test_templates_are_valid``, run last, proves it), a rejected
request that still wrote something, or one that was wrongly accepted, fails the property. At the end the
daemon must be alive, answer ``/ping`` and have logged no traceback.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from daemon_proc import FAR, Daemon, b64
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_api_errors import assert_error

# When a property fails, hypothesis's pytest plugin imports libcst (to print an @example patch), and that
# import warns (DeprecationWarning from mypy_extensions): under filterwarnings=error the falsifying example
# would turn into an INTERNALERROR. Import it here once, with that warning ignored.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401

MAX_BODY = 4096
INT64_MAX = 2**63 - 1

GROUP = "fzgroup"
RECV = f"poll://any@{GROUP}"
PENDING_ID = "fz/pending"  # a "/" in the id: paths carry it unescaped
CREATE_KEY, COMPLETE_KEY, SCHEDULE_KEY = "fz-create-key", "fz-complete-key", "fz-schedule-key"  # the seeds' keys
RESOLVED_ID = "fz/resolved"
INIT_ROOT = "fz-init"  # its invoke task stays INIT: nobody is connected to the group
CLAIMED_A = "fz-claimed-a"  # its task is claimed by PROCESS (the target of /tasks/complete)
CLAIMED_B = "fz-claimed-b"  # its task is claimed by PROCESS (the target of /tasks/drop)
PROCESS = "fz-proc"
SCHEDULE_ID = "fz-sched"
SCHEDULE = {"id": SCHEDULE_ID, "cron": "0 0 1 1 *", "promiseId": "fz-sched-{{.timestamp}}",
            "promiseTimeout": 60_000, "description": "seeded"}
SEEDED_PROMISES = (PENDING_ID, RESOLVED_ID, INIT_ROOT, CLAIMED_A, CLAIMED_B)


def task_id(root: str) -> str:
    return f"__invoke:{root}"


def snapshot(c: httpx.Client, *, full: bool = False) -> dict[str, Any]:
    """Everything a request could change: all promises and schedules (paged), all tasks, the seeded
    promise's callbacks; ``full`` adds each seeded promise read by id."""
    snap: dict[str, Any] = {}
    for what, path in (("promises", "/promises"), ("schedules", "/schedules")):
        rows: list[Any] = []
        cursor = None
        while True:
            params = {"id": "*", "limit": "100", **({"cursor": cursor} if cursor else {})}
            r = c.get(path, params=params)
            assert r.status_code == 200, r.text
            rows += r.json()[what]
            cursor = r.json()["cursor"]
            if not cursor:
                break
        snap[what] = rows
    r = c.get("/v1/tasks", params={"limit": "1000"})
    assert r.status_code == 200, r.text
    snap["tasks"] = r.json()["tasks"]
    snap["callbacks"] = c.get(f"/v1/promises/{PENDING_ID}/callbacks").json()
    if full:
        snap["seeded"] = {id: c.get(f"/promises/{id}").json() for id in SEEDED_PROMISES}
        snap["schedule"] = c.get(f"/schedules/{SCHEDULE_ID}").json()
    return snap


# -- the daemon, seeded ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = Daemon("--max-body", str(MAX_BODY)).start()
    yield d
    d.stop()
    d.cleanup()


@pytest.fixture(scope="module")
def c(daemon: Daemon) -> Iterator[httpx.Client]:
    with daemon.client() as client:
        yield client


@pytest.fixture(scope="module")
def baseline(c: httpx.Client) -> dict[str, Any]:
    """Seed the store once; its snapshot is what every rejected request must leave behind."""
    invoke = {"resonate:invoke": RECV}

    def ok(r: httpx.Response, status: int = 201) -> Any:
        assert r.status_code == status, r.text
        return r.json()

    ok(c.post("/promises", json={"id": PENDING_ID, "timeout": FAR, "param": {"data": b64("p")}, "tags": {"k": "v"}},
              headers={"idempotency-key": CREATE_KEY}))
    ok(c.post("/promises", json={"id": RESOLVED_ID, "timeout": FAR}))
    ok(c.patch(f"/promises/{RESOLVED_ID}", json={"state": "RESOLVED", "value": {"data": b64("v")}},
               headers={"idempotency-key": COMPLETE_KEY}))
    ok(c.post("/promises", json={"id": INIT_ROOT, "timeout": FAR, "tags": invoke}))
    for root in (CLAIMED_A, CLAIMED_B):
        out = ok(c.post("/promises/task", json={"promise": {"id": root, "timeout": FAR, "tags": invoke},
                                                "task": {"processId": PROCESS, "ttl": 3_600_000}}))
        assert out["task"]["id"] == task_id(root) and out["task"]["state"] == "CLAIMED"
    ok(c.post(f"/promises/callback/{PENDING_ID}", json={"rootPromiseId": INIT_ROOT, "timeout": FAR, "recv": RECV}))
    ok(c.post(f"/promises/subscribe/{PENDING_ID}", json={"id": "fz-sub", "timeout": FAR, "recv": RECV}))
    ok(c.post("/schedules", json=SCHEDULE, headers={"idempotency-key": SCHEDULE_KEY}))
    snap = snapshot(c)
    assert {t["id"]: t["state"] for t in snap["tasks"]} == {
        task_id(INIT_ROOT): "INIT", task_id(CLAIMED_A): "CLAIMED", task_id(CLAIMED_B): "CLAIMED"}
    assert len(snap["callbacks"]["callbacks"]) == 2 and len(snap["promises"]) == len(SEEDED_PROMISES)
    return snap


# -- requests and the check every example makes ---------------------------------------------------

@dataclass
class Req:
    method: str
    path: str
    content: bytes | None = None
    expect: frozenset[int] = frozenset({400})
    headers: dict[str, Any] = field(default_factory=dict)
    chunked: bool = False  # send the body without content-length, in pieces
    code: int | None = None  # the exact error code expected, when there is one

    def __repr__(self) -> str:  # short, for the BREACH message
        body = self.content if self.content is None or len(self.content) < 300 else self.content[:300] + b"..."
        return (f"Req({self.method} {self.path[:300]} headers={self.headers} body={body!r} "
                f"len={len(self.content or b'')} chunked={self.chunked} expect={sorted(self.expect)})")


def body_req(method: str, path: str, body: Any, expect: frozenset[int] = frozenset({400}),
             headers: dict[str, Any] | None = None, raw: bytes | None = None) -> Req:
    """A JSON request; a body over the limit is expected to be a 413 whatever else is wrong with it."""
    content = raw if raw is not None else json.dumps(body).encode()
    if len(content) > MAX_BODY:
        expect = frozenset({413})
    return Req(method, path, content, expect, headers or {})


def send(c: httpx.Client, req: Req) -> httpx.Response:
    headers = dict(req.headers)
    content: bytes | Iterator[bytes] | None = req.content
    if req.content is not None:
        headers.setdefault("content-type", "application/json")
        if req.chunked:
            data = req.content
            content = iter([data[i:i + 1000] for i in range(0, len(data), 1000)])
    return c.request(req.method, req.path, content=content, headers=headers)


BREACH: list[str] = []  # the first request after which the store no longer matched the baseline


def check(c: httpx.Client, daemon: Daemon, baseline: dict[str, Any], req: Req) -> httpx.Response:
    """Send ``req``; its status must be expected (never 5xx), a 4xx in the error shape, the daemon alive,
    and the store as seeded. The store outlives examples, so once a request has changed it every later
    example fails too: they name that first request."""
    assert not BREACH, f"the store was changed earlier, by {BREACH[0]}"
    r = send(c, req)
    assert daemon.proc is not None and daemon.proc.poll() is None, "the daemon died"
    changed = snapshot(c) != baseline
    if changed:
        BREACH.append(f"{req!r} -> {r.status_code} {r.text[:300]}")
    assert r.status_code < 500, f"{r.status_code} {r.text[:500]}"
    assert r.status_code in req.expect, f"{r.status_code} {r.text[:500]}"
    if r.status_code >= 400:
        assert_error(r, r.status_code)
        if req.code is not None:
            assert r.json()["error"]["code"] == req.code, r.text
    assert not changed, f"the store changed after {r.status_code} {r.text[:300]}"
    return r


FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None, report_multiple_bugs=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.filter_too_much])


def fuzz(n: int) -> settings:
    return settings(FUZZ, max_examples=n)


# -- value strategies ------------------------------------------------------------------------------

def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def b64_ok(s: str) -> bool:
    """Strict base64 by the standard library's definition (what the protocol's ``data`` must be)."""
    try:
        base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=12))
json_values = st.recursive(
    scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=8)
not_str = json_values.filter(lambda v: not isinstance(v, str))
not_int = json_values.filter(lambda v: not is_int(v))
not_obj = json_values.filter(lambda v: not isinstance(v, dict))


def nonnull(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return s.filter(lambda v: v is not None)  # null means "absent" for optional fields: valid


def spliced(middle: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, m, b: a + m + b, st.text(max_size=8), middle, st.text(max_size=8))


control_chars = st.sampled_from([chr(i) for i in range(32)] + ["\x7f"])
lone_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)  # not valid Unicode text
bad_text = st.one_of(spliced(control_chars), spliced(lone_surrogates))
too_long = st.integers(1025, 1600).map(lambda n: "i" * n)  # ids stop at 1024 characters
bad_ids = st.one_of(not_str, st.just(""), too_long, bad_text)
negative = st.integers(max_value=-1)
over_int64 = st.integers(min_value=INT64_MAX + 1, max_value=2**200)
# ttl and promiseTimeout are relative: up to int64 max is accepted (the sum with now is clamped).
over_relative = over_int64
bad_b64 = st.one_of(
    nonnull(not_str),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ .!%é\n",
            min_size=1, max_size=12).filter(lambda s: not b64_ok(s)),
    spliced(lone_surrogates))
bad_maps = st.one_of(
    nonnull(not_obj),
    st.dictionaries(st.text(max_size=6), json_values, min_size=1, max_size=3).filter(
        lambda d: any(not isinstance(v, str) for v in d.values())),
    st.builds(lambda k: {k: "v"}, spliced(lone_surrogates)),
    st.builds(lambda v: {"k": v}, spliced(lone_surrogates)))
bad_recv = st.one_of(not_str, spliced(lone_surrogates), st.sampled_from(
    ["", " ", "poll://", "poll://any@", "poll://bad@g", "poll://uni@g", "poll://uni@g/", "a/b", "a:b", "http://x/y",
     "g\x16", "poll://any@g\x00/p", "poll://uni@g/p\x7f"]))
bad_states = st.one_of(not_str, st.sampled_from(["", "PENDING", "pending", "REJECTED_TIMEDOUT", "RESOLVED ", "ok"]),
                       st.text(max_size=10).filter(
                           lambda s: s.upper() not in ("RESOLVED", "REJECTED", "REJECTED_CANCELED")))
bad_description = nonnull(not_str).filter(bool)  # a falsy description is taken as "" (absent)

OUT_OF_RANGE = (  # minute, hour, day of month, month, day of week (0-7)
    st.integers(60, 999), st.integers(24, 999), st.one_of(st.just(0), st.integers(32, 999)),
    st.one_of(st.just(0), st.integers(13, 999)), st.integers(8, 999))
CRON_MACROS = {"yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly"}


@st.composite
def bad_crons(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["fields", "range", "step", "garbage", "macro", "type"]))
    fields = ["*"] * 5
    if kind == "fields":
        n = draw(st.integers(0, 9).filter(lambda n: n != 5))
        return " ".join(draw(st.sampled_from(["*", "1", "*/5", "0"])) for _ in range(n))
    if kind == "type":
        return draw(not_str)
    if kind == "macro":
        return "@" + draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", max_size=10).filter(
            lambda s: s not in CRON_MACROS))
    i = draw(st.integers(0, 4))
    if kind == "range":
        fields[i] = str(draw(OUT_OF_RANGE[i]))
    elif kind == "step":
        fields[i] = "*/0"
    else:
        fields[i] = draw(st.sampled_from(["%", "!", "**", "*/", "/5", "1-", "1,,2", "-", "#", "x"]))
    return " ".join(fields)


# Field kinds and the values that are invalid for each.
ID, INT, REL, COUNTER, OBJ, VALUE, MAP, B64, STATE, RECVK, CRON, DESC = (
    "id", "int", "rel", "counter", "obj", "value", "map", "b64", "state", "recv", "cron", "desc")
INVALID: dict[str, st.SearchStrategy[Any]] = {
    ID: bad_ids,
    INT: st.one_of(not_int, negative, over_int64),
    REL: st.one_of(nonnull(not_int), negative, over_relative),  # optional (a default applies) or required
    COUNTER: st.one_of(not_int, st.integers(max_value=0), over_int64),
    OBJ: not_obj,
    VALUE: nonnull(not_obj),
    MAP: bad_maps,
    B64: bad_b64,
    STATE: bad_states,
    RECVK: bad_recv,
    CRON: bad_crons(),
    DESC: bad_description,
}

KNOWN_FIELDS = {"id", "timeout", "param", "tags", "promise", "task", "processId", "ttl", "state", "value",
                "rootPromiseId", "recv", "counter", "cron", "promiseId", "promiseTimeout", "promiseParam",
                "promiseTags", "description", "headers", "data", "descendants"}
unknown_fields = st.dictionaries(st.text(max_size=10).filter(lambda k: k not in KNOWN_FIELDS), json_values,
                                 max_size=3)


@dataclass(frozen=True)
class Endpoint:
    """A valid request that would change the store, and the kind of each of its fields."""

    name: str
    method: str
    path: str
    body: dict[str, Any]
    fields: dict[tuple[str, ...], str]
    status: int = 201  # what the unmutated request gets (test_templates_are_valid)


PARAM = {"headers": {"h": "v"}, "data": b64("x")}
ENDPOINTS = [
    Endpoint("callback", "POST", f"/promises/callback/{PENDING_ID}",
             {"rootPromiseId": "fz-other-root", "timeout": FAR, "recv": RECV},
             {("rootPromiseId",): ID, ("timeout",): INT, ("recv",): RECVK}),
    Endpoint("subscribe", "POST", f"/promises/subscribe/{PENDING_ID}",
             {"id": "fz-sub-new", "timeout": FAR, "recv": RECV + "/p1"},
             {("id",): ID, ("timeout",): INT, ("recv",): RECVK}),
    Endpoint("create", "POST", "/promises",
             {"id": "fz-new", "timeout": FAR, "param": PARAM, "tags": {"t": "v"}},
             {("id",): ID, ("timeout",): INT, ("param",): VALUE, ("param", "headers"): MAP,
              ("param", "data"): B64, ("tags",): MAP}),
    Endpoint("create_task", "POST", "/promises/task",
             {"promise": {"id": "fz-new-task", "timeout": FAR, "param": PARAM, "tags": {"resonate:invoke": RECV}},
              "task": {"processId": "fz-other", "ttl": 60_000}},
             {("promise",): OBJ, ("task",): OBJ, ("promise", "id"): ID, ("promise", "timeout"): INT,
              ("promise", "param"): VALUE, ("promise", "param", "data"): B64, ("promise", "tags"): MAP,
              ("task", "processId"): ID, ("task", "ttl"): REL}),
    Endpoint("claim", "POST", "/tasks/claim",
             {"id": task_id(INIT_ROOT), "counter": 1, "processId": "fz-claimer", "ttl": 60_000},
             {("id",): ID, ("counter",): COUNTER, ("processId",): ID, ("ttl",): REL}),
    Endpoint("heartbeat", "POST", "/tasks/heartbeat", {"processId": PROCESS}, {("processId",): ID}, 200),
    Endpoint("complete_task", "POST", "/tasks/complete", {"id": task_id(CLAIMED_A), "counter": 1},
             {("id",): ID, ("counter",): COUNTER}),
    Endpoint("drop_task", "POST", "/tasks/drop", {"id": task_id(CLAIMED_B), "counter": 1},
             {("id",): ID, ("counter",): COUNTER}),
    Endpoint("schedule", "POST", "/schedules",
             {"id": "fz-new-sched", "cron": "*/5 * * * *", "promiseId": "fz-sp-{{.timestamp}}",
              "promiseTimeout": 60_000, "promiseParam": PARAM, "promiseTags": {"t": "v"}, "tags": {"t": "v"},
              "description": "d"},
             {("id",): ID, ("cron",): CRON, ("promiseId",): ID, ("promiseTimeout",): REL,
              ("promiseParam",): VALUE, ("promiseParam", "headers"): MAP, ("promiseParam", "data"): B64,
              ("promiseTags",): MAP, ("tags",): MAP, ("description",): DESC}),
    # Last: it completes the pending promise the callback and subscription templates point at.
    Endpoint("complete", "PATCH", f"/promises/{PENDING_ID}",
             {"state": "RESOLVED", "value": {"headers": {"h": "v"}, "data": b64("done")}},
             {("state",): STATE, ("value",): VALUE, ("value", "headers"): MAP, ("value", "data"): B64}),
]
BODY_PATHS = [(e.method, e.path) for e in ENDPOINTS]


def put(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of ``body`` with the field at ``path`` set to ``value`` (None: removed, i.e. missing)."""
    out = copy.deepcopy(body)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    if value is None and path[-1] in parent:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


def get(body: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        body = body.get(key) if isinstance(body, dict) else None
    return body


@st.composite
def mutated(draw: st.DrawFn, kinds: tuple[str, ...] | None = None) -> tuple[Endpoint, tuple[str, ...], Any]:
    """An endpoint, one of its fields, and an invalid value for it."""
    choices = [(e, p) for e in ENDPOINTS for p, k in e.fields.items() if kinds is None or k in kinds]
    endpoint, path = draw(st.sampled_from(choices))
    return endpoint, path, draw(INVALID[endpoint.fields[path]])


def with_unknown_fields(draw: st.DrawFn, body: dict[str, Any],
                        objects: tuple[tuple[str, ...], ...] = ()) -> dict[str, Any]:
    """``body`` with maybe some unknown fields added, at the top or in one of the nested ``objects``
    (never inside a string map such as tags or headers, where any key is legitimate)."""
    extras = draw(unknown_fields)
    if extras:
        targets = [t for t in (body, *(get(body, p) for p in objects)) if isinstance(t, dict)]
        draw(st.sampled_from(targets)).update(extras)
    return body


def object_fields(endpoint: Endpoint) -> tuple[tuple[str, ...], ...]:
    return tuple(p for p, k in endpoint.fields.items() if k in (OBJ, VALUE))


# -- the properties -----------------------------------------------------------------------------------

RAW_BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.text(alphabet='{}[]":,0123456789.-+eEtrufalsn \\', max_size=60).map(str.encode),
    json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"", b"  \n", b"{", b'{"id": }', b"\xff\xfe{}", b'{"id": "x",}', b"{'id': 'x'}",
                     b'{"id": "x"} trailing', b'{"a": "\xc3"}']),
)


def parses_to_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, RecursionError):
        return False


@fuzz(120)
@given(target=st.sampled_from(BODY_PATHS), raw=RAW_BODIES)
def test_malformed_json_bodies_are_400(c: httpx.Client, daemon: Daemon, baseline: dict[str, Any],
                                       target: tuple[str, str], raw: bytes) -> None:
    assume(not parses_to_object(raw))  # a JSON object is the other properties' business
    check(c, daemon, baseline, Req(target[0], target[1], raw))


@fuzz(200)
@given(data=st.data())
def test_wrong_field_types_and_values_are_400(c: httpx.Client, daemon: Daemon, baseline: dict[str, Any],
                                              data: st.DataObject) -> None:
    """One field of a valid request made invalid (wrong JSON type, missing, empty, negative, over int64,
    control characters, lone surrogates, ...), plus maybe unknown fields anywhere: 400, nothing written."""
    endpoint, path, value = data.draw(mutated())
    body = with_unknown_fields(data.draw, put(endpoint.body, path, value), object_fields(endpoint))
    check(c, daemon, baseline, body_req(endpoint.method, endpoint.path, body))


COUNTER_TARGETS = [e for e in ENDPOINTS if e.name in ("claim", "complete_task", "drop_task")]


@fuzz(60)
@given(endpoint=st.sampled_from(COUNTER_TARGETS), data=st.data())
def test_bad_counters(c: httpx.Client, daemon: Daemon, baseline: dict[str, Any], endpoint: Endpoint,
                      data: st.DataObject) -> None:
    """Counters on real tasks (at counter 1): not an integer, below 1 or over int64 is 400; any other
    integer but 1 is the fencing error 40308."""
    counter = data.draw(st.one_of(INVALID[COUNTER], st.integers(2, INT64_MAX), st.sampled_from([1.0, "1", True])))
    body = put(endpoint.body, ("counter",), counter)
    req = body_req(endpoint.method, endpoint.path, body)
    if is_int(counter) and 2 <= counter <= INT64_MAX:
        req.expect, req.code = frozenset({403}), 40308
    check(c, daemon, baseline, req)


@fuzz(60)
@given(cron=bad_crons(), data=st.data())
def test_bad_cron_is_400(c: httpx.Client, daemon: Daemon, baseline: dict[str, Any], cron: Any,
                         data: st.DataObject) -> None:
    endpoint = next(e for e in ENDPOINTS if e.name == "schedule")
    body = with_unknown_fields(data.draw, put(endpoint.body, ("cron",), cron), object_fields(endpoint))
    r = check(c, daemon, baseline, body_req("POST", "/schedules", body))
    assert "cron" in r.json()["error"]["message"]


@fuzz(60)
@given(data=st.data())
def test_bad_base64_data_is_400(c: httpx.Client, daemon: Daemon, baseline: dict[str, Any],
                                data: st.DataObject) -> None:
    endpoint, path, value = data.draw(mutated(kinds=(B64,)))
    r = check(c, daemon, baseline, body_req(endpoint.method, endpoint.path, put(endpoint.body, path, value)))
    assert r.status_code == 413 or "data" in r.json()["error"]["message"] or "surrogate" in r.text


@st.composite
def deep(draw: st.DrawFn) -> tuple[Endpoint, bytes]:
    """A valid request with JSON nested ``depth`` deep as the whole body, as a typed field's value (a
    wrong type at any depth), or as an unknown field next to one invalid field."""
    depth = draw(st.integers(1, 2500))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('[{"a":', "}]")]))
    nest = opener * depth + "1" + closer * depth
    endpoint = draw(st.sampled_from(ENDPOINTS))
    where = draw(st.sampled_from(["body", "field", "unknown"]))
    if where == "body":
        return endpoint, nest.encode()
    scalar_fields = [p for p, k in endpoint.fields.items() if k not in (OBJ, VALUE, MAP, DESC)]
    path = draw(st.sampled_from(scalar_fields))
    body = put(endpoint.body, path, "@@NEST@@")
    if where == "unknown":
        body = put(endpoint.body, path, draw(INVALID[endpoint.fields[path]]))
        body["deep"] = "@@NEST@@"
    return endpoint, json.dumps(body).replace('"@@NEST@@"', nest).encode()


@fuzz(60)
@given(case=deep())
def test_deeply_nested_json_is_400(c: httpx.Client, daemon: Daemon, baseline: dict[str, Any],
                                   case: tuple[Endpoint, bytes]) -> None:
    endpoint, raw = case
    check(c, daemon, baseline, body_req(endpoint.method, endpoint.path, None, raw=raw))


@fuzz(30)
@given(endpoint=st.sampled_from(ENDPOINTS), size=st.integers(MAX_BODY + 1, 8 * MAX_BODY),
       chunked=st.booleans())
def test_bodies_over_the_limit_are_413(c: httpx.Client, daemon: Daemon, baseline: dict[str, Any],
                                       endpoint: Endpoint, size: int, chunked: bool) -> None:
    """A valid request padded (with an unknown field) past --max-body: 413 in the error shape, nothing
    written, whether the size is announced (content-length) or only found while streaming (chunked)."""
    raw = json.dumps(dict(endpoint.body, pad="")).encode()
    raw = raw[:-2] + b"A" * max(0, size - len(raw)) + b'"}'
    req = Req(endpoint.method, endpoint.path, raw, frozenset({413}), chunked=chunked, code=41300)
    check(c, daemon, baseline, req)


def pct(raw: bytes) -> str:
    return "".join(f"%{b:02X}" for b in raw)


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@st.composite
def bad_path_ids(draw: st.DrawFn) -> tuple[str, frozenset[int]]:
    """An id for a path, percent-encoded: empty, too long or with control characters (400), or bytes
    that are not UTF-8 (decoded with replacement characters: an id nobody has, 404, or 400 if a
    control character survives)."""
    kind = draw(st.sampled_from(["empty", "long", "control", "not-utf8"]))
    if kind == "empty":
        return "", frozenset({400})
    if kind == "long":
        return quote(draw(too_long), safe=""), frozenset({400})
    if kind == "control":  # 404 when the router's "[^/]*"-like patterns do not match a newline at all
        return quote(draw(spliced(control_chars)).encode(), safe=""), frozenset({400, 404})
    raw = draw(st.binary(min_size=1, max_size=12).filter(lambda b: not _utf8(b)))
    return pct(raw), frozenset({400, 404})


PATH_TARGETS = [("GET", "/promises/{}", None), ("PATCH", "/promises/{}", {"state": "RESOLVED"}),
                ("POST", "/promises/callback/{}", {"rootPromiseId": INIT_ROOT, "timeout": FAR, "recv": RECV}),
                ("POST", "/promises/subscribe/{}", {"id": "s", "timeout": FAR, "recv": RECV}),
                ("GET", "/schedules/{}", None), ("DELETE", "/schedules/{}", None),
                ("GET", "/v1/promises/{}/children", None), ("GET", "/v1/promises/{}/callbacks", None)]


@fuzz(80)
@given(target=st.sampled_from(PATH_TARGETS), id=bad_path_ids())
def test_bad_ids_in_paths(c: httpx.Client, daemon: Daemon, baseline: dict[str, Any],
                          target: tuple[str, str, Any], id: tuple[str, frozenset[int]]) -> None:
    method, template, body = target
    encoded, expect = id
    content = None if body is None else json.dumps(body).encode()
    check(c, daemon, baseline, Req(method, template.format(encoded), content, expect))


header_text = st.binary(min_size=1, max_size=40).map(  # what HTTP allows in a value (obs-text too)
    lambda b: bytes(x for x in b if x in (9, 32) or 33 <= x <= 126 or x >= 128).strip(b" \t")).filter(bool)
bad_strict = header_text.filter(
    lambda b: b.decode("latin-1").strip().lower() not in ("", "false", "0", "true", "1"))
good_strict = st.sampled_from([b"true", b"TRUE", b"false", b"False", b"1", b"0"])


@st.composite
def bad_header_requests(draw: st.DrawFn) -> Req:
    """A bad ``strict`` header on a request that is otherwise valid: 400 before anything is written. Or
    an ``idempotency-key`` (any bytes HTTP allows) that does not match, on a request that then conflicts:
    creating the seeded pending promise (409) or schedule (409), completing the resolved one again (403)."""
    if draw(st.booleans()):
        endpoint = draw(st.sampled_from([e for e in ENDPOINTS if e.name in ("create", "create_task", "complete")]))
        headers = {"strict": draw(bad_strict)}
        if draw(st.booleans()):
            headers["idempotency-key"] = draw(header_text)
        return body_req(endpoint.method, endpoint.path, endpoint.body, headers=headers)
    ikey = draw(header_text.filter(lambda b: b not in (CREATE_KEY.encode(), COMPLETE_KEY.encode(),
                                                       SCHEDULE_KEY.encode())))
    headers = {"idempotency-key": ikey}
    if draw(st.booleans()):
        headers["strict"] = draw(good_strict)
    which = draw(st.sampled_from(["create", "create_task", "complete", "schedule"]))
    if which == "create":
        return body_req("POST", "/promises", {"id": PENDING_ID, "timeout": FAR}, frozenset({409}), headers)
    if which == "create_task":
        body = {"promise": {"id": PENDING_ID, "timeout": FAR}, "task": {"processId": "fz-other", "ttl": 1000}}
        return body_req("POST", "/promises/task", body, frozenset({409}), headers)
    if which == "complete":
        return body_req("PATCH", f"/promises/{RESOLVED_ID}", {"state": "RESOLVED"}, frozenset({403}), headers)
    return body_req("POST", "/schedules", SCHEDULE, frozenset({409}), headers)


@fuzz(60)
@given(req=bad_header_requests())
def test_bad_headers(c: httpx.Client, daemon: Daemon, baseline: dict[str, Any], req: Req) -> None:
    check(c, daemon, baseline, req)


not_a_cursor = st.one_of(
    st.text(alphabet="!@#$%^&*()~ ", min_size=1, max_size=10),  # nothing base64 in it: decodes to b""
    json_values.filter(lambda v: not (isinstance(v, list) and len(v) == 2)).map(
        lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).decode()),
    st.binary(min_size=1, max_size=20).filter(lambda b: not _utf8(b)).map(
        lambda b: base64.urlsafe_b64encode(b).decode()),
    # the right shape, [created_on, id], with a value no store can hold: past int64, negative, a float or
    # a bool for the time; a lone surrogate or an over-long id
    st.tuples(st.one_of(over_int64, negative, st.floats(), st.booleans()), st.text(max_size=6)).map(
        lambda p: base64.urlsafe_b64encode(json.dumps(list(p)).encode()).decode()),
    st.tuples(st.integers(0, 2**40), st.one_of(spliced(lone_surrogates), too_long)).map(
        lambda p: base64.urlsafe_b64encode(json.dumps(list(p)).encode()).decode()))
bad_limit = st.one_of(st.integers(max_value=0), st.integers(min_value=1001, max_value=10**30),
                      st.text(max_size=6).filter(lambda t: t.strip() != "" and not _intlike(t)),
                      st.just("1" * 5000))
bad_search_state = st.text(min_size=1, max_size=10).filter(
    lambda t: t.lower() not in ("pending", "resolved", "rejected", "completed")
    and t.upper() not in ("PENDING", "RESOLVED", "REJECTED", "REJECTED_CANCELED", "REJECTED_TIMEDOUT"))


def _intlike(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


@fuzz(60)
@given(path=st.sampled_from(["/promises", "/schedules", "/v1/workflows"]),
       which=st.sampled_from(["limit", "cursor", "state"]), data=st.data())
def test_bad_search_queries_are_400(c: httpx.Client, daemon: Daemon, baseline: dict[str, Any], path: str,
                                    which: str, data: st.DataObject) -> None:
    if which == "state" and path != "/promises":
        which = "limit"
    value = data.draw({"limit": bad_limit, "cursor": not_a_cursor, "state": bad_search_state}[which])
    if which == "limit" and isinstance(value, int):
        value = str(value)
    check(c, daemon, baseline, Req("GET", f"{path}?{which}={quote(value, safe='')}"))


@fuzz(60)
@given(path=st.sampled_from(["/promises", "/schedules", "/v1/workflows", "/v1/tasks", "/promises/fz-x",
                             "/v1/promises/fz-x/tree"]),
       name=st.sampled_from(["id", "state", "limit", "cursor", "func", "since", "tags[k]", "tags[\ud800]"]),
       raw=st.one_of(st.binary(max_size=12), st.text(max_size=12)))
def test_any_query_string_is_answered_never_a_5xx(c: httpx.Client, daemon: Daemon, baseline: dict[str, Any],
                                                   path: str, name: str, raw: bytes | str) -> None:
    """Whatever bytes a query parameter holds (invalid UTF-8 included): an answer or a 400/404, never a 5xx."""
    value = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    key = name.encode("utf-8", "surrogatepass")
    check(c, daemon, baseline, Req("GET", f"{path}?{quote(key, safe='')}={quote(value, safe='')}",
                                   expect=frozenset({200, 400, 404})))


@st.composite
def valid_noops(draw: st.DrawFn) -> Req:
    """Valid requests that must change nothing, with unknown fields anywhere in their bodies (ignored)."""
    which = draw(st.sampled_from(["create", "create_task", "complete", "callback", "subscribe", "heartbeat",
                                  "schedule", "search", "search_schedules", "get"]))
    if which == "search":
        params = {"id": draw(st.text(max_size=12)) or "*"}
        if draw(st.booleans()):
            params[f"tags[{draw(st.text(min_size=1, max_size=8))}]"] = draw(st.text(max_size=8))
        if draw(st.booleans()):
            params["state"] = draw(st.sampled_from(["pending", "RESOLVED", "rejected", "completed"]))
        return Req("GET", str(httpx.URL("/promises", params=params)), expect=frozenset({200}))
    if which == "search_schedules":
        return Req("GET", str(httpx.URL("/schedules", params={"id": draw(st.text(max_size=12))})),
                   expect=frozenset({200}))
    if which == "get":
        path = draw(st.sampled_from([f"/promises/{PENDING_ID}", f"/promises/{RESOLVED_ID}",
                                     f"/schedules/{SCHEDULE_ID}", f"/v1/promises/{INIT_ROOT}/children"]))
        return Req("GET", path, expect=frozenset({200}))
    method, path, body = {
        "create": ("POST", "/promises", {"id": PENDING_ID, "timeout": FAR, "param": {}}),
        "create_task": ("POST", "/promises/task", {"promise": {"id": PENDING_ID, "timeout": FAR},
                                                   "task": {"processId": "fz-other", "ttl": 1000}}),
        "complete": ("PATCH", f"/promises/{RESOLVED_ID}", {"state": "resolved", "value": {}}),
        "callback": ("POST", f"/promises/callback/{RESOLVED_ID}", {"rootPromiseId": INIT_ROOT, "timeout": FAR,
                                                                   "recv": RECV}),
        "subscribe": ("POST", f"/promises/subscribe/{RESOLVED_ID}", {"id": "s", "timeout": FAR, "recv": RECV}),
        "heartbeat": ("POST", "/tasks/heartbeat", {"processId": "fz-nobody"}),
        "schedule": ("POST", "/schedules", dict(SCHEDULE, promiseParam={})),
    }[which]
    body = with_unknown_fields(draw, copy.deepcopy(body), (("param",), ("value",), ("promise",), ("task",),
                                                          ("promiseParam",)))
    content = json.dumps(body).encode()
    assume(len(content) <= MAX_BODY)
    # A repeat is a no-op only with the key of the first request (two missing keys do not match).
    keys = {"create": CREATE_KEY, "create_task": CREATE_KEY, "complete": COMPLETE_KEY, "schedule": SCHEDULE_KEY}
    headers = {"idempotency-key": keys[which]} if which in keys else {}
    return Req(method, path, content, frozenset({200}), headers)


@fuzz(80)
@given(req=valid_noops())
def test_valid_noops_with_unknown_fields_change_nothing(c: httpx.Client, daemon: Daemon,
                                                        baseline: dict[str, Any], req: Req) -> None:
    check(c, daemon, baseline, req)


# -- last: the daemon is unhurt, and the templates the mutations start from are valid ------------------

def test_daemon_survives_and_store_is_intact(c: httpx.Client, daemon: Daemon, baseline: dict[str, Any]) -> None:
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert c.get("/ping").json() == {"status": "ok"}
    assert "Traceback" not in daemon.stderr()
    full = snapshot(c, full=True)
    assert {k: v for k, v in full.items() if k in baseline} == baseline
    assert [p["id"] for p in full["seeded"].values()] == list(SEEDED_PROMISES)
    assert full["seeded"][RESOLVED_ID]["state"] == "RESOLVED" and full["seeded"][PENDING_ID]["state"] == "PENDING"
    assert full["schedule"]["id"] == SCHEDULE_ID


def test_templates_are_valid(c: httpx.Client, daemon: Daemon, baseline: dict[str, Any]) -> None:
    """Each unmutated template succeeds and writes (so a mutation that was ignored would have shown up
    as a 2xx and a changed store). Runs last: it changes the store."""
    for endpoint in ENDPOINTS:
        before = snapshot(c)
        body = dict(endpoint.body, someUnknownField={"x": [1, 2]})
        r = c.request(endpoint.method, endpoint.path, json=body)
        assert r.status_code == endpoint.status, (endpoint.name, r.text)
        assert snapshot(c) != before, f"{endpoint.name}: a valid request changed nothing"
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert "Traceback" not in daemon.stderr()
