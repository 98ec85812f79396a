"""The promise state machine as one pure function (PROTOCOL.md, "Promise transitions").

``transition`` sees the promise as stored (or None), the request and the daemon clock, and says what
happens: nothing to write (with a status), a write (create, complete, time out) or an error. The engine
carries the verdict out inside its transaction; this module never touches storage, so the whole table
is tested row by row without a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from . import errors
from .records import (
    PENDING,
    REJECTED_CANCELED,
    REJECTED_TIMEDOUT,
    RESOLVED,
    TAG_TIMEOUT,
    Promise,
)

COMPLETABLE = (RESOLVED, "REJECTED", REJECTED_CANCELED)


@dataclass(frozen=True, slots=True)
class Create:
    idempotency_key: str | None
    strict: bool


@dataclass(frozen=True, slots=True)
class Complete:
    state: str  # RESOLVED | REJECTED | REJECTED_CANCELED
    idempotency_key: str | None
    strict: bool


Request = Create | Complete


@dataclass(frozen=True, slots=True)
class Verdict:
    """``write`` says what to store: ``create``, ``complete`` (to ``state``), or None.

    ``timeout_first`` asks to store the lazy timeout (to ``timeout_state``) before anything else, even when
    the request itself then fails: a timed-out promise is completed on every access.
    """

    status: int
    write: Literal["create", "complete"] | None = None
    state: str | None = None
    timeout_state: str | None = None
    error: errors.ResonateError | None = None


def timed_out(promise: Promise, now: int) -> bool:
    return promise.state == PENDING and now >= promise.timeout


def timeout_state(promise: Promise) -> str:
    """A sleep (tag ``resonate:timeout=true``) resolves at its timeout; anything else is rejected."""
    return RESOLVED if promise.tags.get(TAG_TIMEOUT) == "true" else REJECTED_TIMEDOUT


def transition(current: Promise | None, request: Request, now: int) -> Verdict:
    """Decide the outcome of ``request`` on ``current`` at ``now`` (ikeys match when equal or both None)."""
    if current is None:
        if isinstance(request, Create):
            return Verdict(201, write="create", state=PENDING)
        return Verdict(404, error=errors.PromiseNotFound("promise not found"))

    lazy: str | None = None
    state = current.state
    if timed_out(current, now):
        lazy = state = timeout_state(current)

    match request, state:
        case Create(ikey, _), "PENDING":
            if ikey == current.idempotency_key_for_create:
                return Verdict(200)
            return Verdict(409, error=errors.PromiseAlreadyExists(
                f"promise {current.id!r} already exists with another idempotency key"))
        case Create(ikey, strict), _:
            if not strict and ikey == current.idempotency_key_for_create:
                return Verdict(200, timeout_state=lazy)
            return Verdict(409, timeout_state=lazy, error=errors.PromiseAlreadyExists(
                f"promise {current.id!r} already exists ({state.lower()})"))
        case Complete(target, ikey, strict), "PENDING":
            return Verdict(201, write="complete", state=target)
        case Complete(_, _, strict), "REJECTED_TIMEDOUT" if not strict:
            return Verdict(200, timeout_state=lazy)
        case Complete(_, _, strict), _ if lazy is not None:
            # Timed out just now. A non-strict caller gets the timed-out promise (sleeps resolve this
            # way); a strict one is told it came too late.
            if not strict:
                return Verdict(200, timeout_state=lazy)
            return Verdict(403, timeout_state=lazy, error=errors.AlreadyTimedOut(
                f"promise {current.id!r} already timed out"))
        case Complete(target, ikey, strict), _:
            same_key = ikey == current.idempotency_key_for_complete
            if same_key and (not strict or target == state):
                return Verdict(200)
            cls = errors.ALREADY_COMPLETED[state]
            return Verdict(403, error=cls(f"promise {current.id!r} already {_word(state)}"))
    raise AssertionError(f"unhandled transition {request!r} on {state}")  # pragma: no cover


def _word(state: str) -> str:
    return {
        RESOLVED: "resolved",
        "REJECTED": "rejected",
        REJECTED_CANCELED: "canceled",
        REJECTED_TIMEDOUT: "timed out",
    }[state]
