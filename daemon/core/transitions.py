"""The state machines of promises and tasks, as pure functions (PROTOCOL.md "Promise transitions",
ARCHITECTURE.md "Task").

``promise_transition`` and ``task_transition`` see a record as stored (or None), a request and the
clock, and say what happens: a status, an error, and what to write. The engine carries verdicts out in
its transaction; nothing here touches storage, so both tables are tested row by row without a database.

Idempotency keys match when both are present and equal (the legacy server's ``IdempotencyKey.Match``):
two missing keys do not match.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from .. import errors
from ..protocol.records import (
    CLAIMED,
    COMPLETED,
    ENQUEUED,
    INIT,
    PENDING,
    REJECTED,
    REJECTED_CANCELED,
    REJECTED_TIMEDOUT,
    RESOLVED,
    TAG_TIMEOUT,
    Promise,
    Task,
    after,
)

RESEND_AFTER_MS = 60_000  # a task sent but not claimed within a minute is sent again
# A lapsed lease is taken back this long after its ttl, not at the very millisecond: the legacy server
# takes leases back in a periodic pass, so a heartbeat right after a short (even 0) ttl still finds the
# task CLAIMED (its store tests count on it: claim with ttl 0, heartbeat at once, tasksAffected 1).
LEASE_GRACE_MS = 250

# -- promises -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Create:
    idempotency_key: str | None
    strict: bool


@dataclass(frozen=True, slots=True)
class Complete:
    state: str  # RESOLVED | REJECTED | REJECTED_CANCELED
    idempotency_key: str | None
    strict: bool


@dataclass(frozen=True, slots=True)
class Read:
    """Any other access to a promise (a get, a callback, a claim of its task, the scheduler's sweep):
    its only effect is the lazy timeout."""


PromiseRequest = Create | Complete | Read


@dataclass(frozen=True, slots=True)
class Verdict:
    """``write`` says what to store: ``create``, ``complete`` (to ``state``), or None.

    ``timeout_state`` asks to store the lazy timeout first, even when the request itself then fails:
    a promise past its timeout is completed on every access. It is the one place timeouts are decided.
    """

    status: int
    write: Literal["create", "complete"] | None = None
    state: str | None = None
    timeout_state: str | None = None
    error: errors.ResonateError | None = None


def keys_match(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a == b


def timed_out(promise: Promise, now: int) -> bool:
    return promise.state == PENDING and now >= promise.timeout


def timeout_state(promise: Promise) -> str:
    """A sleep (tag ``resonate:timeout=true``) resolves at its timeout; anything else is rejected."""
    return RESOLVED if promise.tags.get(TAG_TIMEOUT) == "true" else REJECTED_TIMEDOUT


def promise_transition(current: Promise | None, request: PromiseRequest, now: int) -> Verdict:
    """Decide the outcome of ``request`` on ``current`` (as stored) at ``now``."""
    if current is None:
        if isinstance(request, Create):
            return Verdict(201, write="create", state=PENDING)
        return Verdict(404, error=errors.PromiseNotFound("promise not found"))  # the engine names the id

    lazy: str | None = None
    state = current.state
    if timed_out(current, now):
        lazy = state = timeout_state(current)

    match request, state:
        case Read(), _:
            return Verdict(200, timeout_state=lazy)
        case Create(ikey, _), "PENDING":
            if keys_match(ikey, current.idempotency_key_for_create):
                return Verdict(200)
            return Verdict(409, error=errors.PromiseAlreadyExists(
                f"promise {current.id!r} already exists with another idempotency key"))
        case Create(ikey, strict), _:
            if not strict and keys_match(ikey, current.idempotency_key_for_create):
                return Verdict(200, timeout_state=lazy)
            return Verdict(409, timeout_state=lazy, error=errors.PromiseAlreadyExists(
                f"promise {current.id!r} already exists ({state.lower()})"))
        case Complete(target, _, _), "PENDING":
            return Verdict(201, write="complete", state=target)
        case Complete(_, _, strict), "REJECTED_TIMEDOUT" if not strict:
            return Verdict(200, timeout_state=lazy)
        case Complete(_, _, strict), _ if lazy is not None:
            # Timed out just now. A non-strict caller gets the timed-out promise (a sleep resolves this
            # way); a strict one is told it came too late.
            if not strict:
                return Verdict(200, timeout_state=lazy)
            return Verdict(403, timeout_state=lazy, error=errors.AlreadyTimedOut(
                f"promise {current.id!r} already timed out"))
        case Complete(target, ikey, strict), _:
            if keys_match(ikey, current.idempotency_key_for_complete) and (not strict or target == state):
                return Verdict(200)
            cls = errors.ALREADY_COMPLETED[state]
            return Verdict(403, error=cls(f"promise {current.id!r} already {_word(state)}"))
    raise AssertionError(f"unhandled transition {request!r} on {state}")  # pragma: no cover


def _word(state: str) -> str:
    return {RESOLVED: "resolved", REJECTED: "rejected", REJECTED_CANCELED: "canceled",
            REJECTED_TIMEDOUT: "timed out"}[state]


# -- tasks ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    counter: int
    process_id: str
    ttl: int
    root_pending: bool = True  # the root promise, read with its lazy timeout applied, is still pending


@dataclass(frozen=True, slots=True)
class Finish:
    """The holder completes the task (its execution completed or suspended)."""

    counter: int


@dataclass(frozen=True, slots=True)
class Drop:
    """The holder gives the task back."""

    counter: int


@dataclass(frozen=True, slots=True)
class Beat:
    """A heartbeat of ``process_id``: extends its lease (a lapsed one not yet reset still counts)."""

    process_id: str


@dataclass(frozen=True, slots=True)
class Sent:
    """The daemon wrote the task to ``process_id``'s push stream."""

    counter: int
    process_id: str


@dataclass(frozen=True, slots=True)
class Expire:
    """The scheduler's sweep: a lease lapsed, or a task sent a minute ago was never claimed."""


@dataclass(frozen=True, slots=True)
class Release:
    """The holder is gone (its stream closed, or a file store reopened by a new process)."""


@dataclass(frozen=True, slots=True)
class Requeue:
    """Daemon start: no stream survives a restart, so a sent task goes back to be sent again; a claimed
    one keeps its lease (its worker may outlive the daemon)."""


@dataclass(frozen=True, slots=True)
class RootDone:
    """The root promise completed: nothing is left to execute."""


@dataclass(frozen=True, slots=True)
class Reopen:
    """A retried workflow: its finished invoke task runs again (counter+1, to ``recv``)."""

    recv: str


TaskRequest = Claim | Finish | Drop | Beat | Sent | Expire | Release | Requeue | RootDone | Reopen


@dataclass(frozen=True, slots=True)
class TaskVerdict:
    """``task`` is what to store (None: nothing changes). ``released`` says the task left the states in
    which it is out (ENQUEUED, CLAIMED) while its root goes on: the root's next task may go out now."""

    status: int
    task: Task | None = None
    error: errors.ResonateError | None = None
    released: bool = False


def _back(task: Task, bump: bool) -> Task:
    """To INIT, to be sent again; with ``bump`` the counter moves on and fences out the old holder."""
    return replace(task, state=INIT, counter=task.counter + (1 if bump else 0), process_id=None, expires_at=0)


def task_transition(task: Task | None, request: TaskRequest, now: int) -> TaskVerdict:
    """Decide the outcome of ``request`` on ``task`` (as stored) at ``now``."""
    if task is None:
        return TaskVerdict(404, error=errors.TaskNotFound("task not found"))
    match request, task.state:
        case Finish(), "COMPLETED":
            return TaskVerdict(200)
        case Claim() | Drop(), "COMPLETED":
            return TaskVerdict(403, error=errors.TaskAlreadyCompleted(f"task {task.id!r} is already completed"))
        case Claim(counter) | Finish(counter) | Drop(counter), _ if counter != task.counter:
            return TaskVerdict(403, error=errors.InvalidCounter(
                f"task {task.id!r} is at counter {task.counter}, not {counter}"))
        case Claim(), "CLAIMED":
            return TaskVerdict(403, error=errors.TaskAlreadyClaimed(f"task {task.id!r} is claimed by {task.process_id}"))
        case Claim(_, _, _, False), _:
            done = replace(task, state=COMPLETED, completed_on=now, process_id=None)
            return TaskVerdict(403, done, errors.TaskAlreadyCompleted(
                f"task {task.id!r}: its promise is already completed"))
        case Claim(_, pid, ttl, _), _:
            claimed = replace(task, state=CLAIMED, process_id=pid, ttl=ttl, expires_at=after(now, ttl + LEASE_GRACE_MS),
                              attempt=task.attempt + 1, last_process_id=pid,
                              claimed_on=now if task.claimed_on is None else task.claimed_on)
            return TaskVerdict(201, claimed)
        case Finish() | Drop(), state if state != CLAIMED:
            return TaskVerdict(403, error=errors.TaskNotClaimed(f"task {task.id!r} is not claimed"))
        case Finish(), _:
            return TaskVerdict(201, replace(task, state=COMPLETED, completed_on=now, process_id=None), released=True)
        case Drop(), _:
            return TaskVerdict(201, _back(task, bump=True), released=True)
        case Beat(pid), "CLAIMED" if pid == task.process_id:
            return TaskVerdict(200, replace(task, expires_at=after(now, task.ttl + LEASE_GRACE_MS)))
        case Sent(counter, pid), "INIT" if counter == task.counter:
            return TaskVerdict(200, replace(task, state=ENQUEUED, process_id=pid,
                                            expires_at=after(now, RESEND_AFTER_MS)))
        case Expire(), "CLAIMED" | "ENQUEUED" if now >= task.expires_at:
            return TaskVerdict(200, _back(task, bump=task.state == CLAIMED), released=True)
        case Release(), "CLAIMED" | "ENQUEUED":
            return TaskVerdict(200, _back(task, bump=task.state == CLAIMED), released=True)
        case Requeue(), "ENQUEUED":
            return TaskVerdict(200, _back(task, bump=False), released=True)
        case Reopen(recv), "COMPLETED":
            return TaskVerdict(200, replace(_back(task, bump=True), recv=recv, completed_on=None), released=True)
        case RootDone(), state if state != COMPLETED:
            # Not ``released``: with the root done, none of its other tasks may go out either.
            return TaskVerdict(200, replace(task, state=COMPLETED, completed_on=now, process_id=None))
    return TaskVerdict(200)  # nothing to do: a beat of another process, a stale Sent, an unexpired lease...


