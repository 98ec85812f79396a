"""The one exception tree of resonate: the daemon, the store, the SDK and the CLI all raise these.

Standard library only (the SDK re-exports it as ``resonate.errors``), so a remote worker can catch
``resonate.ResonateError`` without loading any server code. Every class has a stable ``code``:

- ``4xxxx``/``5xxxx`` are the legacy Resonate server's API codes and ours beside them; an error that
  crosses the wire travels as ``{"error": {"code", "message", "details"}}`` with HTTP status
  ``code // 100`` and comes back as the same class (``from_json``);
- ``6xxxx`` are outcomes of durable executions seen by the code that awaited them (a rejected, canceled
  or timed-out promise); they never travel as API errors.

Every error pickles (``__reduce__``): they cross process boundaries (futures, the supervisor, tests).
"""

from __future__ import annotations

from typing import Any


class ResonateError(Exception):
    """Base of every error resonate raises on purpose."""

    code = 50000

    def __init__(self, message: str = "", details: Any = None) -> None:
        super().__init__(*((message,) if details is None else (message, details)))
        self.message = message
        self.details = details

    @property
    def status(self) -> int:
        """The HTTP status this error travels with."""
        return self.code // 100

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return {"error": body}

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # The code travels too: an unknown wire code is kept on an instance of the base class.
        return (self.__class__, self.args, {"code": self.code} if "code" in self.__dict__ else None)


# -- the API's errors (HTTP status = code // 100) -------------------------------------------------

class InvalidRequest(ResonateError):
    """The request is malformed: wrong types, missing fields, bad ids, bad cron, a bad option."""

    code = 40000


class EncodingError(ResonateError, TypeError):
    """A value, argument or result cannot be stored (JSON cannot hold it and no encoding is known)."""

    code = 40001


class Unauthorized(ResonateError):
    """The TCP listener got no token or a wrong one."""

    code = 40100


class Forbidden(ResonateError):
    """A Unix-socket client running as another user (neither the daemon's uid nor root): refused."""

    code = 40311


class AlreadyResolved(ResonateError):
    """A completion met a promise that is already RESOLVED (a create gets PromiseAlreadyExists)."""

    code = 40301


class AlreadyRejected(ResonateError):
    """A completion met a promise that is already REJECTED."""

    code = 40302


class AlreadyCanceled(ResonateError):
    """A completion met a promise that is already REJECTED_CANCELED, or a create met a canceled parent."""

    code = 40303


class AlreadyTimedOut(ResonateError):
    """A completion met a promise that is already REJECTED_TIMEDOUT (or timed out now, strictly)."""

    code = 40304


class TaskAlreadyClaimed(ResonateError):
    """A claim met a task that another process holds."""

    code = 40306


class TaskAlreadyCompleted(ResonateError):
    """A claim or drop met a task that is completed (or whose promise is)."""

    code = 40307


class InvalidCounter(ResonateError):
    """The counter given is not the task's current counter: the caller was fenced out."""

    code = 40308


class TaskNotClaimed(ResonateError):
    """A complete or drop met a task that nobody holds."""

    code = 40309


class TaskFenced(ResonateError):
    """A write made on behalf of a task this worker no longer holds (its lease lapsed and another worker
    took the task over, or it was completed): refused, and the worker abandons that execution."""

    code = 40310


class PromiseNotFound(ResonateError):
    """No promise has this id."""

    code = 40400


class ScheduleNotFound(ResonateError):
    """No schedule has this id."""

    code = 40401


class TaskNotFound(ResonateError):
    """No task has this id."""

    code = 40403


class NotRegistered(ResonateError):
    """A function name (or version) was invoked that no ``@resonate.register`` made known here."""

    code = 40404


class PromiseAlreadyExists(ResonateError):
    """A create met an existing promise whose idempotency key differs (or a strict create)."""

    code = 40900


class ScheduleAlreadyExists(ResonateError):
    """A schedule create met an existing schedule with another idempotency key."""

    code = 40901


class NondeterminismError(ResonateError):
    """A replay called a different function at a position where the recorded history has another."""

    code = 40902

    def __init__(self, position: str, recorded: str, called: str) -> None:
        super().__init__(f"nondeterministic replay at {position!r}: the history records a call of "
                         f"{recorded!r} there, but the code now calls {called!r}")
        self.args = (position, recorded, called)
        self.position, self.recorded, self.called = position, recorded, called


class WorkflowRunning(ResonateError):
    """A retry or fork met a workflow that is still running: wait for it, or cancel it first."""

    code = 40903


class PayloadTooLarge(ResonateError):
    """The request body is over the configured limit."""

    code = 41300


class StoreCorrupt(ResonateError):
    """The database file is damaged, truncated, or not a database: refused at open."""

    code = 50310


class StoreGone(ResonateError):
    """The database file was deleted or replaced while open: writes are refused (nobody would read them)."""

    code = 50311


class StoreFull(ResonateError):
    """The disk (or the database's size limit) is full: the write was rolled back; retry when there is room."""

    code = 50700


class StoreLocked(ResonateError):
    """Another live process holds the database file."""

    code = 50300


class StartupError(ResonateError):
    """The daemon cannot start: a live daemon on the socket, a busy port, a socket path in the way."""

    code = 50301


class Unreachable(ResonateError):
    """No daemon answers at the configured socket or URL (or what answers is not a resonate daemon)."""

    code = 50302


class TLSFailed(Unreachable):
    """The TLS handshake with the daemon failed: its certificate is not trusted by this client (give the CA
    file), names another host, or one side speaks TLS (https://) and the other does not (http://)."""

    code = 50303


class UntrustedDaemon(ResonateError):
    """What listens on the socket runs as another user (not us, not root): nothing is sent to it."""

    code = 50304


# The store cannot take writes now and has said so once itself: retry loops catch these quietly.
STORE_DOWN = (StoreGone, StoreFull, StoreCorrupt)


# -- outcomes of durable executions (never on the wire as errors) --------------------------------

class PromiseRejected(ResonateError):
    """A promise was rejected with a value that is not an exception this process can rebuild."""

    code = 60001


class PromiseCanceled(ResonateError):
    """A promise this execution awaited was canceled."""

    code = 60002


class PromiseTimedOut(ResonateError):
    """A promise this execution awaited passed its timeout before anyone completed it."""

    code = 60003


class NonRetryable(ResonateError):
    """Raised by a step (or a subclass of it) to fail at once: no retry can fix it (a declined card, a
    missing record). ``raise NonRetryable("card declined") from exc`` keeps the cause."""

    code = 60004


ALREADY_COMPLETED: dict[str, type[ResonateError]] = {
    "RESOLVED": AlreadyResolved,
    "REJECTED": AlreadyRejected,
    "REJECTED_CANCELED": AlreadyCanceled,
    "REJECTED_TIMEDOUT": AlreadyTimedOut,
}

BY_CODE: dict[int, type[ResonateError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest, EncodingError, Unauthorized, AlreadyResolved, AlreadyRejected, AlreadyCanceled,
        AlreadyTimedOut, TaskAlreadyClaimed, TaskAlreadyCompleted, InvalidCounter, TaskNotClaimed, TaskFenced,
        PromiseNotFound, ScheduleNotFound, TaskNotFound, NotRegistered, PromiseAlreadyExists,
        ScheduleAlreadyExists, WorkflowRunning, PayloadTooLarge, StoreLocked, StoreCorrupt, StoreGone, StartupError, Unreachable,
        TLSFailed,
    )
}


def from_json(body: Any, status: int) -> ResonateError:
    """Rebuild an error from its wire shape; an unknown code keeps its message under the base class."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        exc = ResonateError(f"HTTP {status}: {body!r}")
        exc.code = status * 100
        return exc
    code = err.get("code")
    cls = BY_CODE.get(code) if isinstance(code, int) else None
    message = str(err.get("message", ""))
    if cls is None:
        exc = ResonateError(message, err.get("details"))
        exc.code = code if isinstance(code, int) else status * 100
        return exc
    return cls(message, err.get("details"))
