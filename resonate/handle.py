"""Handles on executions started from outside a durable function."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Handle(Generic[T]):
    """The eventual result of an execution: ``handle.result()`` blocks, ``await handle`` does not.

    Example::

        handle = resonate.begin_run("report-7", report, 7)
        print(handle.done(), handle.result(timeout=30))
    """

    def __init__(self, id: str, future: concurrent.futures.Future[Any]) -> None:
        self.id = id
        self.future = future

    def done(self) -> bool:
        return self.future.done()

    def result(self, timeout: float | None = None) -> T:
        """The value, or raise the execution's error (or TimeoutError after ``timeout`` seconds)."""
        return self.future.result(timeout=timeout)

    def __await__(self) -> Generator[Any, None, T]:
        import asyncio  # here: a worker that never awaits a handle does not pay for loading asyncio

        return asyncio.wrap_future(self.future).__await__()

    def __repr__(self) -> str:
        return f"Handle(id={self.id!r}, done={self.done()})"
