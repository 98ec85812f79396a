"""Retention: finished call graphs older than a cutoff are deleted in small batches, then the file's free
pages are given back (a mixin of ``Engine``; the store decides what a finished graph is, see
``store/retention.py``).

Each batch is one transaction of at most about ``GC_BATCH`` promises, so a collection never holds the
store for long: ``gc_steps`` yields after each batch, and its callers on the daemon's event loop (the
scheduler's periodic pass, the ``POST /v1/gc`` route) let requests in between. Local mode runs it under
the transport's lock, batch after batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..protocol import CollectGarbage
from ..protocol.results import Collected

if TYPE_CHECKING:
    from ..clock import Clock
    from ..store import Store

GC_BATCH = 500  # promises per transaction: a few ms of work, so a request waits at most that long
RECLAIM_PAGES = 2048  # free pages given back per transaction (8 MiB at SQLite's 4 KiB pages)


class Retention:
    """The retention operations of ``Engine`` (which provides the attributes declared below)."""

    if TYPE_CHECKING:
        store: Store
        clock: Clock

        def _run(self, fn: Callable[[int], Any], *, durable: bool = True) -> Any: ...

    def collect_garbage(self, op: CollectGarbage) -> Collected:
        total = Collected()
        for step in self.gc_steps(op.older_than, op.dry_run):
            total = step
        return total

    def gc_steps(self, older_than: int, dry_run: bool = False) -> Iterator[Collected]:
        """Collect what completed more than ``older_than`` ms ago, one transaction per step, yielding the
        running total after each; the last total has the bytes given back and the size after."""
        before = self.clock.now() - older_than
        total = Collected(before=before, dry_run=dry_run)
        after: tuple[int, str] | None = None
        while True:
            def batch(now: int, start: tuple[int, str] | None = after) -> tuple[Collected, tuple[int, str] | None]:
                return self.store.collect(before, start, GC_BATCH, dry_run)

            found, after = self._run(batch)
            total += found
            yield total
            if after is None:
                break
        more = not dry_run
        while more:
            freed, more = self.store.reclaim(RECLAIM_PAGES)
            total = replace(total, reclaimed=total.reclaimed + freed)
            if more:
                yield total
        yield replace(total, size=self.store.size())
