"""How the SDK reaches a promise store: the in-process engine (local mode) or a daemon (remote mode).

Both transports offer the same methods and raise the same ``resonate_daemon.errors`` classes, so the
runtime above them is one code path; ``LocalTransport`` is the in-process twin of the daemon.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Protocol

from resonate_daemon.clock import Clock
from resonate_daemon.engine import Claimed, Created, Engine, Registered
from resonate_daemon.records import EMPTY, Message, Promise, Schedule, Value
from resonate_daemon.scheduler import Scheduler
from resonate_daemon.store import Store

log = logging.getLogger("resonate")

OnMessage = Callable[[Message], None]


class Transport(Protocol):
    # True when a step may be looked up, run, then created-and-completed in one write (local mode);
    # False for remote mode, where create-then-complete costs the same round trips and records the start.
    local_steps: bool

    def connect(self, group: str, pid: str, on_message: OnMessage) -> None: ...
    def close(self) -> None: ...
    def create_promise(self, id: str, timeout: int, param: Value = EMPTY, tags: dict[str, str] | None = None,
                       idempotency_key: str | None = None, strict: bool = False,
                       claim: tuple[str, int] | None = None) -> Created: ...
    def create_and_complete(self, id: str, timeout: int, param: Value, tags: dict[str, str], value: Value,
                            state: str) -> Promise: ...
    def complete_promise(self, id: str, state: str, value: Value = EMPTY, idempotency_key: str | None = None,
                         strict: bool = False) -> tuple[int, Promise]: ...
    def get_promise(self, id: str) -> Promise: ...
    def find_promise(self, id: str) -> Promise | None: ...
    def descendants(self, root_id: str) -> dict[str, Promise] | None: ...
    def search_promises(self, id: str | None = None, states: tuple[str, ...] | None = None,
                        tags: dict[str, str] | None = None, limit: int = 100,
                        cursor: str | None = None) -> tuple[list[Promise], str | None]: ...
    def create_callback(self, promise_id: str, root_promise_id: str, timeout: int, recv: str) -> Registered: ...
    def create_subscription(self, promise_id: str, id: str, timeout: int, recv: str) -> Registered: ...
    def claim_task(self, id: str, counter: int, process_id: str, ttl: int) -> Claimed: ...
    def complete_task(self, id: str, counter: int) -> int: ...
    def drop_task(self, id: str, counter: int) -> int: ...
    def heartbeat(self, process_id: str) -> int: ...
    def now(self) -> int: ...
    def children(self, id: str) -> list[Promise]: ...
    def create_schedule(self, id: str, cron: str, promise_id: str, promise_timeout: int,
                        promise_param: Value = EMPTY, promise_tags: dict[str, str] | None = None,
                        description: str = "", tags: dict[str, str] | None = None,
                        idempotency_key: str | None = None) -> tuple[int, Schedule]: ...
    def get_schedule(self, id: str) -> Schedule: ...
    def delete_schedule(self, id: str) -> None: ...
    def search_schedules(self, id: str | None = None, limit: int = 100,
                         cursor: str | None = None) -> tuple[list[Schedule], str | None]: ...


class LocalTransport:
    """The engine in this process, on SQLite in memory or in a file (locked to this process)."""

    local_steps = True

    def __init__(self, path: str | None = None, *, durability: str = "full", clock: Clock | None = None) -> None:
        self.path = os.path.abspath(path) if path else ":memory:"
        self.store = Store.open(self.path, durability)
        self.engine = Engine(self.store, clock)
        # This process holds the file alone (Store.open locked it), so whatever was claimed or sent
        # when we opened it belonged to a process that died: give it back to be run again.
        self.engine.release_all()
        self.scheduler = Scheduler(self.engine)
        self._on_message: OnMessage | None = None
        self.engine.sink = self._deliver

    def _deliver(self, messages: list[Message]) -> None:
        handler = self._on_message
        if handler is None:
            return  # nobody listens yet; INIT tasks are sent again by dispatchable() on connect
        for m in messages:
            handler(m)

    def connect(self, group: str, pid: str, on_message: OnMessage) -> None:
        self._on_message = on_message
        self.scheduler.start()
        for m in self.engine.dispatchable():
            on_message(m)

    def close(self) -> None:
        self._on_message = None
        self.scheduler.stop()
        with self.engine.lock:
            self.store.close()

    def create_promise(self, id: str, timeout: int, param: Value = EMPTY, tags: dict[str, str] | None = None,
                       idempotency_key: str | None = None, strict: bool = False,
                       claim: tuple[str, int] | None = None) -> Created:
        return self.engine.create_promise(id, timeout, param, tags, idempotency_key, strict, claim)

    def create_and_complete(self, id: str, timeout: int, param: Value, tags: dict[str, str], value: Value,
                            state: str) -> Promise:
        return self.engine.create_and_complete(id, timeout, param, tags, value, state)

    def complete_promise(self, id: str, state: str, value: Value = EMPTY, idempotency_key: str | None = None,
                         strict: bool = False) -> tuple[int, Promise]:
        return self.engine.complete_promise(id, state, value, idempotency_key, strict)

    def get_promise(self, id: str) -> Promise:
        return self.engine.get_promise(id)

    def find_promise(self, id: str) -> Promise | None:
        return self.engine.read(lambda: self.store.get_promise(id))

    def descendants(self, root_id: str) -> dict[str, Promise] | None:
        return self.engine.read(lambda: self.store.promises_of_root(root_id))

    def search_promises(self, id: str | None = None, states: tuple[str, ...] | None = None,
                        tags: dict[str, str] | None = None, limit: int = 100,
                        cursor: str | None = None) -> tuple[list[Promise], str | None]:
        from resonate_daemon.store import decode_cursor, encode_cursor

        found, nxt = self.engine.search_promises(id, states, tags, limit, decode_cursor(cursor))
        return found, encode_cursor(nxt)

    def create_callback(self, promise_id: str, root_promise_id: str, timeout: int, recv: str) -> Registered:
        return self.engine.create_callback(promise_id, root_promise_id, timeout, recv)

    def create_subscription(self, promise_id: str, id: str, timeout: int, recv: str) -> Registered:
        return self.engine.create_subscription(promise_id, id, timeout, recv)

    def claim_task(self, id: str, counter: int, process_id: str, ttl: int) -> Claimed:
        return self.engine.claim_task(id, counter, process_id, ttl)

    def complete_task(self, id: str, counter: int) -> int:
        return self.engine.complete_task(id, counter)

    def drop_task(self, id: str, counter: int) -> int:
        return self.engine.drop_task(id, counter)

    def heartbeat(self, process_id: str) -> int:
        return self.engine.heartbeat(process_id)

    def now(self) -> int:
        """The engine's clock (injected in tests), so an execution's deadlines agree with the scheduler's."""
        return self.engine.clock.now()

    def children(self, id: str) -> list[Promise]:
        return self.engine.children_of(id)

    def create_schedule(self, id: str, cron: str, promise_id: str, promise_timeout: int,
                        promise_param: Value = EMPTY, promise_tags: dict[str, str] | None = None,
                        description: str = "", tags: dict[str, str] | None = None,
                        idempotency_key: str | None = None) -> tuple[int, Schedule]:
        return self.engine.create_schedule(id, cron, promise_id, promise_timeout, promise_param, promise_tags,
                                           description, tags, idempotency_key)

    def get_schedule(self, id: str) -> Schedule:
        return self.engine.get_schedule(id)

    def delete_schedule(self, id: str) -> None:
        self.engine.delete_schedule(id)

    def search_schedules(self, id: str | None = None, limit: int = 100,
                         cursor: str | None = None) -> tuple[list[Schedule], str | None]:
        from resonate_daemon.store import decode_cursor, encode_cursor

        found, nxt = self.engine.search_schedules(id, limit, decode_cursor(cursor))
        return found, encode_cursor(nxt)
