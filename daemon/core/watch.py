"""Watching a call graph change (``resonate tree --follow``, the daemon's ``/v1/promises/{id}/watch``).

The engine notes, in each transaction, the promises and tasks it wrote and the steps workers report
running, as ``(root, id, invocation)``; after the commit it offers them to every ``Watch``. A watch
holds the roots of one call graph: the workflow's id and the rpc children found under it (an rpc child
runs as a root of its own: its steps carry its id as their ``resonate:root``). A hit calls ``notify``,
which only wakes the watcher: it reads the tree again itself, so a watch carries no data and can never
show a state the store does not hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


class Watch:
    __slots__ = ("roots", "notify")

    def __init__(self, roots: Iterable[str], notify: Callable[[], None]) -> None:
        self.roots = set(roots)
        self.notify = notify

    def offer(self, touched: list[tuple[str, str, bool]]) -> None:
        hit = False
        for root, id, invocation in touched:
            if root in self.roots or id in self.roots:
                hit = True
                if invocation:  # an rpc child under our graph: its own steps are ours to watch too
                    self.roots.add(id)
        if hit:
            self.notify()
