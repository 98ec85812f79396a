"""How the SDK reaches a promise store: one protocol, two transports.

``Transport.call(op)`` carries out any operation of ``resonate_daemon.protocol`` and returns its result,
or raises the error from ``resonate.errors`` the store answered: ``LocalTransport`` runs the engine in
this process (``resonate.local``), ``RemoteTransport`` sends the op to a daemon (``resonate.remote``).
Every capability is an op, so both have all of them; one contract test runs against each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from resonate_daemon.protocol import CreateAndSubscribe, Created, Op
from resonate_daemon.protocol.records import Message

R = TypeVar("R")

OnMessage = Callable[[Message], None]


class Transport(Protocol):
    # True when the store is in this process (local mode): no other worker exists to run anything, so a
    # call of a function this process lacks fails at once instead of waiting for one.
    in_process: bool

    @property
    def where(self) -> str:
        """Where the store is, for people: a database file, a socket path or a URL."""
        ...

    def call(self, op: Op[R], fence: tuple[str, int] | None = None) -> R:
        """Carry out one operation; with ``fence`` (task id, counter), only if that task is still held at
        that counter (``TaskFenced`` otherwise), checked atomically with the operation."""
        ...

    def start_soon(self, op: CreateAndSubscribe, done: Callable[[Created | BaseException], None]) -> None:
        """Carry out a start now or soon (a daemon: in the background, batched with others) and hand its
        answer or error to ``done``; no later call of this transport overtakes it."""
        ...

    def connect(self, group: str, pid: str, on_message: OnMessage,
                functions: dict[str, list[int]] | None = None, lease_ms: int | None = None) -> None:
        """Receive the messages for ``group``/``pid`` (tasks, notifications) until ``close``; a daemon
        sends only tasks of the ``functions`` announced (name -> versions; None: any), and with
        ``lease_ms`` sends them claimed for ``pid`` (``Message.claimed``; a transport may ignore it)."""
        ...

    def watch(self, id: str, notify: Callable[[], None]) -> Callable[[], None]:
        """Call ``notify`` (on another thread) whenever the call graph under ``id`` changes, until the
        returned function is called. ``notify`` is a wake-up, not data: read the tree again."""
        ...

    def close(self) -> None: ...

    def now(self) -> int:
        """The store's clock in ms (the engine's injected clock in local mode), so deadlines agree."""
        ...


def find(transport: Transport, op: Any) -> Any:
    """``transport.call(op)``, or None where the store answers PromiseNotFound."""
    from resonate_daemon.errors import PromiseNotFound

    try:
        return transport.call(op)
    except PromiseNotFound:
        return None


def start_now(transport: Transport, op: CreateAndSubscribe, done: Callable[[Created | BaseException], None]) -> None:
    """``start_soon`` for a transport with no round trip to save: the start now, its answer to ``done``."""
    try:
        created = transport.call(op)
    except Exception as exc:
        done(exc)
    else:
        done(created)
