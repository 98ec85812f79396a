"""Push streams and message routing: who gets each invoke, resume and notify message.

Everything here runs on the daemon's event loop, the engine's only caller: the engine hands committed
messages to ``Dispatcher.sink``, which picks a connection and puts the message on its queue; the
connection's own stream coroutine writes it as a server-sent event. No locks, no threads. A task
counts as sent (``engine.mark_sent``) only after its bytes went to the socket, so a task routed to a
connection that closed first is routed again.

Addresses (PROTOCOL.md "Push messages"): ``poll://any@G/P`` goes to P if P is connected to G, else to
any live connection of G (round robin); ``poll://uni@G/P`` only to P; ``poll://any@G`` to any live
connection of G. With nobody to take it, a task stays INIT and goes out when a fitting worker connects.
"""

from __future__ import annotations

import asyncio
import json
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from ..protocol import ClaimTask
from ..protocol.records import Address, Message, parse_address

if TYPE_CHECKING:
    from ..core.engine import Engine
    from .batch import Batcher

log = logging.getLogger("resonate.dispatch")

# A task (id, counter) goes to one connection at most once. The connection is a live TCP or Unix
# stream, so the first copy arrived; a second copy would make an official 0.6.x worker claim twice and
# die on 40306 (docs/official-sdk-wire.md 8.1). Resends go to other connections. Bounded memory.
DEDUPE_MAX = 4096
ASSIGNED_MAX = 65536


class Connection:
    """One live push stream: a worker process ``pid`` of ``group``, and the functions it announced
    (``None``: it announced none, like an official 0.6.x worker, and is sent every task)."""

    def __init__(self, group: str, pid: str, functions: dict[str, frozenset[int]] | None = None,
                 lease_ms: int | None = None) -> None:
        self.group = group
        self.pid = pid
        self.functions = functions
        self.lease_ms = lease_ms  # ours: its tasks go out claimed for it, with this lease
        self.queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self.closed = False
        self._sent: dict[tuple[str, int], None] = {}  # insertion-ordered set

    def can_run(self, msg: Message) -> bool:
        """Could this worker run the message's task? (Notifications go anywhere they are addressed.)"""
        task = msg.task
        if task is None or task.func is None or self.functions is None:
            return True
        versions = self.functions.get(task.func)
        if versions is None:
            return False
        return bool(versions) if task.version == 0 else task.version in versions

    def push(self, msg: Message | None) -> None:
        """Queue ``msg`` for this stream. None ends the stream."""
        if not self.closed:
            self.queue.put_nowait(msg)

    def first_send(self, task_id: str, counter: int) -> bool:
        """False if this task, at this counter, was already written to this connection."""
        key = (task_id, counter)
        if key in self._sent:
            return False
        if len(self._sent) >= DEDUPE_MAX:
            self._sent.pop(next(iter(self._sent)))  # forget the oldest
        self._sent[key] = None
        return True

    def __repr__(self) -> str:
        return f"<Connection {self.group}/{self.pid}>"


class Dispatcher:
    """The registry of live push streams and the router from addresses to streams."""

    def __init__(self, ping_interval_s: float = 15.0) -> None:
        self.ping_interval_s = ping_interval_s
        self.engine: Engine | None = None
        self.batch: Batcher | None = None
        self.shutting_down = False
        self._groups: dict[str, list[Connection]] = {}
        self._next: dict[str, int] = {}
        self._assigned: dict[tuple[str, int], Connection] = {}  # which stream each task went to

    def attach(self, engine: Engine, batch: Batcher) -> None:
        """The engine is built with ``sink=dispatcher.sink``, so it is attached afterwards, with the group
        commit its calls from here go through."""
        self.engine = engine
        self.batch = batch
        engine.router = self.choose

    # -- routing ----------------------------------------------------------------------------------
    def sink(self, messages: list[Message]) -> None:
        for msg in messages:
            self.route(msg)

    def choose(self, msg: Message) -> tuple[str, int] | None:
        """For the engine, inside the transaction that lets ``msg``'s task go out: the (process id, lease)
        it is claimed for, when routing picks a stream that gave a lease; None otherwise (nobody can take
        it now, or an official worker, which claims for itself: the message goes out unclaimed)."""
        try:
            addr = parse_address(msg.recv)
        except ValueError:
            return None
        conn = self._pick(addr, msg, leased=True) if msg.task is not None else None
        return (conn.pid, conn.lease_ms) if conn is not None and conn.lease_ms is not None else None

    def route(self, msg: Message) -> Connection | None:
        try:
            addr = parse_address(msg.recv)
        except ValueError:
            log.warning("dropping a %s message with an invalid address %r", msg.type, msg.recv)
            return None
        if msg.claimed is not None:  # claimed for one process: to its stream, or (gone) its release frees it
            holder = msg.claimed.task.process_id
            conns = [c for c in self._groups.get(addr.group, ()) if c.pid == holder]
            if not conns:
                log.debug("task %s was claimed for %s, whose stream closed", msg.claimed.task.id, holder)
                return None
            conns[-1].push(msg)
            return conns[-1]
        target = self._pick(addr, msg)
        if target is not None and msg.task is not None:
            self._assign(msg.task.id, msg.task.counter, target)
        if target is not None:
            target.push(msg)
        return target

    def _pick(self, addr: Address, msg: Message, *, leased: bool = False) -> Connection | None:
        """The process the address names if it can run the task, else (``any``) the next of the group
        that can, round robin. None: nobody can now; the task waits in INIT for one to connect.
        ``leased``: only streams that gave a lease (``choose``); the process the address names, connected
        without one, is still preferred: None, and ``route`` sends it there unclaimed."""
        able = [c for c in self._groups.get(addr.group, ()) if c.can_run(msg)]
        conns = [c for c in able if c.lease_ms is not None] if leased else able
        if not conns:
            return None
        if addr.pid is not None:
            exact = [c for c in conns if c.pid == addr.pid]
            if exact:
                return exact[-1]
            if addr.mode == "uni" or any(c.pid == addr.pid for c in able):
                return None
        i = self._next.get(addr.group, 0) % len(conns)
        self._next[addr.group] = i + 1
        return conns[i]

    def _assign(self, task_id: str, counter: int, conn: Connection) -> None:
        if len(self._assigned) >= ASSIGNED_MAX:
            self._assigned.pop(next(iter(self._assigned)))  # forget the oldest
        self._assigned[(task_id, counter)] = conn

    def take(self, conn: Connection, msg: Message) -> bool:
        """Assign a backlog task to ``conn`` unless a live connection already has it.

        The backlog is read from the store while live messages are being routed, so a task just
        routed to another worker (still INIT until written) also shows up in it. Sending it to both
        would make one of them fail its claim, which kills an official 0.6.x worker.
        """
        if msg.task is None:
            return True
        key = (msg.task.id, msg.task.counter)
        holder = self._assigned.get(key)
        if holder is not None and holder is not conn and not holder.closed:
            return False
        self._assign(key[0], key[1], conn)
        return True

    def wants(self, conn: Connection, msg: Message) -> bool:
        """Would ``msg`` go to ``conn`` if it were routed now (ignoring round-robin order)?"""
        try:
            addr = parse_address(msg.recv)
        except ValueError:
            return False
        if addr.group != conn.group or not conn.can_run(msg):
            return False
        if addr.pid is None or addr.pid == conn.pid:
            return True
        if addr.mode == "uni":
            return False
        return not any(c.pid == addr.pid and c.can_run(msg) for c in self._groups.get(addr.group, ()))

    # -- registry ---------------------------------------------------------------------------------
    def connect(self, group: str, pid: str, functions: dict[str, frozenset[int]] | None = None,
                lease_ms: int | None = None) -> Connection:
        """Register a new stream. An older stream of the same (group, pid) is closed: only the newest
        gets messages (the legacy server's ``connections.add``; an official 0.6.x poller does not close
        its socket when it stops, and messages must not go to a dead stream)."""
        conn = Connection(group, pid, functions, lease_ms)
        conns = self._groups.setdefault(group, [])
        for old in [c for c in conns if c.pid == pid]:
            conns.remove(old)
            old.push(None)
            old.closed = True
        conns.append(conn)
        log.info("worker %s/%s connected%s", group, pid,
                 "" if functions is None else f" ({len(functions)} functions)")
        return conn

    def disconnect(self, conn: Connection) -> tuple[list[Message], bool]:
        """Unregister; return the messages it never wrote, and whether it was its process's last stream."""
        conn.closed = True
        conns = self._groups.get(conn.group, [])
        if conn in conns:
            conns.remove(conn)
        if not conns:
            self._groups.pop(conn.group, None)
            self._next.pop(conn.group, None)
        last = not any(c.pid == conn.pid for cs in self._groups.values() for c in cs)
        leftovers: list[Message] = []
        while not conn.queue.empty():
            msg = conn.queue.get_nowait()
            if msg is not None:
                leftovers.append(msg)
        log.info("worker %s/%s disconnected", conn.group, conn.pid)
        return leftovers, last

    def workers(self) -> dict[str, list[str]]:
        """Connected process ids by group (for /v1/status)."""
        return {g: sorted({c.pid for c in cs}) for g, cs in sorted(self._groups.items())}

    def functions(self) -> dict[str, dict[str, dict[str, list[int]] | None]]:
        """What each connected process announced, by group (None: nothing, so it takes everything)."""
        return {g: {c.pid: None if c.functions is None else {f: sorted(v) for f, v in sorted(c.functions.items())}
                    for c in cs} for g, cs in sorted(self._groups.items())}

    def routable(self, msg: Message) -> bool:
        """Would some live connection take this message now?"""
        try:
            addr = parse_address(msg.recv)
        except ValueError:
            return False
        return self._pick_any(addr, msg)

    def _pick_any(self, addr: Address, msg: Message) -> bool:
        conns = [c for c in self._groups.get(addr.group, ()) if c.can_run(msg)]
        if addr.mode == "uni":
            return any(c.pid == addr.pid for c in conns)
        return bool(conns)

    def close_all(self) -> None:
        """End every stream (daemon shutdown). Leases are kept: workers may finish on the next daemon."""
        self.shutting_down = True
        for conn in [c for cs in self._groups.values() for c in cs]:
            conn.push(None)


class PushStream:
    """The ASGI response of ``GET /poll/{group}/{pid}``: server-sent events until either side closes."""

    def __init__(self, dispatcher: Dispatcher, group: str, pid: str, *, release_on_close: bool = True,
                 functions: dict[str, frozenset[int]] | None = None, lease_ms: int | None = None) -> None:
        self.dispatcher = dispatcher
        self.group = group
        self.pid = pid
        self.functions = functions
        # Ours: the worker's lease. Its tasks are then claimed here, for it, before they are pushed, with
        # the claim's answer in the message: a task costs the worker no claim request. (Official 0.6.x
        # workers send none: they get the task and claim it.)
        self.lease_ms = lease_ms
        # Our SDK's streams (/poll/G/P) give their tasks back at once when they close. Legacy streams
        # (the --poll-port form) do not: an official 0.6.x worker keeps running and heartbeating its
        # tasks across a reconnect and dies if fenced out, so for it the lease is the signal.
        self.release_on_close = release_on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        dispatcher = self.dispatcher
        engine, batch = dispatcher.engine, dispatcher.batch
        assert engine is not None and batch is not None
        if dispatcher.shutting_down:  # a worker reconnecting in the instant before the listener closes
            await _error(send, 503, "the daemon is shutting down")
            return
        conn = dispatcher.connect(self.group, self.pid, self.functions, self.lease_ms)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no")]})
            # A comment first: clients see the stream is up before any message exists.
            await send({"type": "http.response.body", "body": b": connected\n\n", "more_body": True})
            if self.lease_ms is None:
                backlog = [m for m in await batch.call(engine.dispatchable)
                           if dispatcher.wants(conn, m) and dispatcher.take(conn, m)]
            else:  # claimed for this worker in one transaction, as live tasks are (Engine.claimed_for)
                lease = self.lease_ms

                def pick(m: Message) -> tuple[str, int] | None:
                    return (conn.pid, lease) if dispatcher.wants(conn, m) and dispatcher.take(conn, m) else None

                backlog = await batch.call(partial(engine.claim_backlog, pick))
            for msg in backlog:
                conn.queue.put_nowait(msg)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_watch_disconnect, receive, tg.cancel_scope)
                await self._pump(conn, send, engine, batch)
                tg.cancel_scope.cancel()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the peer went away mid-write
            pass
        finally:
            leftovers, last = dispatcher.disconnect(conn)
            with anyio.CancelScope(shield=True):
                if last and self.release_on_close and not dispatcher.shutting_down:
                    batch.post(partial(engine.release_process, self.pid), f"releasing the tasks of {self.pid}")
                for msg in leftovers:
                    dispatcher.route(msg)

    async def _pump(self, conn: Connection, send: Any, engine: Engine, batch: Batcher) -> None:
        while True:
            try:
                with anyio.fail_after(self.dispatcher.ping_interval_s):
                    msg = await conn.queue.get()
            except TimeoutError:
                await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
                continue
            if msg is None:
                return
            msgs = [msg]
            while not conn.queue.empty():  # what queued meanwhile goes out in one write
                more = conn.queue.get_nowait()
                if more is None:
                    conn.queue.put_nowait(None)  # the end, after these
                    break
                msgs.append(more)
            msgs = [m for m in msgs if m.task is None or conn.first_send(m.task.id, m.task.counter)]
            body = "".join(f"data: {json.dumps(_wire(m, engine), separators=(',', ':'))}\n\n" for m in msgs)
            if body:
                await send({"type": "http.response.body", "body": body.encode(), "more_body": True})
            for m in msgs:  # in the next batch, before the claim this push brings (it queues after)
                if m.task is not None and m.claimed is None:  # a failure leaves the task INIT, sent again
                    batch.post(partial(engine.mark_sent, m.task.id, m.task.counter, conn.pid),
                               f"marking task {m.task.id} sent")


def _wire(m: Message, engine: Engine) -> dict[str, Any]:
    """A message as its ``data:`` line carries it: a task claimed for its worker carries the claim's
    answer, with the daemon's clock (a worker that claims nothing learns it from here, for its deadlines)."""
    obj = m.to_json()
    if m.claimed is not None:
        t = m.claimed.task
        answer = ClaimTask(t.id, t.counter, t.process_id or "?", t.ttl or 1, graph=True).respond(m.claimed)[1]
        obj["claimed"] = {**answer, "now": engine.clock.now()}
    return obj


async def _watch_disconnect(receive: Any, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


async def _error(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": {"code": status * 100, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


WATCH_COALESCE_S = 0.05  # a burst of commits under one graph wakes a watcher once per this much


class WatchStream:
    """The ASGI response of ``GET /v1/promises/{id}/watch``: a server-sent event ``{"type": "changed",
    "id"}`` after each commit that changes the call graph under ``id`` (bursts coalesced), and a ping
    comment when idle, until the client closes. The events carry no data: the client reads the tree."""

    def __init__(self, engine: Engine, id: str, ping_interval_s: float) -> None:
        self.engine = engine
        self.id = id
        self.ping_interval_s = ping_interval_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(changed.set)

        stop = self.engine.watch(self.id, wake)
        event = b"data: " + json.dumps({"type": "changed", "id": self.id}).encode() + b"\n\n"
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no")]})
            await send({"type": "http.response.body", "body": b": watching\n\n", "more_body": True})
            async with anyio.create_task_group() as tg:
                tg.start_soon(_watch_disconnect, receive, tg.cancel_scope)
                while True:
                    try:
                        with anyio.fail_after(self.ping_interval_s):
                            await changed.wait()
                    except TimeoutError:
                        await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
                        continue
                    changed.clear()
                    await send({"type": "http.response.body", "body": event, "more_body": True})
                    await anyio.sleep(WATCH_COALESCE_S)
        except OSError:  # the peer went away mid-write
            pass
        finally:
            stop()
