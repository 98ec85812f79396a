"""Durable retries of plain steps: the backoff is a timer promise in the scheduler, not a sleeping thread.

When a plain function fails and its policy gives a delay ``d`` for the next attempt, the execution creates
the promise ``{step}.retry.{n}`` (timeout now+d, tag ``resonate:timeout=true``, so the scheduler resolves
it at its deadline) and waits on it exactly like ``ctx.sleep``: when nothing else can run, the execution
suspends, its task completes and the worker holds nothing. On replay a step counts the retry promises
recorded under it (tag ``resonate:parent`` = the step) to know its attempt number, so a crash mid-backoff
does not restart the count. A step that succeeds the first time costs no extra query: local mode reads
the retries from the replay's one query of the call graph, and remote mode only looks them up when the
step's promise already existed (a replay).

Retries end when the policy says so, when the next attempt would start after the step's timeout, or on an
exception in ``non_retryable_exceptions``; the step is then rejected with the last error, its type kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from resonate_daemon.records import EMPTY, RESOLVED, TAG_PARENT, TAG_ROOT, TAG_TIMEOUT
from resonate_daemon.records import Promise as Record

from .context import Call

if TYPE_CHECKING:
    from .execution import Execution, Frame

log = logging.getLogger("resonate")

TAG_FUNC = "resonate:func"
RETRY = "retry"  # the resonate:func of a retry timer
SEARCH_LIMIT = 1000


@dataclass
class StepRun:
    """One plain step being carried out: who waits for it, and how its outcome is stored."""

    frame: Frame
    call: Call[Any]
    timeout: int
    tags: dict[str, str]
    save: bool  # False for a plain root function (its frame's return stores it)
    fresh: bool  # its promise was just created: nothing can be recorded under it yet
    stored: bool = False  # its promise exists (remote mode, or a replay)
    errors: list[BaseException] = field(default_factory=list)


def attempt_of(record: Record) -> int:
    try:
        return int(record.id.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return 0


class RetryState:
    """The retry timers of one execution: what is recorded per step, and which steps wait on a timer."""

    def __init__(self, execution: Execution) -> None:
        self.ex = execution
        self._index: dict[str, list[Record]] | None = None
        self._known: dict[str, list[Record]] = {}
        self._waiting: dict[str, StepRun] = {}

    def recorded(self, run: StepRun) -> list[Record]:
        id = run.call.id
        if id in self._known:
            return self._known[id]
        if self.ex.recorded is not None:  # local mode: the call graph was read in one query
            if self._index is None:
                self._index = {}
                for p in self.ex.recorded.values():
                    if p.tags.get(TAG_FUNC) == RETRY and TAG_PARENT in p.tags:
                        self._index.setdefault(p.tags[TAG_PARENT], []).append(p)
            found = list(self._index.get(id, ()))
        elif run.fresh:
            found = []
        else:
            page, _ = self.ex.t.search_promises(f"{id}.retry.*", None, None, SEARCH_LIMIT)
            found = [p for p in page if p.tags.get(TAG_PARENT) == id and p.tags.get(TAG_FUNC) == RETRY]
        found.sort(key=attempt_of)
        self._known[id] = found
        return found

    def run(self, run: StepRun) -> None:
        """Attempt the step (unless a recorded timer still runs); on failure, retry or give up."""
        ex = self.ex
        retries = self.recorded(run)
        if retries and retries[-1].pending:
            self._waiting[retries[-1].id] = run
            return
        call = run.call
        func = call.func
        assert callable(func)
        policy = call.opts.policy_for(func)
        attempt = len(retries) + 1
        while True:
            ctx = ex.child_ctx(call.id, call, run.frame, run.timeout, attempt)
            try:
                value = func(ctx, *call.args, **call.kwargs)
            except Exception as exc:
                error: Exception = exc
            else:
                ex.step_done(run, True, value)
                return
            delay = self.delay(run, policy, attempt, error)
            if delay is None:
                ex.step_done(run, False, error)
                return
            rid = f"{call.id}.retry.{attempt}"
            tags = {TAG_TIMEOUT: "true", TAG_ROOT: ex.root.id, TAG_PARENT: call.id, TAG_FUNC: RETRY}
            log.info("%s failed (%s: %s); attempt %d in %.3gs", call.id, type(error).__name__, error,
                     attempt + 1, delay)
            created = ex.t.create_promise(rid, ex.t.now() + int(delay * 1000), EMPTY, tags, rid)
            retries.append(created.promise)
            if created.promise.pending:
                self._waiting[rid] = run
                return
            attempt += 1  # the timer is already due (a zero delay): go again at once

    def delay(self, run: StepRun, policy: Any, attempt: int, error: Exception) -> float | None:
        opts = run.call.opts
        if opts.non_retryable_exceptions and isinstance(error, opts.non_retryable_exceptions):
            return None
        d = policy.next(attempt)
        if d is None or self.ex.t.now() + d * 1000 >= run.timeout:
            return None
        return float(d)

    def waiting(self) -> list[str]:
        """The retry timers steps wait on (the execution registers a callback on each to suspend)."""
        return list(self._waiting)

    def settled(self, id: str, outcome: tuple[bool, Any]) -> bool:
        """A timer completed: attempt its step again. False if ``id`` is not a retry timer."""
        run = self._waiting.pop(id, None)
        if run is None:
            return False
        retries = self._known[run.call.id]
        ok, value = outcome
        if retries and retries[-1].id == id:
            retries[-1] = replace(retries[-1], state=RESOLVED if ok else "REJECTED")
        if ok:
            self.ex.guard(run.frame, run.call.id, lambda: self.run(run))
        else:  # the timer was canceled (a canceled tree): the step ends with that error
            self.ex.guard(run.frame, run.call.id, lambda: self.ex.step_done(run, False, value))
        return True
