"""The worker side of a Resonate instance: takes tasks, runs executions, heartbeats, settles handles.

Depends on the transport and on ``Execution``; an execution never calls back into it: it returns the
root's outcome (settled here on the handles waiting for it) or ``Suspended``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
import threading
import time
from typing import Any

from resonate_daemon.protocol import ClaimTask, CreateSubscription, DropTask, GetPromise, Heartbeat
from resonate_daemon.protocol.records import FOREVER, Message, Promise, Task
from resonate_daemon.protocol.results import Claimed, Running

from . import codec
from .errors import NotRegistered, ResonateError, TaskFenced
from .execution import Execution, Suspended
from .lease import Lease
from .registry import Registry
from .transport import Transport

log = logging.getLogger("resonate")

SHOW_RUNNING_AFTER_S = 1.0  # a step running this long is reported to the store (tree, steps)


class Runtime:
    def __init__(self, transport: Transport, registry: Registry, dependencies: dict[str, Any], group: str,
                 pid: str, ttl_s: float, workers: int | None) -> None:
        self.transport = transport
        self.registry = registry
        self.dependencies = dependencies
        self.group = group
        self.pid = pid
        self.ttl_ms = int(ttl_s * 1000)
        self.lease = Lease(self.ttl_ms)  # when we last knew every task we hold is still ours
        self.recv = f"poll://any@{group}/{pid}"
        self.unicast = f"poll://uni@{group}/{pid}"
        self.workers = workers or 4
        self.worker = f"{socket.gethostname()}:{os.getpid()}"  # who ran a step, as the history shows it
        self._lacking: set[str] = set()  # tasks given back because this process lacks their function
        self.running: dict[str, Running] = {}  # the steps executing here now, by id (for the heartbeat)
        self.stopping = threading.Event()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._futures: dict[str, concurrent.futures.Future[Any]] = {}
        self._held: dict[str, Task] = {}
        self._idle = threading.Condition(self._lock)
        self._heartbeat: threading.Thread | None = None
        self._started = False

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            self.stopping.clear()
            self._pool = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="resonate-worker")
        self._heartbeat = threading.Thread(target=self._beat, name="resonate-heartbeat", daemon=True)
        self._heartbeat.start()
        try:
            self.transport.connect(self.group, self.pid, self.on_message, self.registry.announced(), self.ttl_ms)
        except BaseException:
            self.stop()  # nothing answers: release the pool, the heartbeat thread and the transport
            raise

    def stop(self) -> None:
        """Stop heartbeats first, so the store can hand our unfinished work to another process."""
        with self._lock:
            if not self._started:
                # Never started (a client used only for promises.*): still release its connections.
                self.transport.close()
                return
            self._started = False
        self.stopping.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self.transport.close()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until this process holds no task (every execution here finished or suspended)."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._held, timeout)

    def _beat(self) -> None:
        """Extend our leases every ttl/2 while we hold tasks; and report the steps running here for a
        second or more as soon as that set changes (short steps cost nothing: they are stored when done)."""
        interval = max(self.ttl_ms / 2000.0, 0.05)
        tick = min(interval, SHOW_RUNNING_AFTER_S)
        last_beat, reported = time.monotonic(), frozenset[str]()
        while not self.stopping.wait(tick):
            if not self._held and not reported:
                continue
            now = self.transport.now()
            long = tuple(r for r in list(self.running.values()) if now - r.started >= SHOW_RUNNING_AFTER_S * 1000)
            shown = frozenset(r.id for r in long)
            if time.monotonic() - last_beat < interval and shown == reported:
                continue
            try:
                sent, held = time.monotonic(), len(self._held)
                affected = self.transport.call(Heartbeat(self.pid, long))
                last_beat, reported = time.monotonic(), shown
                if affected >= held:  # every task we hold is still ours (fewer: some moved on while we slept)
                    self.lease.confirm(sent)
            except Exception as exc:  # a daemon restart or a blip; the next beat tries again
                log.warning("heartbeat failed: %s", exc)

    # -- messages ---------------------------------------------------------------------------------
    def on_message(self, message: Message) -> None:
        if message.type == "connected":  # the push stream came back: re-check what handles wait for
            if self._pool is not None and self._futures:
                self._pool.submit(self._recheck)
            return
        if message.type == "notify":
            if message.promise is not None:
                self.settle_promise(message.promise)
            return
        task = message.task
        if message.claimed is not None:  # claimed for us by the daemon: run it, or give it straight back
            self._run_claimed(message.claimed)
            return
        if task is not None and task.id in self._lacking:
            return
        if task is not None and task.func is not None and not self.registry.has(task.func, task.version):
            # Never claimed here, never rejected: it waits for a worker that has the function (a daemon
            # sends it to one; in local mode, a later run of a program that registers it).
            log.warning("task %s runs %s (version %s), which is not registered here; left for a worker that has it",
                        task.id, task.func, task.version or "any")
            return
        if message.task is not None and self._pool is not None and not self.stopping.is_set():
            try:
                self._pool.submit(self._take, message.task)
            except RuntimeError:  # pool shut down while stopping
                pass

    def _run_claimed(self, claimed: Claimed) -> None:
        task = claimed.task
        if self._pool is None or self.stopping.is_set() or (
                task.func is not None and not self.registry.has(task.func, task.version)):
            try:  # not here (stopping, or a function this process lacks): back for another worker at once
                self.transport.call(DropTask(task.id, task.counter))
            except ResonateError as exc:
                log.debug("drop %s@%d: %s", task.id, task.counter, exc)
            return
        try:
            self.submit(claimed)
        except RuntimeError:  # the pool shut down while stopping: the stream's close gives the task back
            pass

    def _take(self, task: Task) -> None:
        try:
            sent = time.monotonic()
            claimed = self.transport.call(ClaimTask(task.id, task.counter, self.pid, self.ttl_ms, graph=True))
            self.lease.confirm(sent)
        except ResonateError as exc:
            log.debug("claim %s@%d: %s", task.id, task.counter, exc)  # someone else has it, or it is done
            return
        self.execute(claimed)

    def submit(self, claimed: Claimed) -> None:
        """Run a task this process already claimed (it created the invocation claimed)."""
        assert self._pool is not None
        with self._lock:
            self._held[claimed.task.id] = claimed.task
        self.lease.confirm()
        self._pool.submit(self.execute, claimed)

    def execute(self, claimed: Claimed) -> None:
        task = claimed.task
        with self._lock:
            self._held[task.id] = task
        try:
            result = Execution(self.transport, self.registry, self.dependencies, claimed, self.recv,
                               self.stopping, self.worker, self.running, self.lease).run()
            if isinstance(result, Suspended):
                self.suspended(task.root_promise_id)
            else:
                self.settle_handles(task.root_promise_id, result)
        except TaskFenced as exc:  # paused past the lease: another worker has it now; we stop, write nothing
            log.warning("abandoned %s: %s", task.root_promise_id, exc)
            self.suspended(task.root_promise_id)  # a handle here waits for whoever finishes it
        except NotRegistered as exc:  # never a rejection for that: give it back for a worker that has it
            log.warning("%s; giving task %s back", exc, task.id)
            self._lacking.add(task.id)
            try:
                self.transport.call(DropTask(task.id, task.counter))
            except ResonateError:
                pass
        except Exception as exc:  # the store failed under us: drop the task so it is retried
            log.exception("execution of %s failed: %s", task.root_promise_id, exc)
            try:
                self.transport.call(DropTask(task.id, task.counter))
            except Exception:
                pass
        finally:
            with self._lock:
                self._held.pop(task.id, None)
                if not self._held:
                    self._idle.notify_all()

    # -- handles ----------------------------------------------------------------------------------
    def future(self, id: str) -> tuple[concurrent.futures.Future[Any], bool]:
        """The shared future for a promise id, and whether it was just made."""
        with self._lock:
            fut = self._futures.get(id)
            if fut is not None:
                return fut, False
            fut = concurrent.futures.Future()
            self._futures[id] = fut
            return fut, True

    def settle_handles(self, id: str, outcome: tuple[bool, Any]) -> None:
        with self._lock:
            fut = self._futures.pop(id, None)
        if fut is not None and not fut.done():
            ok, value = outcome
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def settle_promise(self, promise: Promise) -> None:
        if promise.pending:
            return
        if promise.id in self._futures:
            self.settle_handles(promise.id, codec.outcome(promise.state, promise.value, promise.id))

    def watch(self, promise: Promise) -> None:
        """Make sure a waiting handle hears of ``promise``'s completion, wherever it happens."""
        if not promise.pending:
            self.settle_promise(promise)
            return
        reg = self.transport.call(CreateSubscription(promise.id, self.pid, FOREVER, self.unicast))
        if not reg.promise.pending:
            self.settle_promise(reg.promise)

    def _recheck(self) -> None:
        for id in list(self._futures):
            try:
                self.watch(self.transport.call(GetPromise(id)))
            except ResonateError as exc:
                log.warning("cannot re-check %s: %s", id, exc)

    def suspended(self, root_id: str) -> None:
        """An execution suspended: if a handle here waits on it, another process may finish it."""
        if root_id in self._futures:
            try:
                self.watch(self.transport.call(GetPromise(root_id)))
            except ResonateError as exc:
                log.warning("cannot subscribe to %s: %s", root_id, exc)
