"""Connection hygiene: who may connect, how many at once, how long a request may take to arrive.

A flood of half-open TCP connections used to take every file descriptor (1,200 slowloris connections at
``nofile=1024``): the Unix socket could no longer accept, ``/ping`` hung, and asyncio logged a traceback
for every failed ``accept()`` (195 MB in 20 s). Four defences, all here:

- ``raise_nofile()`` lifts the soft ``RLIMIT_NOFILE`` to the hard limit at start;
- a ``Budget`` caps open connections below that limit, TCP lower than Unix, so room is always kept for
  the Unix socket (same-user workers and the CLI) and for the database's own files. A connection over the
  cap is closed as soon as it is accepted: the descriptor is never held;
- on TCP, a request must arrive whole within ``request_timeout`` of its first byte (or of the connection
  opening); a connection idle or half-sent past it is closed. Idle between requests, uvicorn's keep-alive
  timeout applies;
- on the Unix socket, the peer's credentials (``SO_PEERCRED``) must be our uid or root: the socket is
  0600 already, this also holds when someone loosens it;

and ``quiet_exception_handler`` says a repeated event-loop error (``accept()`` out of resources) once per
interval, with a count of the repeats, instead of a traceback each time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import time
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from .. import errors
from ..paths import peer_uid, trusted_uid

log = logging.getLogger("resonate.server")

RESERVED_FDS = 64  # the database, its WAL and shm, the log, pipes to supervised workers, the listeners
# asyncio accepts up to ``backlog`` connections per wake-up before any of them reaches connection_made
# (where the budget is checked), so a TCP listener's backlog is kept small and counted twice in its cap.
TCP_BACKLOG = 128
QUIET_INTERVAL_S = 10.0


def raise_nofile(ceiling: int = 1 << 20) -> int:
    """Lift the soft open-files limit to the hard one (at most ``ceiling``); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass  # keep the soft limit we have: the budget below is computed from it
    return ceiling if soft == resource.RLIM_INFINITY else int(soft)


class Budget:
    """Open connections per kind of listener, capped below the open-files limit.

    The Unix socket may use everything but ``RESERVED_FDS``; TCP listeners together stop an eighth of
    the limit (at least 64) lower, plus what asyncio may accept before the check (two backlogs), so a
    TCP flood always leaves the Unix socket room. At ``nofile=1024``: 576 TCP connections at most.
    """

    def __init__(self, nofile: int) -> None:
        self.unix_cap = max(8, nofile - RESERVED_FDS)
        self.tcp_cap = max(4, self.unix_cap - max(64, nofile // 8) - 2 * TCP_BACKLOG)
        self.open = 0  # all connections, Unix ones included
        self.tcp = 0
        self.refused = 0

    def admit(self, tcp: bool) -> bool:
        if self.open >= self.unix_cap or (tcp and self.tcp >= self.tcp_cap):
            self.refused += 1
            return False
        self.open += 1
        self.tcp += tcp
        return True

    def release(self, tcp: bool) -> None:
        self.open -= 1
        self.tcp -= tcp


def _forbidden(message: str) -> bytes:
    """The whole HTTP answer for a refused peer, in the API's error shape (written before uvicorn sees it)."""
    exc = errors.Forbidden(message)
    body = json.dumps(exc.to_json()).encode()
    head = (f"HTTP/1.1 {exc.status} Forbidden\r\ncontent-type: application/json\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n")
    return head.encode() + body


if TYPE_CHECKING:
    _Protocol = H11Protocol  # what Guarded is mixed into (its attributes and the methods it extends)
else:
    _Protocol = object


class Guarded(_Protocol):
    """Mixed into one of uvicorn's HTTP/1.1 protocols: admitted by a ``Budget``, with a request deadline on
    TCP and a peer check on Unix sockets. ``protocol_for`` makes one subclass per listener with these set."""

    budget: Budget
    tcp: bool
    request_timeout: float

    _admitted = False
    _refused = False
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self.tcp:
            sock = transport.get_extra_info("socket")
            uid = peer_uid(sock) if sock is not None else None
            if not trusted_uid(uid):
                log.warning("refused a connection on the Unix socket from uid %s (only uid %d, or root, may "
                            "use this daemon)", uid, os.geteuid())
                transport.write(_forbidden(f"this daemon belongs to uid {os.geteuid()}; uid {uid} may not use it"))
                # Half-close and let the client read the answer: closing with its request unread would
                # reset the connection and lose the 403. Whatever it sends is dropped; gone in 1 s at most.
                transport.write_eof()
                self.transport = transport
                self._refused = True
                self.loop.call_later(1.0, transport.abort)
                return
        if not self.budget.admit(self.tcp):
            transport.abort()  # over the cap: give the descriptor back at once, send nothing
            return
        self._admitted = True
        super().connection_made(transport)
        if self.tcp:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self.budget.release(self.tcp)
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if not self.tcp or not self._admitted:
            return
        cycle = self.cycle
        arrived = cycle is not None and not cycle.response_complete and not cycle.more_body
        if arrived:
            self._disarm()  # the whole request is in: the app may take as long as it needs
        elif self._deadline is None:
            self._arm()  # the first bytes of a new request on a kept-alive connection

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.request_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            return  # it arrived in the meantime (data_received disarms; this is the race's other side)
        if not self.transport.is_closing():
            self.transport.abort()


def _base() -> type[Any]:
    """httptools' parser (C) when installed: a third of the daemon's time per request went to h11's pure
    Python parsing and writing; h11 otherwise (the same behaviour, slower)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return H11Protocol
    return HttpToolsProtocol


def protocol_for(budget: Budget, *, tcp: bool, request_timeout: float, base: type[Any] | None = None) -> type[Any]:
    return type("TcpProtocol" if tcp else "UnixProtocol", (Guarded, base or _base()),
                {"budget": budget, "tcp": tcp, "request_timeout": request_timeout})


class quiet_exception_handler:  # noqa: N801 (used like a function: loop.set_exception_handler(...))
    """An event-loop exception handler that says each kind of error once per interval, with its repeats.

    asyncio logs a failed ``accept()`` (EMFILE) with its traceback every time it retries; under a flood
    that filled a disk. The first of a kind is logged in full, then one line per interval.
    """

    def __init__(self, interval: float = QUIET_INTERVAL_S, clock: Any = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.seen: dict[str, tuple[float, int]] = {}  # message -> (last logged at, repeats since)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", "event loop error"))
        exc = context.get("exception")
        key = f"{message}|{type(exc).__name__}:{getattr(exc, 'errno', '')}"
        now = self.clock()
        last = self.seen.get(key)
        if last is None:
            self.seen[key] = (now, 0)
            loop.default_exception_handler(context)
            return
        at, repeats = last
        if now - at < self.interval:
            self.seen[key] = (at, repeats + 1)
            return
        self.seen[key] = (now, 0)
        log.error("%s (%s), %d more time(s) in the last %.0f s", message, exc, repeats + 1, now - at)
