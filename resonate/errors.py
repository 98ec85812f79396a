"""Every error resonate raises, in one tree: ``except resonate.ResonateError`` catches them all.

They are defined once, in the protocol kernel (``resonate_daemon.errors``, standard library only), so
that an error raised by the daemon and one raised in this process are the same class with the same
stable ``code``; each says when it is raised, and all pickle.
"""

from __future__ import annotations

from resonate_daemon.errors import (
    AlreadyCanceled,
    AlreadyRejected,
    AlreadyResolved,
    AlreadyTimedOut,
    EncodingError,
    Forbidden,
    InvalidCounter,
    InvalidRequest,
    NondeterminismError,
    NonRetryable,
    NotRegistered,
    PayloadTooLarge,
    PromiseAlreadyExists,
    PromiseCanceled,
    PromiseNotFound,
    PromiseRejected,
    PromiseTimedOut,
    ResonateError,
    ScheduleAlreadyExists,
    ScheduleNotFound,
    StartupError,
    StoreCorrupt,
    StoreFull,
    StoreGone,
    StoreLocked,
    TaskAlreadyClaimed,
    TaskAlreadyCompleted,
    TaskFenced,
    TaskNotClaimed,
    TaskNotFound,
    TLSFailed,
    Unauthorized,
    Unreachable,
    UntrustedDaemon,
    WorkflowRunning,
)

__all__ = [
    "AlreadyCanceled", "AlreadyRejected", "AlreadyResolved", "AlreadyTimedOut", "EncodingError", "Forbidden", "InvalidCounter",
    "InvalidRequest", "NondeterminismError", "NonRetryable", "NotRegistered", "PayloadTooLarge", "PromiseAlreadyExists",
    "PromiseCanceled", "PromiseNotFound", "PromiseRejected", "PromiseTimedOut", "ResonateError",
    "ScheduleAlreadyExists", "ScheduleNotFound", "StartupError", "StoreCorrupt", "StoreFull", "StoreGone", "StoreLocked", "TaskAlreadyClaimed",
    "TaskAlreadyCompleted", "TaskFenced", "TaskNotClaimed", "TaskNotFound", "TLSFailed", "Unauthorized", "Unreachable", "UntrustedDaemon",
    "WorkflowRunning",
]
