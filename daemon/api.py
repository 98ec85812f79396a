"""The daemon's HTTP API (PROTOCOL.md), a starlette app over the engine.

Every body is validated here before the engine sees it, and every failure becomes the legacy error
shape ``{"error": {"code", "message"}}`` with status ``code // 100``: bad input is a 400, never a 500,
and no request can take the daemon down. The engine is synchronous and serialises itself with a
lock; calls into it run on the event loop's thread (see ``Api.call`` for why not a thread pool).

Shapes follow docs/official-sdk-wire.md where it is more exact than PROTOCOL.md: every 2xx has a
JSON body, a duplicate callback is 200 with ``callback: null``, a claim omits ``leaf`` for invokes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__, errors
from .config import ServeConfig
from .dispatch import Dispatcher, PushStream
from .engine import Engine
from .records import (
    COMPLETED_STATES,
    PENDING,
    PROMISE_STATES,
    REJECTED,
    REJECTED_CANCELED,
    REJECTED_TIMEDOUT,
    RESOLVED,
    TASK_STATES,
    Value,
)
from .store import decode_cursor, encode_cursor

log = logging.getLogger("resonate.api")

SEARCH_STATES: dict[str, tuple[str, ...]] = {
    "pending": (PENDING,),
    "resolved": (RESOLVED,),
    "rejected": (REJECTED, REJECTED_CANCELED, REJECTED_TIMEDOUT),
    "completed": COMPLETED_STATES,
}
Handler = Callable[[Request], Awaitable[Response]]

INT64_MAX = 2**63 - 1  # SQLite stores 64-bit integers: a larger one fails at the insert, as a 500
MAX_RELATIVE_MS = 2**62  # a ttl or promiseTimeout is added to now, and the sum must still fit
# How a lone UTF-16 surrogate gets into a JSON string; json.loads lets it through, SQLite cannot encode it.
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


@dataclass(frozen=True, slots=True)
class AppState:
    engine: Engine
    dispatcher: Dispatcher
    config: ServeConfig


# -- input validation ----------------------------------------------------------------------------

def _bad(message: str) -> errors.InvalidRequest:
    return errors.InvalidRequest(message)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, or InvalidRequest / PayloadTooLarge. Reads at most ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise errors.PayloadTooLarge(f"request body is {length} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise _bad("request body is empty; expected a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _bad(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _bad(f"request body must be a JSON object, not {type(body).__name__}")
    if _ESCAPED_SURROGATE.search(raw) is not None:  # rare: only then pay for a second pass
        try:
            json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise _bad("request body has a string with a lone UTF-16 surrogate (\\ud800-\\udfff); "
                       "strings must be valid Unicode") from None
        except RecursionError:
            raise _bad("request body is nested too deeply") from None
    return body


def _int(obj: dict[str, Any], name: str, *, default: int | None = None, lo: int = 0,
         hi: int = INT64_MAX) -> int:
    value = obj.get(name, default)
    if value is None:
        raise _bad(f"missing field {name!r} (an integer)")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"field {name!r} must be an integer, not {type(value).__name__}")
    if value < lo:
        raise _bad(f"field {name!r} must be at least {lo}, not {value}")
    if value > hi:
        raise _bad(f"field {name!r} must be at most {hi}")
    return value


def _str(obj: dict[str, Any], name: str, *, required: bool = True) -> str:
    value = obj.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value:
        raise _bad(f"field {name!r} must be a non-empty string")
    return value


def _obj(obj: dict[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    if not isinstance(value, dict):
        raise _bad(f"field {name!r} must be a JSON object")
    return value


def _tags(obj: dict[str, Any], name: str = "tags") -> dict[str, str]:
    value = obj.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _bad(f"field {name!r} must be an object mapping strings to strings")
    return value


def _value(obj: dict[str, Any], name: str) -> Value:
    """``{headers?, data?}`` with base64 ``data``; an empty ``data`` is stored as none (legacy does)."""
    value = obj.get(name)
    if value is None:
        return Value()
    if not isinstance(value, dict):
        raise _bad(f"field {name!r} must be an object {{headers, data}}")
    headers = value.get("headers")
    headers = {} if headers is None else headers
    if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise _bad(f"field {name}.headers must be an object mapping strings to strings")
    data = value.get("data")
    if data is not None:
        if not isinstance(data, str):
            raise _bad(f"field {name}.data must be a base64 string")
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise _bad(f"field {name}.data is not valid base64") from None
    return Value(headers=dict(headers), data=data or None)


def _strict(request: Request) -> bool:
    text = request.headers.get("strict", "").strip().lower()
    if text in ("", "false", "0"):
        return False
    if text in ("true", "1"):
        return True
    raise _bad(f"header 'strict' must be true or false, not {text!r}")


def _ikey(request: Request) -> str | None:
    return request.headers.get("idempotency-key") or None


def _query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        n = int(text)
    except ValueError:
        raise _bad(f"query parameter {name!r} must be an integer, not {text!r}") from None
    if not lo <= n <= hi:
        raise _bad(f"query parameter {name!r} must be from {lo} to {hi}, not {n}")
    return n


def _path_id(request: Request, name: str = "id") -> str:
    value = request.path_params[name]
    if not value:
        raise _bad(f"missing {name} in the path")
    return str(value)


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


# -- endpoints -----------------------------------------------------------------------------------

class Api:
    """The endpoints; one instance per app, sharing the engine and dispatcher with its siblings."""

    def __init__(self, state: AppState) -> None:
        self.engine = state.engine
        self.dispatcher = state.dispatcher
        self.config = state.config

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # On the event loop's own thread, not a pool thread: engine operations take tens to hundreds
        # of µs and run one at a time under the engine's lock anyway, while the hop to a pool thread
        # and back cost a GIL hand-off each way (up to the 5 ms switch interval when both threads
        # are busy). Measured: 3-8 ms per request under load with the pool, about 1 ms without.
        return fn(*args, **kwargs)

    async def body(self, request: Request) -> dict[str, Any]:
        return await read_json(request, self.config.max_body)

    async def ping(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def create_promise(self, request: Request) -> Response:
        body = await self.body(request)
        created = await self.call(
            self.engine.create_promise, _str(body, "id"), _int(body, "timeout"), _value(body, "param"),
            _tags(body), idempotency_key=_ikey(request), strict=_strict(request))
        return _json(created.promise.to_json(), created.status)

    async def create_promise_and_task(self, request: Request) -> Response:
        body = await self.body(request)
        promise, task = _obj(body, "promise"), _obj(body, "task")
        claim = (_str(task, "processId"), _int(task, "ttl", default=10_000, hi=MAX_RELATIVE_MS))
        created = await self.call(
            self.engine.create_promise, _str(promise, "id"), _int(promise, "timeout"),
            _value(promise, "param"), _tags(promise), idempotency_key=_ikey(request),
            strict=_strict(request), claim=claim)
        out = {"promise": created.promise.to_json(),
               "task": created.task.to_json() if created.task is not None else None}
        return _json(out, created.status)

    async def get_promise(self, request: Request) -> Response:
        promise = await self.call(self.engine.get_promise, _path_id(request))
        return _json(promise.to_json())

    async def complete_promise(self, request: Request) -> Response:
        id = _path_id(request)
        body = await self.body(request)
        state = _str(body, "state").upper()
        if state not in (RESOLVED, REJECTED, REJECTED_CANCELED):
            raise _bad(f"field 'state' must be RESOLVED, REJECTED or REJECTED_CANCELED, not {body['state']!r}")
        status, promise = await self.call(
            self.engine.complete_promise, id, state, _value(body, "value"),
            idempotency_key=_ikey(request), strict=_strict(request))
        return _json(promise.to_json(), status)

    async def search_promises(self, request: Request) -> Response:
        q = request.query_params
        id_glob = q.get("id") or None
        states: tuple[str, ...] | None = None
        if q.get("state"):
            text = q["state"]
            states = SEARCH_STATES.get(text.lower()) or ((text.upper(),) if text.upper() in PROMISE_STATES else None)
            if states is None:
                raise _bad(f"query parameter 'state' must be pending, resolved or rejected, not {text!r}")
        tags: dict[str, str] = {}
        for key, value in q.multi_items():
            if key.startswith("tags[") and key.endswith("]") and len(key) > 6:
                tags[key[5:-1]] = value
        limit = _query_int(request, "limit", 100, 1, 1000)
        cursor = decode_cursor(q.get("cursor"))
        promises, nxt = await self.call(self.engine.search_promises, id_glob, states, tags or None, limit, cursor)
        return _json({"promises": [p.to_json() for p in promises], "cursor": encode_cursor(nxt)})

    async def create_callback(self, request: Request) -> Response:
        id = _path_id(request)
        body = await self.body(request)
        reg = await self.call(self.engine.create_callback, id, _str(body, "rootPromiseId"),
                              _int(body, "timeout"), _str(body, "recv"))
        return self._registered(reg)

    async def create_subscription(self, request: Request) -> Response:
        id = _path_id(request)
        body = await self.body(request)
        reg = await self.call(self.engine.create_subscription, id, _str(body, "id"),
                              _int(body, "timeout"), _str(body, "recv"))
        return self._registered(reg)

    @staticmethod
    def _registered(reg: Any) -> Response:
        # A duplicate on a pending promise is 200 with callback null, as the legacy server answers.
        callback = reg.callback.to_json() if reg.callback is not None and reg.status == 201 else None
        return _json({"promise": reg.promise.to_json(), "callback": callback}, reg.status)

    async def claim_task(self, request: Request) -> Response:
        body = await self.body(request)
        # Ours only (official workers never send it, so their answer keeps its shape): "descendants":
        # true adds the root's recorded call graph, the replay's input, saving a request per claim.
        with_graph = body.get("descendants") is True
        args = (_str(body, "id"), _int(body, "counter", lo=1), _str(body, "processId"),
                _int(body, "ttl", default=10_000, hi=MAX_RELATIVE_MS))

        def claim() -> tuple[Any, Any]:
            claimed = self.engine.claim_task(*args)
            graph = (self.engine.read(lambda: self.engine.store.promises_of_root(claimed.root.id))
                     if with_graph else None)
            return claimed, graph

        claimed, graph = await self.call(claim)
        promises: dict[str, Any] = {"root": {"id": claimed.root.id, "data": claimed.root.to_json()}}
        if claimed.leaf is not None:  # omitted, never null: official 0.6.x workers crash on null
            promises["leaf"] = {"id": claimed.leaf.id, "data": claimed.leaf.to_json()}
        out: dict[str, Any] = {"type": claimed.type, "promises": promises}
        if graph is not None:
            out["descendants"] = [p.to_json() for p in graph.values()]
        return _json(out, 201)

    async def complete_task(self, request: Request) -> Response:
        body = await self.body(request)
        id, counter = _str(body, "id"), _int(body, "counter", lo=1)
        status = await self.call(self.engine.complete_task, id, counter)
        task = await self.call(self.engine.get_task, id)
        return _json(task.to_json(), status)

    async def drop_task(self, request: Request) -> Response:
        body = await self.body(request)
        id, counter = _str(body, "id"), _int(body, "counter", lo=1)
        status = await self.call(self.engine.drop_task, id, counter)
        task = await self.call(self.engine.get_task, id)
        return _json(task.to_json(), status)

    async def heartbeat(self, request: Request) -> Response:
        body = await self.body(request)
        n = await self.call(self.engine.heartbeat, _str(body, "processId"))
        return _json({"tasksAffected": n})

    async def poll(self, request: Request) -> Response:
        return self._stream(request, release_on_close=True)

    async def poll_legacy(self, request: Request) -> Response:
        return self._stream(request, release_on_close=False)

    def _stream(self, request: Request, *, release_on_close: bool) -> Any:
        group, pid = request.path_params["group"], request.path_params["pid"]
        for what, value in (("group", group), ("process id", pid)):
            if not value or len(value) > 1024 or any(ord(c) < 32 for c in value):
                raise _bad(f"invalid {what} {value!r}")
        return PushStream(self.dispatcher, group, pid, release_on_close=release_on_close)

    # -- schedules --------------------------------------------------------------------------------
    async def create_schedule(self, request: Request) -> Response:
        body = await self.body(request)
        description = body.get("description") or ""
        if not isinstance(description, str):
            raise _bad("field 'description' must be a string")
        status, schedule = await self.call(
            self.engine.create_schedule, _str(body, "id"), _str(body, "cron"), _str(body, "promiseId"),
            _int(body, "promiseTimeout", hi=MAX_RELATIVE_MS), _value(body, "promiseParam"),
            _tags(body, "promiseTags"), description, _tags(body), idempotency_key=_ikey(request))
        return _json(schedule.to_json(), status)

    async def search_schedules(self, request: Request) -> Response:
        limit = _query_int(request, "limit", 100, 1, 1000)
        cursor = decode_cursor(request.query_params.get("cursor"))
        found, nxt = await self.call(self.engine.search_schedules, request.query_params.get("id") or None,
                                     limit, cursor)
        return _json({"schedules": [s.to_json() for s in found], "cursor": encode_cursor(nxt)})

    async def get_schedule(self, request: Request) -> Response:
        schedule = await self.call(self.engine.get_schedule, _path_id(request))
        return _json(schedule.to_json())

    async def delete_schedule(self, request: Request) -> Response:
        await self.call(self.engine.delete_schedule, _path_id(request))
        return Response(status_code=204)

    # -- extensions under /v1 ---------------------------------------------------------------------
    async def status(self, request: Request) -> Response:
        stats = await self.call(self.engine.stats)
        cfg = self.config
        return _json({
            "version": __version__,
            "pid": os.getpid(),
            "socket": cfg.socket,
            "db": cfg.db,
            "http": f"{cfg.http[0]}:{cfg.http[1]}" if cfg.http else None,
            "pollPort": cfg.poll_port,
            "promises": stats["promises"],
            "tasks": stats["tasks"],
            "workers": self.dispatcher.workers(),
        })

    async def search_tasks(self, request: Request) -> Response:
        states: tuple[str, ...] | None = None
        text = request.query_params.get("state")
        if text:
            states = tuple(s.strip().upper() for s in text.split(",") if s.strip())
            unknown = [s for s in states if s not in TASK_STATES + ("TIMEDOUT",)]
            if unknown:
                raise _bad(f"query parameter 'state' has unknown task states {unknown}")
        limit = _query_int(request, "limit", 100, 1, 1000)
        tasks = await self.call(self.engine.search_tasks, states, limit)
        return _json({"tasks": [t.to_json() for t in tasks]})

    async def create_and_subscribe(self, request: Request) -> Response:
        # A client's rpc in one request: POST /promises then POST /promises/subscribe, in one thread hop.
        body = await self.body(request)
        promise, sub = _obj(body, "promise"), _obj(body, "subscription")
        args = (_str(promise, "id"), _int(promise, "timeout"), _value(promise, "param"), _tags(promise))
        ikey, strict = _ikey(request), _strict(request)
        sub_args = (_str(sub, "id"), _int(sub, "timeout"), _str(sub, "recv"))

        def both() -> tuple[Any, Any]:
            created = self.engine.create_promise(*args, idempotency_key=ikey, strict=strict)
            if not created.promise.pending:
                return created, None
            return created, self.engine.create_subscription(created.promise.id, *sub_args)

        created, reg = await self.call(both)
        promise_json = (reg.promise if reg is not None else created.promise).to_json()
        callback = reg.callback.to_json() if reg is not None and reg.callback is not None else None
        return _json({"promise": promise_json, "callback": callback}, created.status)

    async def settle_step(self, request: Request) -> Response:
        # A local step that already ran in a worker: create its promise completed, one request and one
        # transaction instead of create + complete (the engine's create_and_complete, as local mode).
        body = await self.body(request)
        state = _str(body, "state").upper()
        if state not in ("RESOLVED", "REJECTED"):
            raise _bad(f"state must be RESOLVED or REJECTED, not {state!r}")
        promise = await self.call(
            self.engine.create_and_complete, _str(body, "id"), _int(body, "timeout"), _value(body, "param"),
            _tags(body), _value(body, "value"), state)
        return _json(promise.to_json())

    async def descendants(self, request: Request) -> Response:
        # Every promise of a call graph in one request, so that a replay in a worker looks its local
        # steps up in memory instead of paying a round trip per replayed step.
        root = _path_id(request)
        found = await self.call(self.engine.read, lambda: self.engine.store.promises_of_root(root))
        return _json({"promises": [p.to_json() for p in found.values()]})

    async def children(self, request: Request) -> Response:
        id = _path_id(request)
        await self.call(self.engine.get_promise, id)  # 404 for an unknown parent
        kids = await self.call(self.engine.children_of, id)
        return _json({"promises": [p.to_json() for p in kids]})

    async def callbacks(self, request: Request) -> Response:
        id = _path_id(request)
        await self.call(self.engine.get_promise, id)
        cbs = await self.call(self.engine.callbacks_on, id)
        return _json({"callbacks": [dict(cb.to_json(), kind=cb.kind) for cb in cbs]})


# -- errors, auth, app ---------------------------------------------------------------------------

def error_response(exc: errors.ResonateError) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=exc.status)


def guarded(fn: Handler) -> Handler:
    """Turn every exception into the error shape: a request can fail, the daemon cannot."""

    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request)
        except errors.ResonateError as exc:
            return error_response(exc)
        except Exception:
            log.exception("internal error in %s %s", request.method, request.url.path)
            # 500 exactly: the only status official 0.6.x clients retry.
            return error_response(errors.ResonateError("internal error; see the daemon log"))

    endpoint.__name__ = fn.__name__
    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": {"code": exc.status_code * 100, "message": exc.detail}},
                        status_code=exc.status_code, headers=exc.headers)


class TokenAuth:
    """Requires the token on TCP listeners: ``Bearer T``, or HTTP basic with T as the password (any user;
    official SDKs can only send basic auth). The Unix socket has no such layer: its 0600 mode is the check.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._ok(scope):
            await self.app(scope, receive, send)
            return
        exc = errors.Unauthorized("missing or wrong token: send 'Authorization: Bearer <token>' "
                                  "or basic auth with the token as the password")
        response = error_response(exc)
        response.headers["www-authenticate"] = 'Basic realm="resonate"'
        await response(scope, receive, send)

    def _ok(self, scope: Scope) -> bool:
        header = b""
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                header = value
                break
        scheme, _, cred = header.partition(b" ")
        given = b""
        if scheme.lower() == b"bearer":
            given = cred.strip()
        elif scheme.lower() == b"basic":
            try:
                _, _, given = base64.b64decode(cred.strip(), validate=True).partition(b":")
            except (binascii.Error, ValueError):
                return False
        return bool(given) and hmac.compare_digest(given, self.token)


def create_app(state: AppState, *, token: str | None = None, legacy_poll_only: bool = False) -> ASGIApp:
    """The API app (``legacy_poll_only``: just ``GET /{group}/{pid}``, for ``--poll-port``)."""
    api = Api(state)

    def route(path: str, fn: Handler, methods: list[str]) -> Route:
        return Route(path, guarded(fn), methods=methods)

    if legacy_poll_only:
        routes = [route("/{group}/{pid}", api.poll_legacy, ["GET"])]
    else:
        routes = [
            route("/ping", api.ping, ["GET"]),
            route("/promises", api.create_promise, ["POST"]),
            route("/promises", api.search_promises, ["GET"]),
            route("/promises/task", api.create_promise_and_task, ["POST"]),
            route("/promises/callback/{id:path}", api.create_callback, ["POST"]),
            route("/promises/subscribe/{id:path}", api.create_subscription, ["POST"]),
            route("/promises/{id:path}", api.get_promise, ["GET"]),
            route("/promises/{id:path}", api.complete_promise, ["PATCH"]),
            route("/tasks/claim", api.claim_task, ["POST"]),
            route("/tasks/complete", api.complete_task, ["POST"]),
            route("/tasks/drop", api.drop_task, ["POST"]),
            route("/tasks/heartbeat", api.heartbeat, ["POST"]),
            route("/schedules", api.create_schedule, ["POST"]),
            route("/schedules", api.search_schedules, ["GET"]),
            route("/schedules/{id:path}", api.get_schedule, ["GET"]),
            route("/schedules/{id:path}", api.delete_schedule, ["DELETE"]),
            route("/poll/{group}/{pid}", api.poll, ["GET"]),
            route("/v1/status", api.status, ["GET"]),
            route("/v1/tasks", api.search_tasks, ["GET"]),
            route("/v1/promises/settled", api.settle_step, ["POST"]),
            route("/v1/promises/subscribed", api.create_and_subscribe, ["POST"]),
            route("/v1/promises/{id:path}/descendants", api.descendants, ["GET"]),
            route("/v1/promises/{id:path}/children", api.children, ["GET"]),
            route("/v1/promises/{id:path}/callbacks", api.callbacks, ["GET"]),
        ]
    app: ASGIApp = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    if token:
        app = TokenAuth(app, token)
    return app
