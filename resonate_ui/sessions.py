"""Who may see the UI and who may act through it: browser sessions, their expiry, logout, and the checks on
every action.

- On the Unix socket the listener's peer check (same uid, or root) is the authorisation: no token, no
  session, nothing to log out of.
- On TCP (``--http``, ``--ui-port``) the daemon's API token is required. Scripts send it in a header
  (``Authorization: Bearer T``). A browser brings it once, in the address ``resonate ui`` prints
  (``/ui/login?token=T``): the login answers with a redirect to a clean address (the token leaves the
  address bar, and ``Referrer-Policy: no-referrer`` keeps it out of any Referer) and a cookie holding a
  random session id, never the token: HttpOnly, SameSite=Strict, Path=/ui, and Secure when the listener
  speaks TLS. A session ends after ``IDLE_S`` without a request, ``ABSOLUTE_S`` after its login, on
  logout, or when the daemon stops (sessions live in its memory only).
- Actions are POST forms, refused unless they carry the CSRF token of the session that rendered them (an
  HMAC of its id under this process's secret) and the browser does not send them cross-site
  (``Sec-Fetch-Site``, ``Origin``); and always refused in read-only mode.

Example (a fake clock, as the tests use)::

    sessions = Sessions(clock=lambda: now[0])
    s = sessions.open()
    sessions.get(s.id)      # the session, seen again now
    sessions.close(s.id)    # logged out: get() returns None
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from resonate_daemon.server.api import token_ok
from starlette.requests import Request

COOKIE = "resonate_ui"
IDLE_S = 2 * 3600  # a tab left alone this long must log in again (`resonate ui`): a machine left unlocked
ABSOLUTE_S = 24 * 3600  # however busy, a login lasts a working day: a stolen cookie does not last forever
MAX_SESSIONS = 1000  # logins kept; past it the least recently used goes (a login loop cannot fill memory)


@dataclass
class Session:
    id: str
    csrf: str
    started: float
    seen: float


@dataclass(frozen=True)
class Viewer:
    """Who is looking: a browser session, or a caller the listener itself vouches for (socket, token)."""

    csrf: str
    session: str | None = None  # the browser's session id (None: nothing to log out of)


class Sessions:
    """The browser sessions of one listener, in memory, with idle and absolute expiry."""

    def __init__(self, idle_s: float = IDLE_S, absolute_s: float = ABSOLUTE_S, limit: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self.absolute_s = absolute_s
        self.limit = limit
        self.clock = clock
        self.secret = secrets.token_bytes(32)  # this process's: a restart ends every session and form
        self._live: OrderedDict[str, Session] = OrderedDict()

    def csrf_for(self, name: str) -> str:
        return hmac.new(self.secret, b"resonate-ui csrf " + name.encode(), hashlib.sha256).hexdigest()

    def open(self) -> Session:
        now = self.clock()
        sid = secrets.token_urlsafe(32)
        session = Session(sid, self.csrf_for("session " + sid), now, now)
        self._live[sid] = session
        while len(self._live) > self.limit:
            self._live.popitem(last=False)
        return session

    def get(self, sid: str, *, touch: bool = True) -> Session | None:
        """The live session ``sid`` names, seen now (``touch``), or None: unknown, idle too long, too old."""
        session = self._live.get(sid) if sid else None
        if session is None:
            return None
        now = self.clock()
        if now - session.seen > self.idle_s or now - session.started > self.absolute_s:
            del self._live[sid]
            return None
        if touch:
            session.seen = now
            self._live.move_to_end(sid)
        return session

    def close(self, sid: str) -> None:
        self._live.pop(sid, None)

    def __len__(self) -> int:
        return len(self._live)


class Guard:
    """Who may see the UI and who may act through it (see the module's docstring)."""

    def __init__(self, token: str | None, read_only: bool, sessions: Sessions | None = None) -> None:
        self.token = token.encode() if token else None
        self.read_only = read_only
        self.sessions = sessions if sessions is not None else Sessions()  # (an empty one is falsy)

    def viewer(self, request: Request) -> Viewer | None:
        """Who makes this request, or None: it may not see the UI."""
        if self.token is None:
            return Viewer(self.sessions.csrf_for("socket"))  # the Unix socket: only our uid got this far
        if token_ok(request.scope, self.token):
            return Viewer(self.sessions.csrf_for("token"))
        session = self.sessions.get(request.cookies.get(COOKIE, ""))
        return Viewer(session.csrf, session.id) if session is not None else None

    def alive(self, viewer: Viewer) -> bool:
        """Is the viewer's session still open (a live stream ends when it is not)? Does not extend it."""
        return viewer.session is None or self.sessions.get(viewer.session, touch=False) is not None

    def login(self, given: str) -> Session | None:
        """A new session for the right token, else None."""
        if self.token is None or not given or not hmac.compare_digest(given.encode(), self.token):
            return None
        return self.sessions.open()

    def logout(self, viewer: Viewer) -> None:
        if viewer.session is not None:
            self.sessions.close(viewer.session)

    def may_act(self, request: Request, viewer: Viewer, form_csrf: str, *, changes: bool = True) -> str | None:
        """Why this POST is refused, or None. Every check, whatever the listener (``changes``: it writes
        to the store, which read-only mode forbids; a logout does not)."""
        if changes and self.read_only:
            return ("this UI is read-only (the daemon runs with --ui-read-only): it shows, and never resolves, "
                    "rejects, cancels, retries or forks; use the CLI (resonate promises resolve ID --data JSON)")
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"a {site} request may not act here"
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
            return f"a request from {origin} may not act here"
        if not hmac.compare_digest(form_csrf.encode(), viewer.csrf.encode()):
            return "the form's CSRF token is missing or stale (reload the page)"
        return None
