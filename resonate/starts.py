"""Starting many workflows from one client without a round trip each.

``Resonate.begin_rpc`` on a daemon hands its start (a ``CreateAndSubscribe``) to the transport's
``Starter`` and returns the handle at once. The starter's thread sends what is queued as one request
(``StartMany``, up to ``MAX_BATCH`` starts; a single start goes alone), and while that request is on its
way the next starts queue up behind it: a loop of 10,000 ``begin_rpc`` calls makes a few dozen requests,
not 10,000. The daemon runs each start on its own (one's conflict does not undo another) and answers
once they are durable; a start's error is raised by its handle's ``result()``.

Nothing a client does later overtakes its starts: any other request through the same transport first
waits for the starts queued before it (``RemoteTransport.call``), so ``begin_rpc`` then
``promises.get`` finds the promise. The thread is not a daemon thread and ends when the queue is empty:
a script that returns right after its ``begin_rpc`` calls still sends them before the interpreter exits.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from resonate_daemon.errors import ResonateError
from resonate_daemon.protocol import CreateAndSubscribe, Created, StartMany

log = logging.getLogger("resonate")

MAX_BATCH = 500  # starts in one request (the daemon takes up to MAX_STARTS, 1,000)

Done = Callable[["Created | BaseException"], None]


class Starter:
    def __init__(self, call: Callable[[Any], Any], max_batch: int = MAX_BATCH) -> None:
        self._call = call  # the transport's own call (it does not wait for the starter)
        self._max = max_batch
        self._queue: deque[tuple[CreateAndSubscribe, Done]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = 0  # starts taken off the queue and not yet answered

    def submit(self, op: CreateAndSubscribe, done: Done) -> None:
        with self._cond:
            self._queue.append((op, done))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="resonate-starts")
                self._thread.start()

    def owes(self) -> bool:
        """Are starts queued or on their way (so that a later request must wait for them)?"""
        return bool(self._queue or self._busy) and threading.current_thread() is not self._thread

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every start submitted so far has its answer; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self._max))]
                if not batch:
                    self._thread = None
                    self._cond.notify_all()
                    return
                self._busy = len(batch)
            results: list[Any]
            try:
                if len(batch) == 1:
                    results = [self._call(batch[0][0])]
                else:
                    answers: list[Created | ResonateError] = self._call(StartMany(tuple(op for op, _ in batch)))
                    results = list(answers)
            except BaseException as exc:  # the daemon unreachable past its retries: each start fails with it
                results = [exc] * len(batch)
            for (op, done), result in zip(batch, results, strict=True):
                try:
                    done(result)
                except Exception:  # a handle's bookkeeping must not stop the starts behind it
                    log.exception("settling the handle of %s failed", op.id)
            with self._cond:
                self._busy = 0
                self._cond.notify_all()
