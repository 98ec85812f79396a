"""The UI's plumbing: the daemon's engine as the SDK's transport, forms, and where an action may lead.

``EngineTransport`` runs an op on the daemon's engine (``op.run(engine)``), on the event loop's thread,
exactly as the API's routes do, so the SDK's ``Promises``/``Workflows``/``Schedules`` work unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import parse_qs, urlencode

from resonate_daemon.core.engine import Engine
from resonate_daemon.protocol import CreateAndSubscribe, Created, Op
from resonate_daemon.protocol.records import Message
from starlette.requests import Request

from resonate.transport import start_now

R = TypeVar("R")


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
        start_now(self, op, done)

    def connect(self, group: str, pid: str, on_message: Callable[[Message], None],
                functions: dict[str, list[int]] | None = None, lease_ms: int | None = None) -> None:
        raise NotImplementedError("the UI takes no tasks")

    def watch(self, id: str, notify: Callable[[], None]) -> Callable[[], None]:
        return self.engine.watch(id, notify)

    def close(self) -> None:
        pass

    def now(self) -> int:
        return self.engine.clock.now()


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


def with_params(back: str, **params: str) -> str:
    """``back`` with ``params`` added to its query (the message an action leaves for the next page)."""
    sep = "&" if "?" in back else "?"
    return back + sep + urlencode(params)
