"""Call options (``.options(...)`` on calls, functions and ``Resonate``), with the 0.6 defaults."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from .retry import Exponential, Never, RetryPolicy

ONE_YEAR_S = 31_536_000.0


DEFAULT_ATTEMPTS = 10  # a plain step's attempts unless its policy says otherwise: about 2.5 minutes of backoff


def default_retry_policy(func: Callable[..., Any]) -> RetryPolicy:
    """Generator functions are not retried (they replay); plain functions retry with backoff, 10 attempts
    in all (1 s, 2 s, 4 s ... 30 s apart), then fail with the last error: a bug does not retry forever."""
    return Never() if inspect.isgeneratorfunction(func) else Exponential(max_retries=DEFAULT_ATTEMPTS - 1)


@dataclass(frozen=True)
class Options:
    id: str | None = None
    timeout: float = ONE_YEAR_S  # seconds, relative
    retry_policy: RetryPolicy | Callable[[Callable[..., Any]], RetryPolicy] = default_retry_policy
    tags: dict[str, str] = field(default_factory=dict)
    target: str = "default"
    version: int = 0
    idempotency_key: str | Callable[[str], str] | None = None  # None: the promise id
    durable: bool = True
    non_retryable_exceptions: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.id is not None and (not isinstance(self.id, str) or not self.id):
            raise TypeError(f"id must be a non-empty str, got {self.id!r}")
        if not isinstance(self.timeout, (int, float)) or isinstance(self.timeout, bool) or self.timeout < 0:
            raise TypeError(f"timeout must be a non-negative number of seconds, got {self.timeout!r}")
        if not isinstance(self.tags, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.tags.items()):
            raise TypeError("tags must map str to str")
        if not isinstance(self.target, str) or not self.target:
            raise TypeError(f"target must be a non-empty str, got {self.target!r}")
        if not isinstance(self.version, int) or self.version < 0:
            raise TypeError(f"version must be an int >= 0, got {self.version!r}")
        if not isinstance(self.non_retryable_exceptions, tuple):
            raise TypeError("non_retryable_exceptions must be a tuple of exception types")

    def merge(self, **changes: Any) -> Options:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        given = {k: v for k, v in changes.items() if v is not None}
        if "tags" in given:
            given["tags"] = {**self.tags, **given["tags"]}
        return Options(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **given})

    def policy_for(self, func: Callable[..., Any]) -> RetryPolicy:
        rp = self.retry_policy
        return rp(func) if callable(rp) and not hasattr(rp, "next") else rp  # type: ignore[return-value]

    def ikey(self, promise_id: str) -> str:
        k = self.idempotency_key
        if k is None:
            return promise_id
        return k(promise_id) if callable(k) else k
