"""Local mode: the engine and a SQLite store in this process (``Resonate.local()``), no sockets.

Imported only when local mode is used, so a remote worker's ``import resonate`` loads no engine, store
or peewee. The engine is not thread-safe; this transport serialises every caller (the user's threads,
the runtime's workers, the timer thread) under one lock and delivers the messages an operation
produced after releasing it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from resonate_daemon import errors
from resonate_daemon.clock import Clock
from resonate_daemon.core.engine import Engine
from resonate_daemon.paths import display_db, is_db_url
from resonate_daemon.protocol import CreateAndSubscribe, Created, Op
from resonate_daemon.protocol.records import Message
from resonate_daemon.store import open_store

from .transport import OnMessage, start_now

log = logging.getLogger("resonate")
R = TypeVar("R")

IDLE_WAIT_S = 3600.0
READ_ONLY_POLL_S = 0.1  # how often a read-only watcher looks for another process's commits
RETRY_AFTER_MS = 1000


class LocalTransport:
    """The engine in this process, on SQLite in memory or in a file (locked to this process)."""

    in_process = True

    def __init__(self, path: str | None = None, *, durability: str = "full", clock: Clock | None = None,
                 read_only: bool = False) -> None:
        self.path = (path if is_db_url(path) else os.path.abspath(path)) if path else ":memory:"
        self.read_only = read_only
        self.store = open_store(self.path, durability, read_only=read_only)
        self._lock = threading.RLock()
        self._produced: list[Message] = []
        self.engine = Engine(self.store, clock, sink=self._produced.extend)
        # This process holds the file alone (the store locked it), so whatever was claimed or sent when
        # we opened it belonged to a process that died: give it back to be run again. Nobody listens
        # yet: what it would send goes out when the runtime connects (``dispatchable``).
        if not read_only:
            self.engine.release_all()
        self._produced.clear()
        self._on_message: OnMessage | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._timers: threading.Thread | None = None
        self.engine.wake = self._wake.set

    @property
    def where(self) -> str:
        return display_db(self.path)

    def _refuse(self, what: str) -> errors.StoreLocked:
        return errors.StoreLocked(f"{self.where} is open read-only here: another process holds it (it runs "
                                  f"workflows on it), so {what} must wait until that process ends; or run a daemon "
                                  "(resonate serve) and let every process go through it")

    def start_soon(self, op: CreateAndSubscribe, done: Callable[[Created | BaseException], None]) -> None:
        start_now(self, op, done)

    def call(self, op: Op[R], fence: tuple[str, int] | None = None) -> R:
        if self.read_only and op.METHOD != "GET":  # type: ignore[attr-defined]
            raise self._refuse(f"{type(op).__name__} (a write)")
        messages: list[Message] = []
        try:
            with self._lock:
                try:
                    if fence is not None:
                        self.engine.check_fence(*fence)
                    return op.run(self.engine)
                finally:
                    messages = self._take()
        finally:
            self._deliver(messages)

    def tick(self) -> int | None:
        """Apply every deadline that has passed now (the timer thread does this by itself; tests with a
        manual clock call it after moving the clock)."""
        messages: list[Message] = []
        try:
            with self._lock:
                try:
                    return self.engine.tick()
                finally:
                    messages = self._take()
        finally:
            self._deliver(messages)

    def _take(self) -> list[Message]:
        if not self._produced:
            return []
        messages = list(self._produced)
        self._produced.clear()
        return messages

    def _deliver(self, messages: list[Message]) -> None:
        handler = self._on_message
        if handler is None:
            return  # nobody listens yet; INIT tasks are sent by dispatchable() on connect
        for m in messages:
            handler(m)

    def connect(self, group: str, pid: str, on_message: OnMessage,
                functions: dict[str, list[int]] | None = None, lease_ms: int | None = None) -> None:
        if self.read_only:
            raise self._refuse("running functions")
        # One process: every message is ours, whatever it is addressed to (the runtime leaves alone a
        # task for a function it lacks: it waits, durably, for a run that has it).
        with self._lock:
            self._on_message = on_message
            backlog = self.engine.dispatchable()
        if self._timers is None:
            self._timers = threading.Thread(target=self._run_timers, name="resonate-timers", daemon=True)
            self._timers.start()
        for m in backlog:
            on_message(m)

    def watch(self, id: str, notify: Callable[[], None]) -> Callable[[], None]:
        """Changes made by this process (it holds the file alone), as the engine commits them; read-only,
        the commits of the process that holds the file (``PRAGMA data_version``, looked at every
        ``READ_ONLY_POLL_S``: SQLite tells no other process of a commit)."""
        with self._lock:
            from resonate_daemon.protocol import GetPromise

            GetPromise(id).run(self.engine)  # PromiseNotFound, as through a daemon
            if self.read_only:
                return self._poll_changes(notify)
            stop = self.engine.watch(id, notify)

        def unwatch() -> None:
            with self._lock:
                stop()

        return unwatch

    def _poll_changes(self, notify: Callable[[], None]) -> Callable[[], None]:
        done = threading.Event()

        def version() -> int:
            with self._lock:
                return self.store.data_version()

        def run() -> None:
            last = version()
            while not done.wait(READ_ONLY_POLL_S):
                try:
                    now = version()
                except Exception:  # closed under us, or the file went away: the reader sees it on its next read
                    notify()
                    return
                if now != last:
                    last = now
                    notify()

        thread = threading.Thread(target=run, name="resonate-watch-file", daemon=True)
        thread.start()

        def stop() -> None:
            done.set()
            thread.join(timeout=2.0)

        return stop

    def close(self) -> None:
        self._on_message = None
        self._stop.set()
        self._wake.set()
        if self._timers is not None:
            self._timers.join(timeout=5)
            self._timers = None
        with self._lock:
            self.store.close()

    def now(self) -> int:
        return self.engine.clock.now()

    def _run_timers(self) -> None:
        """Sleep until the engine's next deadline (or a write that makes an earlier one), then tick."""
        engine = self.engine
        while not self._stop.is_set():
            self._wake.clear()
            try:
                nxt = self.tick()
            except Exception as exc:  # a store hiccup must not stop the timers; try again shortly
                if self._stop.is_set():
                    return
                if not isinstance(exc, errors.STORE_DOWN):
                    log.exception("timer tick failed")  # those say so themselves, once
                nxt = engine.clock.now() + RETRY_AFTER_MS
            engine.wake_at = nxt
            wait = IDLE_WAIT_S if nxt is None else min(max(0.0, (nxt - engine.clock.now()) / 1000.0), IDLE_WAIT_S)
            if wait > 0:
                self._wake.wait(wait)

    def __repr__(self) -> str:
        return f"<LocalTransport {self.where}>"


