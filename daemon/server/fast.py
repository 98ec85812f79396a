"""The daemon's hot operations, answered without starlette's layers.

A worker's requests (settle a step, fulfill or suspend a task, heartbeat) and a client's starts are most
of what the daemon serves under load, and each went through starlette's error middlewares, a linear
scan of every route's pattern, a ``Request`` and a ``JSONResponse``: a third of the loop's time per
request, measured with py-spy on W7. ``FastOps`` sits in front of the starlette app and serves the
operations whose route is a literal path (no ``{id}``), from a dict: the same ``Op`` parse, fence, group
commit, encoding and error shape as ``api.Api.handler``; anything else (and any path it does not know)
goes on to starlette unchanged.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import errors
from ..protocol import OPS, CollectGarbage, GetStatus, Incoming, Op, SearchPromises
from ..protocol.wire import FENCE_HEADER, NOW_HEADER, parse_fence

if TYPE_CHECKING:
    from .api import AppState

log = logging.getLogger("resonate.api")

# How a lone UTF-16 surrogate gets into a JSON string; json.loads lets it through, SQLite cannot encode it.
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")

# Served elsewhere: a search off the loop, a collection in steps, the status (the daemon's own view).
_SLOW = (SearchPromises, CollectGarbage, GetStatus)


class FastOps:
    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state
        self.ops: dict[tuple[str, str], type[Op[Any]]] = {
            (op.METHOD, op.ROUTE): op for op in OPS if "{" not in op.ROUTE and op not in _SLOW}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        op = self.ops.get((scope.get("method", ""), scope.get("path", ""))) if scope["type"] == "http" else None
        if op is None:
            await self.app(scope, receive, send)
            return
        engine, batch = self.state.engine, self.state.batch
        try:
            headers = Headers(scope=scope)
            body = await _read(headers, receive, self.state.config.max_body) if op.BODY else {}
            query = QueryParams(scope.get("query_string", b"")).multi_items()
            parsed = op.parse(Incoming({}, query, headers, body))
            fence = parse_fence(headers.get(FENCE_HEADER))
            status, payload = parsed.respond(await batch.call(lambda: _fenced(engine, parsed, fence)))
        except errors.ResonateError as exc:
            status, payload = exc.status, exc.to_json()
        except Exception:
            log.exception("internal error in %s %s", scope.get("method"), scope.get("path"))
            internal = errors.ResonateError("internal error; see the daemon log")  # 500: official clients retry it
            status, payload = internal.status, internal.to_json()
        out = [(NOW_HEADER.encode(), str(engine.clock.now()).encode())]
        data = b""
        if payload is not None:
            data = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
            out.append((b"content-type", b"application/json"))
        out.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": data})


def _fenced(engine: Any, op: Op[Any], fence: tuple[str, int] | None) -> Any:
    """Carry out ``op``, first checking the fence it came with: one call, so nothing comes between."""
    if fence is not None:
        engine.check_fence(*fence)
    return op.run(engine)


async def _read(headers: Headers, receive: Receive, limit: int) -> dict[str, Any]:
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise errors.PayloadTooLarge(f"request body is {length} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise errors.InvalidRequest("the client went away before its request was whole")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise errors.PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return parse_json_body(b"".join(chunks))


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or InvalidRequest."""
    if not raw.strip():
        raise errors.InvalidRequest("request body is empty; expected a JSON object")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise errors.InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise errors.InvalidRequest(f"request body must be a JSON object, not {type(body).__name__}")
    if _ESCAPED_SURROGATE.search(raw) is not None:  # rare: only then pay for a second pass
        try:
            json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise errors.InvalidRequest("request body has a string with a lone UTF-16 surrogate "
                                        "(\\ud800-\\udfff); strings must be valid Unicode") from None
        except RecursionError:
            raise errors.InvalidRequest("request body is nested too deeply") from None
    return body
