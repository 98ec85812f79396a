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


class RootWatch(Watch):
    """Every workflow at once (the browser UI's live list): notified after a commit that writes a root
    promise, i.e. one that runs a function (``resonate:invoke``) and is the root of its own graph: a
    workflow started, forked, retried, completed. Steps, tasks and heartbeats never wake it, so a busy
    daemon wakes it once per workflow change, not once per step. Register it with ``subscribe``."""

    __slots__ = ()

    def __init__(self, notify: Callable[[], None]) -> None:
        super().__init__((), notify)

    def offer(self, touched: list[tuple[str, str, bool]]) -> None:
        if any(invocation and root == id for root, id, invocation in touched):
            self.notify()


def subscribe(watches: list[Watch], watch: Watch) -> Callable[[], None]:
    """Add ``watch`` to an engine's ``watches``; returns the function that removes it. As with
    ``Engine.watch``, ``notify`` runs on the engine's thread after the commit and must only wake."""
    watches.append(watch)

    def stop() -> None:
        if watch in watches:
            watches.remove(watch)

    return stop
