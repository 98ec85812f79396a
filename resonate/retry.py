"""Retries: the policies (with the Resonate 0.6 defaults) and the durable retry decisions.

``next(attempt)`` is the delay in seconds before attempt number ``attempt`` (0 is the first try, which
waits 0), or None when no attempt is left.

When a plain function fails and its policy gives a delay ``d`` for the next attempt, the execution creates
the timer promise ``{step}.retry.{n}`` (timeout now+d, tag ``resonate:timeout=true``, so the scheduler
resolves it at its deadline) and waits on it exactly like ``ctx.sleep``: when nothing else can run, the
execution suspends, its task completes and the worker holds nothing. On replay a step counts the timers
recorded under it (tag ``resonate:parent`` = the step) to know its attempt number, so a crash
mid-backoff does not restart the count; the replay's input (the call graph read at claim) has them.

Retries end when the policy says so, when the next attempt would start after the step's timeout, on a
``NonRetryable`` error, on an exception type the policy's ``non_retryable`` or the call's
``non_retryable_exceptions`` names, or when the arguments do not fit the function's signature (a
``TypeError`` no retry can fix); the step is then rejected with the last error, its type kept. Each
timer records the attempt that failed, its error and when the next one starts, for ``resonate tree``
and ``steps``. The functions below decide; ``execution.py`` carries the decisions out.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from resonate_daemon.errors import NonRetryable
from resonate_daemon.protocol.records import TAG_FUNC, TAG_PARENT, TAG_ROOT, TAG_TIMEOUT, Promise, Value

from . import codec


class RetryPolicy(Protocol):
    def next(self, attempt: int) -> float | None: ...


@dataclass(frozen=True)
class Exponential:
    """delay * factor**(attempt-1), capped at max_delay: 1 s, 2 s, 4 s ... 30 s by default."""

    delay: float = 1
    max_retries: int = sys.maxsize
    factor: float = 2
    max_delay: float = 30
    non_retryable: tuple[type[BaseException], ...] = ()  # exception types that fail at once

    def next(self, attempt: int) -> float | None:
        if attempt == 0:
            return 0
        if attempt > self.max_retries:
            return None
        return min(self.delay * self.factor ** (attempt - 1), self.max_delay)


@dataclass(frozen=True)
class Linear:
    """delay * attempt, capped at max_delay."""

    delay: float = 1
    max_retries: int = sys.maxsize
    max_delay: float = 30
    non_retryable: tuple[type[BaseException], ...] = ()  # exception types that fail at once

    def next(self, attempt: int) -> float | None:
        if attempt == 0:
            return 0
        if attempt > self.max_retries:
            return None
        return min(self.delay * attempt, self.max_delay)


@dataclass(frozen=True)
class Constant:
    """The same delay before every retry."""

    delay: float = 1
    max_retries: int = sys.maxsize
    non_retryable: tuple[type[BaseException], ...] = ()  # exception types that fail at once

    def next(self, attempt: int) -> float | None:
        if attempt == 0:
            return 0
        if attempt > self.max_retries:
            return None
        return self.delay


@dataclass(frozen=True)
class Never:
    """One attempt only (the default for generator functions)."""

    def next(self, attempt: int) -> float | None:
        return 0 if attempt == 0 else None


# -- durable retries: what the execution records, and when it gives up ------------------------------

RETRY = "retry"  # the resonate:func of a retry timer


def timer_id(step_id: str, attempt: int) -> str:
    """The timer that waits before attempt ``attempt + 1`` of a step."""
    return f"{step_id}.retry.{attempt}"


def timer_tags(root_id: str, step_id: str) -> dict[str, str]:
    return {TAG_TIMEOUT: "true", TAG_ROOT: root_id, TAG_PARENT: step_id, TAG_FUNC: RETRY}


def attempt_of(record: Promise) -> int:
    try:
        return int(record.id.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return 0


def timers_by_step(records: Iterable[Promise]) -> dict[str, list[Promise]]:
    """The retry timers among a call graph's promises, by the step they belong to, in attempt order."""
    index: dict[str, list[Promise]] = {}
    for p in records:
        if p.tags.get(TAG_FUNC) == RETRY and TAG_PARENT in p.tags:
            index.setdefault(p.tags[TAG_PARENT], []).append(p)
    for timers in index.values():
        timers.sort(key=attempt_of)
    return index


def binds(func: Callable[..., Any], args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> bool:
    """Do these arguments fit ``func(ctx, *args, **kwargs)``? (True when it has no signature to check.)"""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return True
    try:
        sig.bind(None, *args, **kwargs)
    except TypeError:
        return False
    return True


def check_args(func: Callable[..., Any], name: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> None:
    """TypeError naming the function when the arguments do not fit it (what a call would raise, counting
    only the caller's arguments, not the context)."""
    if binds(func, args, kwargs):
        return
    sig = inspect.signature(func)
    shown = sig.replace(parameters=[p.replace(annotation=inspect.Parameter.empty)  # names, as people call it
                                    for p in list(sig.parameters.values())[1:]],  # without ctx
                        return_annotation=inspect.Signature.empty)
    try:
        shown.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{name}{shown}: {exc}") from None


def next_delay(policy: RetryPolicy, attempt: int, error: BaseException,
               non_retryable: tuple[type[BaseException], ...], now: int, timeout: int,
               call: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None = None) -> float | None:
    """Seconds to wait before attempt ``attempt + 1`` after ``error``, or None to give up. ``call`` (the
    function and its arguments) lets a TypeError from a signature mismatch end the retries."""
    if isinstance(error, NonRetryable):
        return None
    if non_retryable and isinstance(error, non_retryable):
        return None
    own = getattr(policy, "non_retryable", ())
    if own and isinstance(error, own):
        return None
    if call is not None and isinstance(error, TypeError) and not binds(*call):
        return None
    d = policy.next(attempt)
    if d is None or now + d * 1000 >= timeout:
        return None
    return float(d)


def max_attempts(policy: RetryPolicy) -> int | None:
    """How many attempts the policy allows in all (None: no limit but the step's timeout)."""
    retries = getattr(policy, "max_retries", None)
    if isinstance(retries, int) and retries < sys.maxsize:
        return retries + 1
    return 1 if isinstance(policy, Never) else None


def timer_param(attempt: int, of: int | None, error: BaseException, next_at: int, started: int,
                func: str = "", caller: str = "") -> Value:
    """What a retry timer records: the attempt that failed (of how many), its error, when the next one
    starts, when the step's first attempt started, and the step's function and caller (a local step has
    no promise of its own until it ends: the history shows it from its timer meanwhile)."""
    return codec.encode({"attempt": attempt, "of": of, "error": {"type": codec.type_name(type(error)),
                                                                 "message": str(error)},
                         "next": next_at, "started": started, "func": func, "caller": caller})
