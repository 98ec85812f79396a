"""One exception tree for the daemon, with the stable codes of the legacy Resonate server API.

The HTTP status of an error is ``code // 100``. Every error pickles (it crosses process boundaries in
tests and in the supervisor), so each class keeps its constructor arguments in ``args``.
"""

from __future__ import annotations

from typing import Any


class ResonateError(Exception):
    """Base of every error the engine, store or API raises on purpose."""

    code = 50000

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message, details)
        self.message = message
        self.details = details

    @property
    def status(self) -> int:
        return self.code // 100

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return {"error": body}

    def __str__(self) -> str:
        return self.message


class InvalidRequest(ResonateError):
    """The request is malformed: wrong types, missing fields, bad ids, bad cron."""

    code = 40000


class Unauthorized(ResonateError):
    """The TCP listener got no token or a wrong one."""

    code = 40100


class AlreadyResolved(ResonateError):
    """A completion met a promise that is already RESOLVED (a create gets PromiseAlreadyExists)."""

    code = 40301


class AlreadyRejected(ResonateError):
    """A completion met a promise that is already REJECTED."""

    code = 40302


class AlreadyCanceled(ResonateError):
    """A completion met a promise that is already REJECTED_CANCELED."""

    code = 40303


class AlreadyTimedOut(ResonateError):
    """A completion met a promise that is already REJECTED_TIMEDOUT (or timed out now, strictly)."""

    code = 40304


class TaskAlreadyClaimed(ResonateError):
    """A claim met a task that another process holds."""

    code = 40306


class TaskAlreadyCompleted(ResonateError):
    """A claim, drop or complete met a task that is completed."""

    code = 40307


class InvalidCounter(ResonateError):
    """The counter given is not the task's current counter: the caller was fenced out."""

    code = 40308


class TaskNotClaimed(ResonateError):
    """A complete or drop met a task that nobody holds."""

    code = 40309


class PromiseNotFound(ResonateError):
    """No promise has this id."""

    code = 40400


class ScheduleNotFound(ResonateError):
    """No schedule has this id."""

    code = 40401


class TaskNotFound(ResonateError):
    """No task has this id."""

    code = 40403


class PromiseAlreadyExists(ResonateError):
    """A create met an existing promise whose idempotency key differs (or strict create)."""

    code = 40900


class ScheduleAlreadyExists(ResonateError):
    """A schedule create met an existing schedule with another idempotency key."""

    code = 40901


class PayloadTooLarge(ResonateError):
    """The request body is over the configured limit."""

    code = 41300


class StoreLocked(ResonateError):
    """Another live process holds the database file."""

    code = 50300


ALREADY_COMPLETED: dict[str, type[ResonateError]] = {
    "RESOLVED": AlreadyResolved,
    "REJECTED": AlreadyRejected,
    "REJECTED_CANCELED": AlreadyCanceled,
    "REJECTED_TIMEDOUT": AlreadyTimedOut,
}

BY_CODE: dict[int, type[ResonateError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest, Unauthorized, AlreadyResolved, AlreadyRejected, AlreadyCanceled, AlreadyTimedOut,
        TaskAlreadyClaimed, TaskAlreadyCompleted, InvalidCounter, TaskNotClaimed, PromiseNotFound,
        ScheduleNotFound, TaskNotFound, PromiseAlreadyExists, ScheduleAlreadyExists, PayloadTooLarge,
        StoreLocked,
    )
}


def from_json(body: Any, status: int) -> ResonateError:
    """Rebuild an error from its wire shape; unknown codes keep their message under the base class."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        exc = ResonateError(f"HTTP {status}: {body!r}")
        exc.code = status * 100
        return exc
    code = err.get("code")
    cls = BY_CODE.get(code) if isinstance(code, int) else None
    exc = (cls or ResonateError)(str(err.get("message", "")), err.get("details"))
    if cls is None:
        exc.code = code if isinstance(code, int) else status * 100
    return exc
