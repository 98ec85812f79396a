"""Live pages: server-sent events from the engine's change stream, never polling.

A page that updates itself holds one ``EventSource`` on a ``ChangeStream``. The stream subscribes to the
engine (``Engine.watch`` for one call graph; ``watch.RootWatch`` for every workflow, which the list uses)
and sends ``{"type": "changed"}`` after a commit that touched what it watches. The event carries no data:
the page fetches its own part again (with its own filters and page), so it only ever shows what the store
holds. Bursts are coalesced: after an event the stream waits ``every_s`` before it sends the next, so a
daemon finishing 1,000 workflows a second makes the list page read itself again once a second, not 1,000
times (and ``static/ui.js`` never has two reads of a part in flight).

The stream also says ``{"type": "ended"}`` and closes when the viewer's session ends (logout, expiry), and
sends a comment line when idle so proxies and the browser keep the connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import anyio
from resonate_daemon.core.engine import Engine
from resonate_daemon.core.watch import RootWatch, subscribe

GRAPH_EVERY_S = 0.05  # one workflow's page: as the daemon's own watch stream (dispatch.WATCH_COALESCE_S)
LIST_EVERY_S = 1.0  # the workflows list: at most one re-read a second, however busy the daemon

Subscribe = Callable[[Callable[[], None]], Callable[[], None]]


def graph_changes(engine: Engine, id: str) -> Subscribe:
    """Changes to the call graph under ``id`` (its promises, tasks, and the steps workers run)."""
    return lambda wake: engine.watch(id, wake)


def root_changes(engine: Engine) -> Subscribe:
    """Any workflow created, forked, retried or completed."""
    return lambda wake: subscribe(engine.watches, RootWatch(wake))


class ChangeStream:
    """The ASGI response of a live page's ``EventSource`` (see the module's docstring)."""

    def __init__(self, changes: Subscribe, *, every_s: float, ping_s: float, alive: Callable[[], bool]) -> None:
        self.changes = changes
        self.every_s = every_s
        self.ping_s = ping_s
        self.alive = alive

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        woken = [False]  # a wake is on its way to the loop: the next commits need not send another

        def wake() -> None:  # on the engine's thread, after its commit: only schedule, never block
            if not woken[0]:
                woken[0] = True
                loop.call_soon_threadsafe(changed.set)

        stop = self.changes(wake)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-store"),
                (b"x-accel-buffering", b"no")]})
            await send({"type": "http.response.body", "body": b": watching\n\n", "more_body": True})
            async with anyio.create_task_group() as tg:
                tg.start_soon(_until_disconnect, receive, tg.cancel_scope)
                await self._events(changed, woken, send)
                tg.cancel_scope.cancel()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the browser went away mid-write
            pass
        finally:
            stop()

    async def _events(self, changed: asyncio.Event, woken: list[bool], send: Any) -> None:
        while self.alive():
            try:
                with anyio.fail_after(self.ping_s):
                    await changed.wait()
            except TimeoutError:
                await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
                continue
            woken[0] = False  # before clear(): a commit from now on schedules a new set(), after this clear
            changed.clear()
            if not self.alive():
                break
            await send({"type": "http.response.body", "body": _event("changed"), "more_body": True})
            await anyio.sleep(self.every_s)  # what changes meanwhile is one more event, not many
        await send({"type": "http.response.body", "body": _event("ended"), "more_body": True})


def _event(kind: str) -> bytes:
    return b"data: " + json.dumps({"type": kind}).encode() + b"\n\n"


async def _until_disconnect(receive: Any, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
