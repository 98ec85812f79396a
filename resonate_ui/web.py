"""What every UI page shares: the engine as a transport, who may look and act, and values as text.

- ``EngineTransport`` runs an op on the daemon's engine (``op.run(engine)``), on the event loop's thread,
  exactly as the API's routes do, so the SDK's ``Promises``/``Workflows``/``Schedules`` work unchanged.
- ``Guard``: on the Unix socket, the listener's peer check (same uid) is the authorisation. On TCP (``--http``,
  ``--ui-port``) the API's token is required: in a header (scripts), or once at ``/ui/login?token=T``,
  which sets an HttpOnly, SameSite=Strict cookie holding this daemon process's random session id (a
  restart logs browsers out; the token itself is never stored in the browser).
- Actions are POST forms, refused unless they carry the session's CSRF token (an HMAC of the session id)
  and the browser does not call them cross-site (``Sec-Fetch-Site``, ``Origin``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit

from resonate_daemon.core.engine import Engine
from resonate_daemon.protocol import CreateAndSubscribe, Created, Op
from resonate_daemon.protocol.records import Message, Promise, Value
from resonate_daemon.server.api import token_ok
from starlette.requests import Request

from resonate import codec

R = TypeVar("R")
COOKIE = "resonate_ui"


class EngineTransport:
    """The SDK's ``Transport`` over the daemon's own engine (no socket: the UI runs inside the daemon)."""

    in_process = True

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def where(self) -> str:
        return "the daemon"

    def call(self, op: Op[R], fence: tuple[str, int] | None = None) -> R:
        return op.run(self.engine)

    def start_soon(self, op: CreateAndSubscribe, done: Callable[[Created | BaseException], None]) -> None:
        try:
            created = op.run(self.engine)
        except Exception as exc:
            done(exc)
        else:
            done(created)

    def connect(self, group: str, pid: str, on_message: Callable[[Message], None],
                functions: dict[str, list[int]] | None = None, lease_ms: int | None = None) -> None:
        raise NotImplementedError("the UI takes no tasks")

    def watch(self, id: str, notify: Callable[[], None]) -> Callable[[], None]:
        return self.engine.watch(id, notify)

    def close(self) -> None:
        pass

    def now(self) -> int:
        return self.engine.clock.now()


class Guard:
    """Who may see the UI and who may act through it (see the module's docstring)."""

    def __init__(self, token: str | None, read_only: bool) -> None:
        self.token = token.encode() if token else None
        self.read_only = read_only
        self.session = secrets.token_urlsafe(32)  # this process's browsers; never derived from the token
        self.csrf = hmac.new(self.session.encode(), b"resonate-ui csrf", hashlib.sha256).hexdigest()

    def allowed(self, request: Request) -> bool:
        if self.token is None:
            return True  # the Unix socket: only our uid (or root) got this far
        if token_ok(request.scope, self.token):
            return True
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), self.session.encode())

    def login(self, given: str) -> bool:
        return self.token is not None and bool(given) and hmac.compare_digest(given.encode(), self.token)

    def may_act(self, request: Request, form_csrf: str) -> str | None:
        """Why this POST is refused, or None. Every check, whatever the listener."""
        if self.read_only:
            return "this UI is read-only (serve --ui-read-only)"
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"a {site} request may not act here"
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
            return f"a request from {origin} may not act here"
        if not hmac.compare_digest(form_csrf.encode(), self.csrf.encode()):
            return "the form's CSRF token is missing or stale (reload the page)"
        return None


# -- values as people read them -----------------------------------------------------------------

def value_text(value: Value) -> str:
    """A stored value as indented JSON text (what the data holds; typed values keep their tags)."""
    if value.data is None:
        return ""
    data = value.json()
    if isinstance(data, str):
        return data
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True)


def invocation(p: Promise) -> tuple[str, str]:
    """The function an invoked promise runs and its arguments as JSON text."""
    try:
        func, args, kwargs, _ = codec.decode_param(p.param)
    except Exception:
        return p.tags.get("resonate:func", ""), value_text(p.param)
    shown: Any = args if not kwargs else {"args": args, "kwargs": kwargs}
    try:
        return func, json.dumps(shown, indent=2, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        return func, repr(shown)


def check_json(text: str) -> str | None:
    """Why ``text`` is not JSON, or None (empty text means no data)."""
    if not text.strip():
        return None
    try:
        json.loads(text)
    except ValueError as exc:
        return f"not valid JSON: {exc}"
    return None


def login_url(ui: str, token: str) -> str:
    """The address ``resonate ui`` prints: the UI's login, which sets the session cookie and goes to /ui/."""
    return f"{ui}login?{urlencode({'token': token})}"


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """An urlencoded form body (what our forms send), read up to ``limit`` bytes; last value of each field.
    Parsed here rather than with starlette's ``request.form()``, which needs python-multipart."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ValueError(f"the form is over the limit of {limit} bytes")
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def safe_back(back: str) -> str:
    """Where to go after an action: a page of this UI, never another site."""
    return back if back.startswith("/ui/") and not back.startswith("//") else "/ui/"
