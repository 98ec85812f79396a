"""``resonate.promises``: the low-level promise API (create, get, resolve, reject, cancel, search)."""

from __future__ import annotations

import json
import time
from typing import Any

from resonate_daemon import errors as api
from resonate_daemon.records import REJECTED, REJECTED_CANCELED, RESOLVED, Promise, Value

from . import codec
from .transport import Transport

STATES = {"pending": ("PENDING",), "resolved": ("RESOLVED",),
          "rejected": ("REJECTED", "REJECTED_CANCELED", "REJECTED_TIMEDOUT")}


def _data(data: Any) -> Value:
    """``data`` as the official SDK takes it: JSON text (a str), or any other value to encode as JSON."""
    if data is None:
        return Value({}, None)
    if isinstance(data, str):
        try:
            json.loads(data)
        except ValueError:
            raise ValueError(f"data must be JSON text (got {data[:60]!r}); pass json.dumps(value)") from None
        return codec.encode_json_text(data)
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
            timeout = time.time_ns() // 1_000_000 + 31_536_000_000
        return self._t.create_promise(id, timeout, _data(data), tags, ikey, strict).promise

    def get(self, id: str) -> Promise:
        return self._t.get_promise(id)

    def resolve(self, id: str, *, ikey: str | None = None, strict: bool = False, data: Any = None) -> Promise:
        return self._t.complete_promise(id, RESOLVED, _data(data), ikey, strict)[1]

    def reject(self, id: str, *, ikey: str | None = None, strict: bool = False, data: Any = None) -> Promise:
        value = codec.encode_error(data) if isinstance(data, BaseException) else _data(data)
        return self._t.complete_promise(id, REJECTED, value, ikey, strict)[1]

    def cancel(self, id: str, *, ikey: str | None = None, strict: bool = False, data: Any = None,
               tree: bool = False) -> Promise:
        """Cancel a pending promise: a function waiting on it gets ``PromiseCanceled``.

        ``tree=True`` also cancels every pending promise below it (by ``resonate:parent``), so a
        canceled workflow's steps, sleeps and human waits end too; the store refuses new promises under
        a canceled one, so nothing more is written beneath it. Returns the promise ``id`` as stored.
        """
        promise = self._t.complete_promise(id, REJECTED_CANCELED, _data(data), ikey, strict)[1]
        if tree:
            self.cancel_below(id)
        return promise

    def cancel_below(self, id: str) -> list[str]:
        """Cancel every pending descendant of ``id`` (breadth first, no recursion); their ids."""
        canceled: list[str] = []
        todo, seen = [id], {id}
        while todo:
            parent = todo.pop()
            for child in self._t.children(parent):
                if child.id in seen:
                    continue
                seen.add(child.id)
                if child.pending:
                    try:
                        done = self._t.complete_promise(child.id, REJECTED_CANCELED, Value({}, None), None,
                                                        False)[1]
                    except api.ResonateError:  # completed meanwhile (resolved, timed out): leave it be
                        done = child
                    if done.state == REJECTED_CANCELED:
                        canceled.append(child.id)
                # Cancel first, then look below: anything created under it from now on is refused.
                todo.append(child.id)
        return canceled

    def search(self, id: str = "*", *, state: str | None = None, tags: dict[str, str] | None = None,
               limit: int = 100, cursor: str | None = None) -> tuple[list[Promise], str | None]:
        """One page of promises, newest first, and the cursor of the next page (None at the end)."""
        states = None
        if state is not None:
            if state.lower() not in STATES:
                raise ValueError(f"state must be one of {', '.join(STATES)}, not {state!r}")
            states = STATES[state.lower()]
        return self._t.search_promises(id, states, tags, limit, cursor)

    @staticmethod
    def value(promise: Promise) -> Any:
        """The decoded value of a completed promise (raises its error if it was rejected)."""
        ok, value = codec.outcome(promise.state, promise.value, promise.id)
        if not ok:
            raise value
        return value
