"""``resonate.promises`` and ``resonate.tasks``: the low-level API of the store, by id.

Promises: create, get, resolve, reject, cancel (a whole tree too), search, and the call graph (children,
callbacks, the tree under a promise in one request). Tasks: search. Each method is one operation of the
protocol, the same through a daemon or in local mode.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from resonate_daemon.protocol import (
    CompletePromise,
    CreatePromise,
    GetCallbacks,
    GetChildren,
    GetPromise,
    GetTree,
    SearchPromises,
    SearchTasks,
    SearchWorkflows,
)
from resonate_daemon.protocol.records import (
    REJECTED,
    REJECTED_CANCELED,
    RESOLVED,
    SEARCH_STATES,
    Callback,
    Promise,
    Task,
    Value,
)
from resonate_daemon.protocol.results import (
    Completed,
    Page,
    Tree,
)

from . import codec
from .errors import ResonateError
from .transport import Transport

ONE_YEAR_MS = 31_536_000_000
STATES = {k: v for k, v in SEARCH_STATES.items() if k != "completed"}  # what --state offers people


def _data(data: Any) -> Value:
    """``data`` as the official SDK takes it: JSON text (a str), or any other value to encode as JSON."""
    if data is None:
        return Value({}, None)
    if isinstance(data, str):
        try:
            json.loads(data)
        except ValueError:
            raise ValueError(f"data must be JSON text (got {data[:60]!r}); pass json.dumps(value)") from None
        return Value.of_text(data)
    return codec.encode(data)


class Promises:
    """Durable promises by id. Example (human in the loop)::

        resonate.promises.resolve(id="order-7.1", data=json.dumps({"approved": True}))
    """

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, id: str, timeout: int | None = None, *, ikey: str | None = None, strict: bool = False,
               data: Any = None, tags: dict[str, str] | None = None) -> Promise:
        """Create a promise; ``timeout`` is absolute ms since the epoch (default: a year from now)."""
        if timeout is None:
            timeout = time.time_ns() // 1_000_000 + ONE_YEAR_MS
        return self._t.call(CreatePromise(id, timeout, _data(data), dict(tags or {}), ikey, strict)).promise

    def get(self, id: str) -> Promise:
        return self._t.call(GetPromise(id))

    def complete(self, id: str, state: str, *, ikey: str | None = None, strict: bool = False,
                 data: Any = None) -> Completed:
        """Resolve, reject or cancel, and say whether it happened now (201) or already had (200).

        With ``strict=True`` a promise completed otherwise raises (``AlreadyResolved``, ... with the
        same idempotency key, the same completion is answered 200); a timed-out one raises
        ``AlreadyTimedOut``."""
        value = codec.encode_error(data) if isinstance(data, BaseException) else _data(data)
        return self._t.call(CompletePromise(id, state, value, ikey, strict))

    def resolve(self, id: str, *, ikey: str | None = None, strict: bool = False, data: Any = None) -> Promise:
        return self.complete(id, RESOLVED, ikey=ikey, strict=strict, data=data).promise

    def reject(self, id: str, *, ikey: str | None = None, strict: bool = False, data: Any = None) -> Promise:
        return self.complete(id, REJECTED, ikey=ikey, strict=strict, data=data).promise

    def cancel(self, id: str, *, ikey: str | None = None, strict: bool = False, data: Any = None,
               tree: bool = False) -> Promise:
        """Cancel a pending promise: a function waiting on it gets ``PromiseCanceled``.

        ``tree=True`` also cancels every pending promise below it (by ``resonate:parent``), so a
        canceled workflow's steps, sleeps and human waits end too; the store refuses new promises under
        a canceled one, so nothing more is written beneath it. A tree cancel of a promise that is no
        longer pending leaves it as it is and still cancels what is pending below (run it again to
        finish one that was interrupted). Returns the promise ``id`` as stored.
        """
        if tree:
            return self.cancel_tree(id, ikey=ikey, data=data)[0]
        return self.complete(id, REJECTED_CANCELED, ikey=ikey, strict=strict, data=data).promise

    def cancel_tree(self, id: str, *, ikey: str | None = None, data: Any = None) -> tuple[Promise, list[str]]:
        """Cancel ``id`` if pending and every pending promise below it: (``id`` as stored, the ids canceled
        below)."""
        promise = self.get(id)
        if promise.pending:
            promise = self.complete(id, REJECTED_CANCELED, ikey=ikey, data=data).promise
        return promise, self.cancel_below(id)

    def cancel_below(self, id: str) -> list[str]:
        """Cancel every pending descendant of ``id`` (breadth first, no recursion); their ids."""
        canceled: list[str] = []
        todo, seen = [id], {id}
        while todo:
            parent = todo.pop()
            for child in self.children(parent):
                if child.id in seen:
                    continue
                seen.add(child.id)
                if child.pending:
                    try:
                        done = self._t.call(CompletePromise(child.id, REJECTED_CANCELED)).promise
                    except ResonateError:  # completed meanwhile (resolved, timed out): leave it be
                        done = child
                    if done.state == REJECTED_CANCELED:
                        canceled.append(child.id)
                # Cancel first, then look below: anything created under it from now on is refused.
                todo.append(child.id)
        return canceled

    def search(self, id: str = "*", *, state: str | None = None, tags: dict[str, str] | None = None,
               limit: int = 100, cursor: str | None = None) -> tuple[list[Promise], str | None]:
        """One page of promises, newest first, and the cursor of the next page (None at the end)."""
        if state is not None and state.lower() not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, not {state!r}")
        page: Page[Promise] = self._t.call(SearchPromises(id, state.lower() if state else None, dict(tags or {}),
                                                          limit, cursor))
        return page.items, page.cursor

    def children(self, id: str) -> list[Promise]:
        """The promises created directly under ``id`` (tag ``resonate:parent``), oldest first."""
        return self._t.call(GetChildren(id))

    def callbacks(self, id: str) -> list[Callback]:
        """Who waits on ``id``: ``kind`` resume (a suspended execution) or notify (a caller)."""
        return self._t.call(GetCallbacks(id))

    def tree(self, id: str, *, limit: int = 5000) -> Tree:
        """``id`` and every promise below it, in one request (``truncated`` past ``limit``)."""
        return self._t.call(GetTree(id, limit))

    def watch(self, id: str, notify: Callable[[], None]) -> Callable[[], None]:
        """Call ``notify`` (from another thread) each time the call graph under ``id`` changes: a step
        starts or ends, a task is claimed; returns the function that stops watching. Read ``tree`` again
        when it fires. Example::

            changed = threading.Event()
            stop = resonate.promises.watch("order-7", changed.set)
        """
        return self._t.watch(id, notify)

    @staticmethod
    def value(promise: Promise) -> Any:
        """The decoded value of a completed promise (raises its error if it was rejected)."""
        ok, value = codec.outcome(promise.state, promise.value, promise.id)
        if not ok:
            raise value
        return value


class Workflows:
    """Workflows: the tops of call graphs (what was invoked, not its steps)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def search(self, *, state: str | None = None, func: str | None = None, since: int | None = None,
               limit: int = 50, cursor: str | None = None) -> tuple[list[Promise], str | None, int]:
        """One page, newest first, the next page's cursor, and how many match in all. ``state``: pending,
        resolved, rejected, canceled, timedout, failed (any of the last three) or completed; ``since``:
        created at or after (ms since the epoch)."""
        page = self._t.call(SearchWorkflows(state, func, since, limit, cursor))
        return page.items, page.cursor, page.total


class Tasks:
    """Tasks: the invocations and resumes waiting for, sent to, or held by workers."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def search(self, states: tuple[str, ...] | list[str] | None = None, *, limit: int = 100) -> list[Task]:
        """Tasks in ``states`` (INIT, ENQUEUED, CLAIMED, COMPLETED; None: any), newest first."""
        return self._t.call(SearchTasks(tuple(s.upper() for s in states) if states else None, limit))
