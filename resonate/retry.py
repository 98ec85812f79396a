"""Retry policies for plain (non-generator) functions, with the Resonate 0.6 defaults.

``next(attempt)`` is the delay in seconds before attempt number ``attempt`` (0 is the first try, which
waits 0), or None when no attempt is left.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol


class RetryPolicy(Protocol):
    def next(self, attempt: int) -> float | None: ...


@dataclass(frozen=True)
class Exponential:
    """delay * factor**(attempt-1), capped at max_delay: 1 s, 2 s, 4 s ... 30 s by default."""

    delay: float = 1
    max_retries: int = sys.maxsize
    factor: float = 2
    max_delay: float = 30

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
