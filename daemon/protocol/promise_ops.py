"""The promise operations of the API: create, get, search, complete, callbacks and subscriptions.

The legacy Resonate server's endpoints (PROTOCOL.md) keep the shapes official 0.6.x SDKs depend on
(docs/official-sdk-wire.md: every 2xx has a JSON body, a duplicate callback is 200 with ``callback:
null``); ours live under ``/v1``. Each class is one endpoint: see ``wire.Op``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import errors
from .records import (
    COMPLETE_TARGETS,
    EMPTY,
    PROMISE_STATES,
    SEARCH_STATES,
    Callback,
    Promise,
    Task,
    Value,
)
from .results import (
    Completed,
    Created,
    Page,
    Registered,
)
from .wire import (
    MAX_LIMIT,
    ById,
    Incoming,
    Op,
    Request,
    bad,
    completion_headers,
    get,
    ikey_of,
    need_id,
    need_int,
    need_invoke_tag,
    need_opt_str,
    need_recv,
    need_str,
    need_tags,
    need_value,
    object_of,
    path_id,
    query_int,
    quote,
    strict_of,
    tags_of,
    value_of,
)

if TYPE_CHECKING:
    from . import Service

DEFAULT_TTL_MS = 10_000


def _promise_fields(id: Any, timeout: Any, param: Any, tags: Any) -> None:
    need_id(id)
    need_int(timeout, "timeout")
    need_value(param, "param")
    need_tags(tags)
    need_invoke_tag(tags)


def _promise_body(op: Any) -> dict[str, Any]:
    return {"id": op.id, "timeout": op.timeout, "param": op.param.to_json(), "tags": dict(op.tags)}


@dataclass(frozen=True)
class CreatePromise(Op[Created]):
    """POST /promises: 201 created, 200 deduplicated (same idempotency key), 409 exists."""

    METHOD, ROUTE, BODY = "POST", "/promises", True
    id: str
    timeout: int
    param: Value = EMPTY
    tags: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        _promise_fields(self.id, self.timeout, self.param, self.tags)

    def request(self) -> Request:
        return Request("POST", "/promises", headers=completion_headers(self.idempotency_key, self.strict),
                       body=_promise_body(self))

    @classmethod
    def parse(cls, incoming: Incoming) -> CreatePromise:
        b = incoming.body
        return cls(get(b, "id"), get(b, "timeout"), value_of(b, "param"), tags_of(b), ikey_of(incoming),
                   strict_of(incoming))

    def run(self, service: Service) -> Created:
        return service.create_promise(self)

    def respond(self, result: Created) -> tuple[int, Any]:
        return result.status, result.promise.to_json()

    def result(self, status: int, body: Any) -> Created:
        return Created(status, Promise.from_json(body))


@dataclass(frozen=True)
class CreatePromiseAndTask(Op[Created]):
    """POST /promises/task: create an invocation and claim its task for ``process_id`` at once."""

    METHOD, ROUTE, BODY = "POST", "/promises/task", True
    id: str
    timeout: int
    process_id: str
    ttl: int = DEFAULT_TTL_MS
    param: Value = EMPTY
    tags: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        _promise_fields(self.id, self.timeout, self.param, self.tags)
        need_id(self.process_id, "process id")
        need_int(self.ttl, "ttl")

    def request(self) -> Request:
        return Request("POST", "/promises/task", headers=completion_headers(self.idempotency_key, self.strict),
                       body={"promise": _promise_body(self), "task": {"processId": self.process_id, "ttl": self.ttl}})

    @classmethod
    def parse(cls, incoming: Incoming) -> CreatePromiseAndTask:
        p, t = object_of(incoming.body, "promise"), object_of(incoming.body, "task")
        return cls(get(p, "id"), get(p, "timeout"), need_str(get(t, "processId"), "processId"),
                   get(t, "ttl", DEFAULT_TTL_MS), value_of(p, "param"), tags_of(p), ikey_of(incoming),
                   strict_of(incoming))

    def run(self, service: Service) -> Created:
        return service.create_promise_and_task(self)

    def respond(self, result: Created) -> tuple[int, Any]:
        task = result.task.to_json() if result.task is not None else None
        return result.status, {"promise": result.promise.to_json(), "task": task}

    def result(self, status: int, body: Any) -> Created:
        task = body.get("task")
        return Created(status, Promise.from_json(body["promise"]),
                       Task.from_json(task, type="invoke") if task else None)


@dataclass(frozen=True)
class CreateAndSubscribe(Op[Created]):
    """POST /v1/promises/subscribed (ours): a client's rpc in one request, create then subscribe."""

    METHOD, ROUTE, BODY = "POST", "/v1/promises/subscribed", True
    id: str
    timeout: int
    subscription_id: str
    recv: str
    param: Value = EMPTY
    tags: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    strict: bool = False
    subscription_timeout: int = 0

    def __post_init__(self) -> None:
        _promise_fields(self.id, self.timeout, self.param, self.tags)
        need_id(self.subscription_id, "subscription id")
        need_recv(self.recv)
        need_int(self.subscription_timeout, "subscription timeout")

    def request(self) -> Request:
        sub = {"id": self.subscription_id, "timeout": self.subscription_timeout, "recv": self.recv}
        return Request("POST", self.ROUTE, headers=completion_headers(self.idempotency_key, self.strict),
                       body={"promise": _promise_body(self), "subscription": sub})

    @classmethod
    def parse(cls, incoming: Incoming) -> CreateAndSubscribe:
        p, s = object_of(incoming.body, "promise"), object_of(incoming.body, "subscription")
        return cls(get(p, "id"), get(p, "timeout"), get(s, "id"), get(s, "recv"), value_of(p, "param"),
                   tags_of(p), ikey_of(incoming), strict_of(incoming), get(s, "timeout"))

    def run(self, service: Service) -> Created:
        return service.create_and_subscribe(self)

    def respond(self, result: Created) -> tuple[int, Any]:
        cb = result.callback.to_json() if result.callback is not None else None
        return result.status, {"promise": result.promise.to_json(), "callback": cb}

    def result(self, status: int, body: Any) -> Created:
        cb = body.get("callback")
        return Created(status, Promise.from_json(body["promise"]),
                       callback=Callback.from_json(cb, "notify") if cb else None)


MAX_STARTS = 1000  # starts in one StartMany request


@dataclass(frozen=True)
class StartMany(Op["list[Created | errors.ResonateError]"]):
    """POST /v1/promises/subscribed/batch (ours): many rpc starts (``CreateAndSubscribe``) in one request,
    how a client that starts thousands pays one round trip for each batch instead of each start. Each
    start stands on its own: one's error (a conflict, a canceled parent) is its answer and undoes no
    other. The answer is 200 with ``results``, one per start in order: ``{"status", "promise",
    "callback"}`` or ``{"status", "error"}``."""

    METHOD, ROUTE, BODY = "POST", "/v1/promises/subscribed/batch", True
    starts: tuple[CreateAndSubscribe, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.starts) <= MAX_STARTS:
            raise bad(f"starts must hold 1 to {MAX_STARTS} items, not {len(self.starts)}")

    def request(self) -> Request:
        items = []
        for op in self.starts:
            req = op.request()
            assert req.body is not None
            items.append({**req.body, "idempotencyKey": op.idempotency_key, "strict": op.strict})
        return Request("POST", self.ROUTE, body={"starts": items})

    @classmethod
    def parse(cls, incoming: Incoming) -> StartMany:
        items = incoming.body.get("starts")
        if not isinstance(items, list):
            raise bad("starts must be a list of {promise, subscription, idempotencyKey, strict} objects")
        if not 1 <= len(items) <= MAX_STARTS:
            raise bad(f"starts must hold 1 to {MAX_STARTS} items, not {len(items)}")
        starts = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise bad(f"starts[{i}] must be an object, not {type(item).__name__}")
            ikey, strict = item.get("idempotencyKey"), item.get("strict", False)
            if ikey is not None and not isinstance(ikey, str) or not isinstance(strict, bool):
                raise bad(f"starts[{i}]: idempotencyKey must be a string and strict true or false")
            try:
                starts.append(CreateAndSubscribe.parse(Incoming(body=item, headers=completion_headers(ikey, strict))))
            except errors.InvalidRequest as exc:
                raise bad(f"starts[{i}]: {exc.message}") from None
        return cls(tuple(starts))

    def run(self, service: Service) -> list[Created | errors.ResonateError]:
        return service.start_many(self)

    def respond(self, result: list[Created | errors.ResonateError]) -> tuple[int, Any]:
        out: list[dict[str, Any]] = []
        for op, r in zip(self.starts, result, strict=True):
            if isinstance(r, errors.ResonateError):
                out.append({"status": r.status, **r.to_json()})
            else:
                out.append({"status": r.status, **op.respond(r)[1]})
        return 200, {"results": out}

    def result(self, status: int, body: Any) -> list[Created | errors.ResonateError]:
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list) or len(results) != len(self.starts):
            raise errors.ResonateError(f"the daemon answered a batch of {len(self.starts)} starts with {body!r:.200}")
        return [errors.from_json(r, r.get("status", 500)) if "error" in r else op.result(r["status"], r)
                for op, r in zip(self.starts, results, strict=True)]


@dataclass(frozen=True)
class GetPromise(ById[Promise]):
    """GET /promises/{id}: the promise, with a due timeout applied first."""

    METHOD, ROUTE = "GET", "/promises/{id:path}"

    def run(self, service: Service) -> Promise:
        return service.get_promise(self)

    def respond(self, result: Promise) -> tuple[int, Any]:
        return 200, result.to_json()

    def result(self, status: int, body: Any) -> Promise:
        return Promise.from_json(body)


@dataclass(frozen=True)
class SearchPromises(Op[Page[Promise]]):
    """GET /promises?id=glob&state=&tags[k]=v&limit=&cursor=: one page, newest first."""

    METHOD, ROUTE = "GET", "/promises"
    id: str = "*"
    state: str | None = None  # pending, resolved, rejected, completed, or one exact state
    tags: dict[str, str] = field(default_factory=dict)
    limit: int = 100
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str):
            raise bad("field 'id' must be a string (a glob: * matches anything)")
        if self.state is not None and self.states is None:
            raise bad(f"query parameter 'state' must be pending, resolved or rejected, not {self.state!r}")
        need_tags(self.tags)
        need_int(self.limit, "limit", lo=1, hi=MAX_LIMIT)
        need_opt_str(self.cursor, "cursor")

    @property
    def states(self) -> tuple[str, ...] | None:
        """The states the ``state`` word stands for (None: any)."""
        if self.state is None:
            return None
        word = self.state.lower()
        if word in SEARCH_STATES:
            return SEARCH_STATES[word]
        return (self.state.upper(),) if self.state.upper() in PROMISE_STATES else None

    def request(self) -> Request:
        query = [("id", self.id or "*"), ("limit", str(self.limit))]
        if self.state:
            query.append(("state", self.state))
        query += [(f"tags[{k}]", v) for k, v in self.tags.items()]
        if self.cursor:
            query.append(("cursor", self.cursor))
        return Request("GET", "/promises", query=query)

    @classmethod
    def parse(cls, incoming: Incoming) -> SearchPromises:
        tags = {k[5:-1]: v for k, v in incoming.query if k.startswith("tags[") and k.endswith("]") and len(k) > 6}
        return cls(incoming.param("id") or "*", incoming.param("state") or None, tags,
                   query_int(incoming, "limit", 100, 1, MAX_LIMIT), incoming.param("cursor") or None)

    def run(self, service: Service) -> Page[Promise]:
        return service.search_promises(self)

    def respond(self, result: Page[Promise]) -> tuple[int, Any]:
        return 200, {"promises": [p.to_json() for p in result.items], "cursor": result.cursor}

    def result(self, status: int, body: Any) -> Page[Promise]:
        return Page([Promise.from_json(p) for p in body.get("promises", [])], body.get("cursor"))


@dataclass(frozen=True)
class CompletePromise(Op[Completed]):
    """PATCH /promises/{id}: resolve, reject or cancel; 201 now, 200 deduplicated, 403 already completed."""

    METHOD, ROUTE, BODY = "PATCH", "/promises/{id:path}", True
    id: str
    state: str
    value: Value = EMPTY
    idempotency_key: str | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        need_id(self.id)
        if self.state not in COMPLETE_TARGETS:
            raise bad(f"field 'state' must be RESOLVED, REJECTED or REJECTED_CANCELED, not {self.state!r}")
        need_value(self.value, "value")

    def request(self) -> Request:
        return Request("PATCH", f"/promises/{quote(self.id)}",
                       headers=completion_headers(self.idempotency_key, self.strict),
                       body={"state": self.state, "value": self.value.to_json()})

    @classmethod
    def parse(cls, incoming: Incoming) -> CompletePromise:
        id, b = path_id(incoming), incoming.body
        return cls(id, need_str(get(b, "state"), "state").upper(), value_of(b, "value"), ikey_of(incoming),
                   strict_of(incoming))

    def run(self, service: Service) -> Completed:
        return service.complete_promise(self)

    def respond(self, result: Completed) -> tuple[int, Any]:
        return result.status, result.promise.to_json()

    def result(self, status: int, body: Any) -> Completed:
        return Completed(status, Promise.from_json(body))


@dataclass(frozen=True)
class SettleStep(Op[Completed]):
    """POST /v1/promises/settled (ours): a local step that already ran, created completed in one request.
    If the promise exists, the stored one wins (a replay raced us, or a retry)."""

    METHOD, ROUTE, BODY = "POST", "/v1/promises/settled", True
    id: str
    timeout: int
    state: str
    value: Value = EMPTY
    param: Value = EMPTY
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _promise_fields(self.id, self.timeout, self.param, self.tags)
        if self.state not in ("RESOLVED", "REJECTED"):
            raise bad(f"state must be RESOLVED or REJECTED, not {self.state!r}")
        need_value(self.value, "value")

    def request(self) -> Request:
        return Request("POST", self.ROUTE, body={**_promise_body(self), "value": self.value.to_json(),
                                                 "state": self.state})

    @classmethod
    def parse(cls, incoming: Incoming) -> SettleStep:
        b = incoming.body
        return cls(get(b, "id"), get(b, "timeout"), need_str(get(b, "state"), "state").upper(), value_of(b, "value"),
                   value_of(b, "param"), tags_of(b))

    def run(self, service: Service) -> Completed:
        return service.settle_step(self)

    def respond(self, result: Completed) -> tuple[int, Any]:
        return result.status, result.promise.to_json()

    def result(self, status: int, body: Any) -> Completed:
        return Completed(status, Promise.from_json(body))


@dataclass(frozen=True)
class CreateCallback(Op[Registered]):
    """POST /promises/callback/{id}: a resume task for ``root_promise_id`` when the promise completes."""

    METHOD, ROUTE, BODY = "POST", "/promises/callback/{id:path}", True
    promise_id: str
    root_promise_id: str
    timeout: int
    recv: str

    def __post_init__(self) -> None:
        need_id(self.promise_id)
        need_id(self.root_promise_id, "root promise id")
        need_int(self.timeout, "timeout")
        need_recv(self.recv)

    def request(self) -> Request:
        return Request("POST", f"/promises/callback/{quote(self.promise_id)}",
                       body={"rootPromiseId": self.root_promise_id, "timeout": self.timeout, "recv": self.recv})

    @classmethod
    def parse(cls, incoming: Incoming) -> CreateCallback:
        b = incoming.body
        return cls(path_id(incoming), need_str(get(b, "rootPromiseId"), "rootPromiseId"), get(b, "timeout"),
                   need_str(get(b, "recv"), "recv"))

    def run(self, service: Service) -> Registered:
        return service.create_callback(self)

    def respond(self, result: Registered) -> tuple[int, Any]:
        return _registered(result)

    def result(self, status: int, body: Any) -> Registered:
        cb = body.get("callback")
        return Registered(status, Promise.from_json(body["promise"]), Callback.from_json(cb) if cb else None)


@dataclass(frozen=True)
class CreateSubscription(Op[Registered]):
    """POST /promises/subscribe/{id}: a notify message to ``recv`` when the promise completes."""

    METHOD, ROUTE, BODY = "POST", "/promises/subscribe/{id:path}", True
    promise_id: str
    id: str
    timeout: int
    recv: str

    def __post_init__(self) -> None:
        need_id(self.promise_id)
        need_id(self.id, "subscription id")
        need_int(self.timeout, "timeout")
        need_recv(self.recv)

    def request(self) -> Request:
        return Request("POST", f"/promises/subscribe/{quote(self.promise_id)}",
                       body={"id": self.id, "timeout": self.timeout, "recv": self.recv})

    @classmethod
    def parse(cls, incoming: Incoming) -> CreateSubscription:
        b = incoming.body
        return cls(path_id(incoming), need_str(get(b, "id"), "id"), get(b, "timeout"), need_str(get(b, "recv"), "recv"))

    def run(self, service: Service) -> Registered:
        return service.create_subscription(self)

    def respond(self, result: Registered) -> tuple[int, Any]:
        return _registered(result)

    def result(self, status: int, body: Any) -> Registered:
        cb = body.get("callback")
        return Registered(status, Promise.from_json(body["promise"]),
                          Callback.from_json(cb, "notify") if cb else None)


def _registered(reg: Registered) -> tuple[int, Any]:
    # A duplicate on a pending promise is 200 with callback null, as the legacy server answers.
    callback = reg.callback.to_json() if reg.callback is not None and reg.status == 201 else None
    return reg.status, {"promise": reg.promise.to_json(), "callback": callback}
