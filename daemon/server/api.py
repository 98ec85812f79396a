"""The daemon's HTTP API (PROTOCOL.md): a starlette app whose routes are the protocol's operations.

Each route is one ``Op`` class of ``resonate_daemon.protocol``: the body is read (bounded) and parsed
as JSON here, the op parses and validates the request, the engine carries it out on the event loop's
thread, and the op encodes the answer. Every failure becomes the legacy error shape
``{"error": {"code", "message"}}`` with status ``code // 100``: bad input is a 400, never a 500, and no
request can take the daemon down. Only the push stream, ``/ping`` and the status are written here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import errors
from ..core.engine import Engine
from ..paths import display_db
from ..protocol import OPS, CollectGarbage, GetPromise, GetStatus, Incoming, Op, SearchPromises
from ..protocol.records import Promise, decode_cursor, encode_cursor, parse_address
from ..protocol.results import Collected, Page, Status
from ..protocol.wire import FENCE_HEADER, NOW_HEADER, parse_fence, poll_functions, poll_lease
from ..store.search import Reader
from .batch import Batcher, collect
from .config import ServeConfig
from .dispatch import Dispatcher, PushStream, WatchStream
from .fast import FastOps, _fenced, parse_json_body

log = logging.getLogger("resonate.api")

Handler = Callable[[Request], Awaitable[Response]]



@dataclass(frozen=True, slots=True)
class AppState:
    engine: Engine
    dispatcher: Dispatcher
    config: ServeConfig
    batch: Batcher  # every engine call of a request goes through it (group commit)
    reader: Reader | None = None  # searches run there, off the loop (None: in the loop, as every op)


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
    return parse_json_body(b"".join(chunks))



class Api:
    """The endpoints; one instance per listener, sharing the engine and dispatcher with its siblings."""

    def __init__(self, state: AppState) -> None:
        self.engine = state.engine
        self.dispatcher = state.dispatcher
        self.config = state.config
        self.reader = state.reader
        self.batch = state.batch

    def handler(self, op: type[Op[Any]]) -> Handler:
        """The endpoint of one operation. The engine runs on the event loop's own thread, not a pool
        thread: its calls take tens to hundreds of µs and the hop to a pool thread and back cost a GIL
        hand-off each way (measured: 3-8 ms per request under load with the pool, about 1 ms without).
        It runs in the next group commit (``batch.py``): the answer goes out once that is durable."""
        engine, limit, batch = self.engine, self.config.max_body, self.batch

        async def endpoint(request: Request) -> Response:
            body = await read_json(request, limit) if op.BODY else {}
            parsed = op.parse(Incoming(request.path_params, request.query_params.multi_items(), request.headers,
                                       body))
            fence = parse_fence(request.headers.get(FENCE_HEADER))
            if isinstance(parsed, CollectGarbage):
                status, payload = parsed.respond(await self._collect(parsed, fence))
            elif isinstance(parsed, SearchPromises) and self.reader is not None:
                status, payload = parsed.respond(await self._search(parsed, self.reader))
            else:
                status, payload = parsed.respond(await batch.call(lambda: _fenced(engine, parsed, fence)))
            now = {NOW_HEADER: str(engine.clock.now())}
            if payload is None:
                return Response(status_code=status, headers=now)
            return JSONResponse(payload, status_code=status, headers=now)

        endpoint.__name__ = op.__name__
        return endpoint

    async def _collect(self, op: CollectGarbage, fence: tuple[str, int] | None) -> Collected:
        """A collection runs batch by batch, letting other requests in between (one could take seconds)."""
        if fence is not None:
            await self.batch.call(lambda: self.engine.check_fence(*fence))
        return await collect(self.engine, self.batch, op.older_than, op.dry_run)

    async def _search(self, op: SearchPromises, reader: Reader) -> Page[Promise]:
        return await search_off_loop(self.engine, self.batch, reader, op)

    async def ping(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def status(self, request: Request) -> Response:
        return JSONResponse(daemon_status(self.engine, self.dispatcher, self.config).to_json())

    async def poll(self, request: Request) -> Response:
        return self._stream(request, release_on_close=True)

    async def poll_legacy(self, request: Request) -> Response:
        return self._stream(request, release_on_close=False)

    async def watch(self, request: Request) -> Any:
        """Server-sent events as the call graph under a promise changes (404 if there is no such promise)."""
        op = GetPromise.parse(Incoming(request.path_params, request.query_params.multi_items(), request.headers, {}))
        op.run(self.engine)
        return WatchStream(self.engine, op.id, self.dispatcher.ping_interval_s)

    def _stream(self, request: Request, *, release_on_close: bool) -> Any:
        group, pid = request.path_params["group"], request.path_params["pid"]
        for what, value in (("group", group), ("process id", pid)):
            if not value or len(value) > 1024 or any(ord(c) < 32 for c in value):
                raise errors.InvalidRequest(f"invalid {what} {value!r}")
        incoming = Incoming(query=request.query_params.multi_items())
        functions = poll_functions(incoming)
        lease = poll_lease(incoming) if release_on_close else None
        return PushStream(self.dispatcher, group, pid, release_on_close=release_on_close, functions=functions,
                          lease_ms=lease)


async def search_off_loop(engine: Engine, batch: Batcher, reader: Reader, op: SearchPromises) -> Page[Promise]:
    """Due timeouts are applied here on the loop (a search never shows an overdue promise as pending);
    the scan itself runs on the reader's connection in its thread, so a search over a million rows
    does not hold up anyone else's request."""
    await batch.call(engine.tick)
    cursor = decode_cursor(op.cursor)
    found, nxt = await asyncio.get_running_loop().run_in_executor(
        reader.pool, reader.search_promises, op.id, op.states, op.tags or None, op.limit, cursor)
    return Page(found, encode_cursor(nxt))


def daemon_status(engine: Engine, dispatcher: Dispatcher, cfg: ServeConfig) -> Status:
    """The daemon's status (``GET /v1/status``, ``resonate status``, the UI's status page): the engine's
    counts, where it listens, and who is connected."""
    waiting: dict[tuple[str, str, int], int] = {}
    for msg in engine.dispatchable():  # INIT tasks that may go out: who could take them?
        if msg.task is not None and not dispatcher.routable(msg):
            key = (parse_address(msg.recv).group, msg.task.func or "?", msg.task.version)
            waiting[key] = waiting.get(key, 0) + 1
    return replace(engine.get_status(GetStatus()), mode="daemon", pid=os.getpid(), socket=cfg.socket,
                   db=display_db(cfg.db), http=f"{cfg.http[0]}:{cfg.http[1]}" if cfg.http else None,
                   poll_port=cfg.poll_port, workers=dispatcher.workers(), functions=dispatcher.functions(),
                   waiting=[{"group": g, "func": f, "version": v, "tasks": n} for (g, f, v), n in sorted(waiting.items())],
                   ui=f"{'https' if cfg.tls else 'http'}://127.0.0.1:{cfg.ui_port}/ui/" if cfg.ui_port is not None else None)


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
        return token_ok(scope, self.token)


def token_ok(scope: Scope, token: bytes) -> bool:
    """Does the request carry the token (``Bearer T``, or basic auth with T as the password)?"""
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
    return bool(given) and hmac.compare_digest(given, token)


# The browser UI (the separate ``resonate_ui`` package, handed in by whoever starts the daemon: the daemon
# never imports it). Given the shared state and the listener's token (None on the Unix socket), it returns
# the ASGI app served under /ui; it checks the token itself, since a browser sends a cookie, not a header.
UiFactory = Callable[[AppState, "str | None"], ASGIApp]


class _UiSplit:
    """/ui and below go to the UI app (which does its own auth), everything else to the API."""

    def __init__(self, api: ASGIApp, ui: ASGIApp) -> None:
        self.api = api
        self.ui = ui

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/ui" or path.startswith("/ui/")):
            await self.ui(dict(scope, root_path=scope.get("root_path", "") + "/ui"), receive, send)
        else:
            await self.api(scope, receive, send)


async def _to_ui(request: Request) -> Response:
    return RedirectResponse("/ui/", status_code=303)


def create_app(state: AppState, *, token: str | None = None, legacy_poll_only: bool = False,
               ui: UiFactory | None = None, ui_only: bool = False) -> ASGIApp:
    """The API app (``legacy_poll_only``: just ``GET /{group}/{pid}``, for ``--poll-port``), with the UI
    under /ui when ``ui`` is given (``ui_only``: nothing else, for ``--ui-port``; / leads to /ui/)."""
    api = Api(state)

    def route(path: str, fn: Handler, methods: list[str]) -> Route:
        return Route(path, guarded(fn), methods=methods)

    if ui_only:
        routes = [Route("/", _to_ui, methods=["GET"])]
    elif legacy_poll_only:
        routes = [route("/{group}/{pid}", api.poll_legacy, ["GET"])]
    else:
        routes = [route("/ping", api.ping, ["GET"]), route("/poll/{group}/{pid}", api.poll, ["GET"]),
                  route(GetStatus.ROUTE, api.status, [GetStatus.METHOD]),
                  route("/v1/promises/{id:path}/watch", api.watch, ["GET"])]
        routes += [route(op.ROUTE, api.handler(op), [op.METHOD]) for op in OPS if op is not GetStatus]
    app: ASGIApp = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    if not ui_only and not legacy_poll_only:
        app = FastOps(app, state)  # the hot operations, without starlette's layers (fast.py)
    if token and not ui_only:  # ui_only: a redirect to /ui/, which checks the token itself
        app = TokenAuth(app, token)
    if ui is not None and not legacy_poll_only:
        app = _UiSplit(app, ui(state, token))
    return app

