"""Exit codes of the ``resonate`` command, named once (listed in ``resonate --help``).

Scripts branch on these, so they never change meaning: add new ones at the end.
"""

from __future__ import annotations

import concurrent.futures

from resonate import errors

OK = 0
ERROR = 1  # anything not named below
USAGE = 2  # bad flags or arguments, invalid JSON data, a terminal needed but absent
NOT_FOUND = 3  # no such promise, task or schedule; a function the app does not register
UNREACHABLE = 4  # no daemon answers (or one holds the database but its socket is silent)
CONFLICT = 5  # the promise is already completed, or exists with another idempotency key; a workflow still runs
TIMED_OUT = 6  # waiting ran past --timeout, or the promise itself timed out
REJECTED = 7  # the execution (or the awaited promise) was rejected or canceled

TABLE = [
    (OK, "ok"),
    (ERROR, "error"),
    (USAGE, "usage error (bad flag, argument or JSON)"),
    (NOT_FOUND, "not found (promise, task, function)"),
    (UNREACHABLE, "daemon unreachable"),
    (CONFLICT, "conflict: already completed, exists, or still running"),
    (TIMED_OUT, "timed out waiting"),
    (REJECTED, "execution rejected or canceled"),
]

HELP = "Exit codes: " + ", ".join(f"{code} {what}" for code, what in TABLE) + "."

_NOT_FOUND = (errors.PromiseNotFound, errors.TaskNotFound, errors.ScheduleNotFound, errors.NotRegistered)
_CONFLICT = (errors.AlreadyResolved, errors.AlreadyRejected, errors.AlreadyCanceled, errors.AlreadyTimedOut,
             errors.PromiseAlreadyExists, errors.ScheduleAlreadyExists, errors.WorkflowRunning)


def code_for(exc: BaseException) -> int:
    """The exit code for an error that reached the command line."""
    if isinstance(exc, _NOT_FOUND):
        return NOT_FOUND
    if isinstance(exc, _CONFLICT):
        return CONFLICT
    if isinstance(exc, (errors.Unreachable, errors.StoreLocked, errors.UntrustedDaemon)):
        return UNREACHABLE
    if isinstance(exc, (TimeoutError, concurrent.futures.TimeoutError, errors.PromiseTimedOut)):
        return TIMED_OUT
    if isinstance(exc, errors.InvalidRequest):
        return USAGE
    return ERROR


def code_for_state(state: str) -> int:
    """How a completed promise ends a command that waited on it."""
    if state == "RESOLVED":
        return OK
    if state == "REJECTED_TIMEDOUT":
        return TIMED_OUT
    return REJECTED
