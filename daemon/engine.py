"""The durable promise engine: promises, tasks, callbacks and subscriptions, in one transaction each.

Every public method runs under one lock (the single writer path) inside one store transaction, and
returns records. What must be pushed to workers (invoke and resume tasks, notifications) is collected
while the transaction runs and handed to ``sink`` only after it committed, so a worker is never told
about something that could still roll back.

Task rules (ARCHITECTURE.md): a promise tagged ``resonate:invoke`` gets an invoke task in the same
transaction; a task is claimed with its current counter; a drop, a lapsed lease or a closed connection
puts it back to INIT with counter+1, which fences out the old holder; at most one task per root is out
(ENQUEUED or CLAIMED) at a time, the others wait in INIT until it completes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from . import errors, schedules
from .clock import Clock, SystemClock
from .records import (
    CLAIMED,
    COMPLETED,
    EMPTY,
    ENQUEUED,
    INIT,
    PENDING,
    REJECTED,
    REJECTED_CANCELED,
    RESOLVED,
    TAG_INVOKE,
    TAG_PARENT,
    TAG_ROOT,
    Callback,
    Message,
    Promise,
    Schedule,
    Task,
    Value,
    parse_address,
)
from .store import Store
from .transitions import Complete, Create, timed_out, timeout_state, transition

T = TypeVar("T")

MAX_ID_LENGTH = 1024
RESEND_AFTER_MS = 60_000  # a task sent but not claimed within a minute is sent again
DEFAULT_TTL_MS = 10_000


@dataclass(frozen=True, slots=True)
class Created:
    status: int
    promise: Promise
    task: Task | None = None  # set when the caller asked to claim the invoke task at once


@dataclass(frozen=True, slots=True)
class Registered:
    """Result of a callback or subscription: ``callback`` is None when the promise is already complete."""

    status: int
    promise: Promise
    callback: Callback | None


@dataclass(frozen=True, slots=True)
class Claimed:
    task: Task
    root: Promise
    leaf: Promise | None

    @property
    def type(self) -> str:
        return self.task.type


def check_id(id: Any, what: str = "promise id") -> str:
    if not isinstance(id, str) or not id:
        raise errors.InvalidRequest(f"{what} must be a non-empty string")
    if len(id) > MAX_ID_LENGTH:
        raise errors.InvalidRequest(f"{what} is {len(id)} characters long; the limit is {MAX_ID_LENGTH}")
    if any(ord(c) < 32 or ord(c) == 127 for c in id):
        raise errors.InvalidRequest(f"{what} {id!r} contains control characters")
    return id


class Engine:
    def __init__(self, store: Store, clock: Clock | None = None, *,
                 sink: Callable[[list[Message]], None] | None = None) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.sink = sink
        self.lock = threading.RLock()
        self._outbox: list[Message] = []
        # The scheduler sets ``wake`` and ``wake_at``; a write that makes a deadline earlier than
        # ``wake_at`` calls ``wake`` so the scheduler never sleeps past it.
        self.wake: Callable[[], None] | None = None
        self.wake_at: int | None = None
        self._earliest: int | None = None

    # -- plumbing ---------------------------------------------------------------------------------
    def _run(self, fn: Callable[[int], T | _Fail], *, durable: bool = True) -> T:
        """Run ``fn(now)`` in one transaction; deliver its messages after commit; raise deferred errors.

        ``fn`` may return a ``_Fail``: the transaction still commits (a lazy timeout it stored stays
        stored) and the error is raised afterwards. ``durable=False`` commits without the fsync.
        """
        with self.lock:
            self._outbox = []
            self._earliest = None
            with self.store.transaction(durable):
                result = fn(self.clock.now())
            messages, self._outbox = self._outbox, []
            earliest = self._earliest
        if earliest is not None and self.wake is not None and (self.wake_at is None or earliest < self.wake_at):
            self.wake()
        if messages and self.sink is not None:
            self.sink(messages)
        if isinstance(result, _Fail):
            raise result.error
        return result

    def _deadline(self, at: int) -> None:
        if self._earliest is None or at < self._earliest:
            self._earliest = at

    def read(self, fn: Callable[[], T]) -> T:
        """A read-only query under the lock (no lazy timeouts applied)."""
        with self.lock:
            return fn()

    # -- promises ---------------------------------------------------------------------------------
    def create_promise(self, id: str, timeout: int, param: Value = EMPTY, tags: dict[str, str] | None = None,
                       idempotency_key: str | None = None, strict: bool = False,
                       claim: tuple[str, int] | None = None) -> Created:
        """Create a promise (and its invoke task); ``claim=(process_id, ttl)`` claims that task at once."""
        check_id(id)
        tags = dict(tags or {})
        _check_tags(tags)
        if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
            raise errors.InvalidRequest("timeout must be a non-negative integer (ms since the epoch)")
        target = tags.get(TAG_INVOKE)
        if target is not None:
            try:
                parse_address(target)
            except ValueError as exc:
                raise errors.InvalidRequest(str(exc)) from None
        if claim is not None:
            check_id(claim[0], "process id")  # the same rule as /tasks/claim and /tasks/heartbeat

        return self._run(lambda now: self._create(now, id, timeout, param, tags, idempotency_key, strict, claim))

    def _create(self, now: int, id: str, timeout: int, param: Value, tags: dict[str, str],
                idempotency_key: str | None, strict: bool, claim: tuple[str, int] | None) -> Created | _Fail:
        """The create path inside a transaction (also used by schedules as they fire)."""
        current = self.store.get_promise(id)
        verdict = transition(current, Create(idempotency_key, strict), now)
        if verdict.timeout_state and current is not None:
            current = self._complete(current, verdict.timeout_state, EMPTY, None, now)
        if verdict.error is not None:
            return _Fail(verdict.error)
        if verdict.write != "create":
            assert current is not None
            return Created(verdict.status, current)
        refused = self._canceled_ancestor(id, tags)
        if refused is not None:
            return refused
        target = tags.get(TAG_INVOKE)
        promise = Promise(id=id, state=PENDING, param=param, value=EMPTY, timeout=timeout, tags=tags,
                          created_on=now, idempotency_key_for_create=idempotency_key)
        if now >= timeout:  # born timed out: store it completed, create no task
            promise = replace(promise, state=timeout_state(promise), completed_on=now)
            self.store.insert_promise(promise)
            return Created(201, promise)
        self.store.insert_promise(promise)
        self._deadline(timeout)
        task = None
        if target is not None:
            task = Task(id=f"__invoke:{id}", counter=1, root_promise_id=id, type="invoke", state=INIT,
                        recv=target, timeout=timeout, created_on=now)
            if claim is not None:
                pid, ttl = claim
                task = replace(task, state=CLAIMED, process_id=pid, ttl=ttl, expires_at=now + ttl)
                self._deadline(task.expires_at)
                self.store.insert_task(task)
            else:
                self.store.insert_task(task)
                self._dispatch_root(id)
                task = None
        return Created(201, promise, task)

    def _canceled_ancestor(self, id: str, tags: dict[str, str]) -> _Fail | None:
        """A canceled execution's later writes are refused: no new promise under a canceled parent or root.

        Only new promises pay for this (one or two lookups by primary key); replays of existing ones
        take the 200 path above and never get here.
        """
        seen = set()
        for key, word in ((TAG_PARENT, "parent"), (TAG_ROOT, "root")):
            anc = tags.get(key)
            if not anc or anc == id or anc in seen:
                continue
            seen.add(anc)
            found = self.store.get_promise(anc)
            if found is not None and found.state == REJECTED_CANCELED:
                return _Fail(errors.AlreadyCanceled(
                    f"promise {id!r} not created: its {word} {anc!r} was canceled", {"canceled": anc}))
        return None

    def complete_promise(self, id: str, state: str, value: Value = EMPTY,
                         idempotency_key: str | None = None, strict: bool = False) -> tuple[int, Promise]:
        """Resolve, reject or cancel a promise; returns (201 or 200, the promise as stored)."""
        check_id(id)
        if state not in (RESOLVED, REJECTED, REJECTED_CANCELED):
            raise errors.InvalidRequest(
                f"state must be RESOLVED, REJECTED or REJECTED_CANCELED, not {state!r}")

        def op(now: int) -> tuple[int, Promise] | _Fail:
            current = self.store.get_promise(id)
            verdict = transition(current, Complete(state, idempotency_key, strict), now)
            if verdict.timeout_state and current is not None:
                current = self._complete(current, verdict.timeout_state, EMPTY, None, now)
            if verdict.error is not None:
                if isinstance(verdict.error, errors.PromiseNotFound):
                    return _Fail(errors.PromiseNotFound(f"promise {id!r} not found"))
                return _Fail(verdict.error)
            assert current is not None
            if verdict.write == "complete":
                current = self._complete(current, state, value, idempotency_key, now)
            return verdict.status, current

        return self._run(op)

    def create_and_complete(self, id: str, timeout: int, param: Value, tags: dict[str, str], value: Value,
                            state: str = RESOLVED) -> Promise:
        """One transaction for a local step that already ran: create its promise and complete it.

        If the promise already exists (a replay raced us, or a retry), the stored one wins.
        """
        check_id(id)

        def op(now: int) -> Promise | _Fail:
            current = self.store.get_promise(id)
            if current is not None:
                if current.pending and not timed_out(current, now):
                    return self._complete(current, state, value, id, now)
                if current.pending:
                    return self._complete(current, timeout_state(current), EMPTY, None, now)
                return current
            refused = self._canceled_ancestor(id, tags)
            if refused is not None:
                return refused
            promise = Promise(id=id, state=state, param=param, value=value, timeout=timeout, tags=tags,
                              created_on=now, completed_on=now, idempotency_key_for_create=id,
                              idempotency_key_for_complete=id)
            self.store.insert_promise(promise)
            return promise

        return self._run(op)

    def get_promise(self, id: str) -> Promise:
        """The promise, with a lazy timeout applied (which is a write)."""
        check_id(id)

        def op(now: int) -> Promise | _Fail:
            current = self.store.get_promise(id)
            if current is None:
                return _Fail(errors.PromiseNotFound(f"promise {id!r} not found"))
            if timed_out(current, now):
                current = self._complete(current, timeout_state(current), EMPTY, None, now)
            return current

        with self.lock:
            # The common case, a promise that needs no lazy timeout, costs no write transaction.
            current = self.store.get_promise(id) if isinstance(id, str) and id else None
            if current is not None and not timed_out(current, self.clock.now()):
                return current
        return self._run(op)

    def search_promises(self, id: str | None = None, states: tuple[str, ...] | None = None,
                        tags: dict[str, str] | None = None, limit: int = 100,
                        cursor: tuple[int, str] | None = None) -> tuple[list[Promise], tuple[int, str] | None]:
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise errors.InvalidRequest("limit must be an integer from 1 to 1000")
        self.tick()  # apply due timeouts first, so a search never shows an overdue promise as pending
        with self.lock:
            return self.store.search_promises(id, states, tags, limit, cursor)

    def _complete(self, promise: Promise, state: str, value: Value, ikey: str | None, now: int) -> Promise:
        """Complete in the current transaction: finish its tasks, fire its callbacks and subscriptions."""
        done = replace(promise, state=state, value=value, idempotency_key_for_complete=ikey, completed_on=now)
        self.store.complete_promise(done)
        self.store.complete_tasks_of_root(promise.id, now)
        for cb in self.store.take_callbacks(promise.id):
            if cb.kind == "notify":
                self._outbox.append(Message("notify", cb.recv, promise=done))
            else:
                self._resume(cb, done, now)
        return done

    def _resume(self, cb: Callback, leaf: Promise, now: int) -> None:
        root = self.store.get_promise(cb.root_promise_id)
        if root is None or not root.pending:
            return
        if self.store.tasks_of_root(root.id, (INIT, ENQUEUED)):
            # A task for this root is already on its way; its replay will find the leaf completed.
            return
        task = Task(id=f"__resume:{root.id}:{leaf.id}", counter=1, root_promise_id=root.id, type="resume",
                    state=INIT, recv=cb.recv, timeout=root.timeout, created_on=now, leaf_promise_id=leaf.id)
        existing = self.store.get_task(task.id)
        if existing is not None:
            task = replace(existing, state=INIT, counter=existing.counter + 1, process_id=None, recv=cb.recv)
            self.store.update_task(task)
        else:
            self.store.insert_task(task)
        self._dispatch_root(root.id)

    def _dispatch_root(self, root_id: str) -> None:
        """Send the oldest INIT task of a root, unless one of its tasks is already out."""
        tasks = self.store.tasks_of_root(root_id, (INIT, ENQUEUED, CLAIMED))
        if not tasks or any(t.state != INIT for t in tasks):
            return
        task = tasks[0]
        self._outbox.append(Message(task.type, task.recv, task=task))

    # -- callbacks and subscriptions --------------------------------------------------------------
    def create_callback(self, promise_id: str, root_promise_id: str, timeout: int, recv: str) -> Registered:
        """Ask for a resume task for ``root_promise_id`` when ``promise_id`` completes."""
        check_id(promise_id)
        check_id(root_promise_id, "root promise id")
        _check_recv(recv)
        return self._register(promise_id, f"__resume:{root_promise_id}:{promise_id}", root_promise_id,
                              timeout, recv, "resume")

    def create_subscription(self, promise_id: str, id: str, timeout: int, recv: str) -> Registered:
        """Ask for a notify message to ``recv`` when ``promise_id`` completes."""
        check_id(promise_id)
        check_id(id, "subscription id")
        _check_recv(recv)
        return self._register(promise_id, f"__notify:{promise_id}:{id}", promise_id, timeout, recv, "notify")

    def _register(self, promise_id: str, cb_id: str, root_id: str, timeout: int, recv: str,
                  kind: str) -> Registered:
        def op(now: int) -> Registered | _Fail:
            promise = self.store.get_promise(promise_id)
            if promise is None:
                return _Fail(errors.PromiseNotFound(f"promise {promise_id!r} not found"))
            if timed_out(promise, now):
                promise = self._complete(promise, timeout_state(promise), EMPTY, None, now)
            if not promise.pending:
                return Registered(200, promise, None)
            existing = self.store.get_callback(cb_id)
            if existing is not None:
                return Registered(200, promise, existing)
            cb = Callback(id=cb_id, promise_id=promise_id, root_promise_id=root_id, recv=recv,
                          timeout=timeout, created_on=now, kind=kind)
            self.store.insert_callback(cb)
            return Registered(201, promise, cb)

        return self._run(op)

    # -- tasks ------------------------------------------------------------------------------------
    def claim_task(self, id: str, counter: int, process_id: str, ttl: int = DEFAULT_TTL_MS) -> Claimed:
        check_id(id, "task id")
        check_id(process_id, "process id")
        _check_counter(counter)
        if not isinstance(ttl, int) or ttl < 0:
            raise errors.InvalidRequest("ttl must be a non-negative integer (ms)")

        def op(now: int) -> Claimed | _Fail:
            task = self.store.get_task(id)
            if task is None:
                return _Fail(errors.TaskNotFound(f"task {id!r} not found"))
            if task.state == COMPLETED:
                return _Fail(errors.TaskAlreadyCompleted(f"task {id!r} is already completed"))
            if task.counter != counter:
                return _Fail(errors.InvalidCounter(f"task {id!r} is at counter {task.counter}, not {counter}"))
            if task.state == CLAIMED:
                return _Fail(errors.TaskAlreadyClaimed(f"task {id!r} is claimed by {task.process_id}"))
            root = self.store.get_promise(task.root_promise_id)
            if root is not None and timed_out(root, now):
                root = self._complete(root, timeout_state(root), EMPTY, None, now)
            if root is None or not root.pending:
                self.store.update_task(replace(task, state=COMPLETED, completed_on=now))
                return _Fail(errors.TaskAlreadyCompleted(f"task {id!r}: its promise is already completed"))
            leaf = self.store.get_promise(task.leaf_promise_id) if task.leaf_promise_id else None
            task = replace(task, state=CLAIMED, process_id=process_id, ttl=ttl, expires_at=now + ttl,
                           attempt=task.attempt + 1)
            self.store.update_task(task)
            self._deadline(task.expires_at)
            return Claimed(task, root, leaf)

        return self._run(op)

    def complete_task(self, id: str, counter: int) -> int:
        """Finish a claimed task (the execution completed or suspended); 200 if it already was."""
        check_id(id, "task id")
        _check_counter(counter)

        def op(now: int) -> int | _Fail:
            task = self.store.get_task(id)
            if task is None:
                return _Fail(errors.TaskNotFound(f"task {id!r} not found"))
            if task.state == COMPLETED:
                return 200
            if task.counter != counter:
                return _Fail(errors.InvalidCounter(f"task {id!r} is at counter {task.counter}, not {counter}"))
            if task.state != CLAIMED:
                return _Fail(errors.TaskNotClaimed(f"task {id!r} is not claimed"))
            self.store.update_task(replace(task, state=COMPLETED, completed_on=now, process_id=None))
            self._dispatch_root(task.root_promise_id)
            return 201

        return self._run(op)

    def drop_task(self, id: str, counter: int) -> int:
        """Give a claimed task back: INIT with counter+1, sent to another worker."""
        check_id(id, "task id")
        _check_counter(counter)

        def op(now: int) -> int | _Fail:
            task = self.store.get_task(id)
            if task is None:
                return _Fail(errors.TaskNotFound(f"task {id!r} not found"))
            if task.state == COMPLETED:
                return _Fail(errors.TaskAlreadyCompleted(f"task {id!r} is already completed"))
            if task.counter != counter:
                return _Fail(errors.InvalidCounter(f"task {id!r} is at counter {task.counter}, not {counter}"))
            if task.state != CLAIMED:
                return _Fail(errors.TaskNotClaimed(f"task {id!r} is not claimed"))
            self._reset(task, bump=True)
            return 201

        return self._run(op)

    def _reset(self, task: Task, bump: bool) -> None:
        task = replace(task, state=INIT, counter=task.counter + (1 if bump else 0), process_id=None,
                       expires_at=0)
        self.store.update_task(task)
        self._dispatch_root(task.root_promise_id)

    def heartbeat(self, process_id: str) -> int:
        """Extend every lease ``process_id`` holds; returns how many."""
        check_id(process_id, "process id")
        return self._run(lambda now: self.store.extend_leases(process_id, now))

    def release_process(self, process_id: str) -> int:
        """A worker's connection closed: its claimed tasks go back (counter+1), its sent ones are resent."""

        def op(now: int) -> int:
            tasks = self.store.tasks_of_process(process_id, (CLAIMED, ENQUEUED))
            for task in tasks:
                self._reset(task, bump=task.state == CLAIMED)
            return len(tasks)

        return self._run(op)

    def release_all(self) -> int:
        """Put every claimed or sent task back (claimed ones with counter+1). For a process that owns
        the store alone (local mode with a file): every holder found at open is a dead process."""

        def op(now: int) -> int:
            tasks = self.store.tasks_in_states((CLAIMED, ENQUEUED))
            for task in tasks:
                self._reset(task, bump=task.state == CLAIMED)
            return len(tasks)

        return self._run(op)

    def requeue_sent(self) -> int:
        """At daemon start: tasks sent before a crash may never have arrived (no stream survives a
        restart), so they go back to INIT at once, to be sent again on connect, instead of waiting out
        the one-minute resend. Claimed tasks keep their leases: their workers may still be running."""

        def op(now: int) -> int:
            tasks = self.store.tasks_in_states((ENQUEUED,))
            for task in tasks:
                self._reset(task, bump=False)
            return len(tasks)

        return self._run(op)

    def mark_sent(self, task_id: str, counter: int, process_id: str) -> None:
        """The dispatcher pushed this task to ``process_id``: ENQUEUED until claimed or a minute passes."""

        def op(now: int) -> None:
            task = self.store.get_task(task_id)
            if task is None or task.state != INIT or task.counter != counter:
                return
            task = replace(task, state=ENQUEUED, process_id=process_id, expires_at=now + RESEND_AFTER_MS)
            self.store.update_task(task)
            self._deadline(task.expires_at)

        # Not fsynced: one more fsync per dispatched task, on the invocation's critical path, bought
        # nothing, since a daemon restart turns every ENQUEUED task back to INIT (requeue_sent).
        self._run(op, durable=False)

    def dispatchable(self) -> list[Message]:
        """Messages for every INIT task that may go out now (used when a worker connects)."""
        with self.lock:
            out: list[Message] = []
            seen: set[str] = set()
            for task in self.store.init_tasks():
                if task.root_promise_id in seen:
                    continue
                seen.add(task.root_promise_id)
                busy = self.store.tasks_of_root(task.root_promise_id, (ENQUEUED, CLAIMED))
                if not busy:
                    out.append(Message(task.type, task.recv, task=task))
            return out

    # -- time -------------------------------------------------------------------------------------
    def tick(self) -> int | None:
        """Apply every deadline that has passed; return the next one (ms), or None."""

        def op(now: int) -> int | None:
            for promise in self.store.timed_out_promises(now):
                self._complete(promise, timeout_state(promise), EMPTY, None, now)
            for task in self.store.expired_tasks(now):
                self._reset(task, bump=task.state == CLAIMED)
            schedules.fire_due(self, now)
            deadlines = [d for d in (self.store.next_promise_timeout(), self.store.next_task_expiry(),
                                     self.store.next_schedule_time()) if d is not None]
            return min(deadlines) if deadlines else None

        return self._run(op)

    # -- schedules (the logic lives in schedules.py) ----------------------------------------------
    def create_schedule(self, id: str, cron: str, promise_id: str, promise_timeout: int,
                        promise_param: Value = EMPTY, promise_tags: dict[str, str] | None = None,
                        description: str = "", tags: dict[str, str] | None = None,
                        idempotency_key: str | None = None) -> tuple[int, Schedule]:
        """Create a cron schedule: (201, new) or (200, existing with the same idempotency key)."""
        return schedules.create(self, id, cron, promise_id, promise_timeout, promise_param,
                                dict(promise_tags or {}), description, dict(tags or {}), idempotency_key)

    def get_schedule(self, id: str) -> Schedule:
        return schedules.get(self, id)

    def delete_schedule(self, id: str) -> None:
        schedules.delete(self, id)

    def search_schedules(self, id: str | None = None, limit: int = 100,
                         cursor: tuple[int, str] | None = None) -> tuple[list[Schedule], tuple[int, str] | None]:
        return schedules.search(self, id, limit, cursor)

    # -- reads for the CLI ------------------------------------------------------------------------
    def get_task(self, id: str) -> Task:
        task = self.read(lambda: self.store.get_task(id))
        if task is None:
            raise errors.TaskNotFound(f"task {id!r} not found")
        return task

    def search_tasks(self, states: tuple[str, ...] | None = None, limit: int = 100) -> list[Task]:
        return self.read(lambda: self.store.search_tasks(states, limit))

    def children_of(self, id: str) -> list[Promise]:
        return self.read(lambda: self.store.children_of(id))

    def callbacks_on(self, promise_id: str) -> list[Callback]:
        return self.read(lambda: self.store.callbacks_on(promise_id))

    def stats(self) -> dict[str, dict[str, int]]:
        return self.read(lambda: {"promises": self.store.count_promises_by_state(),
                                  "tasks": self.store.count_tasks_by_state()})


@dataclass(frozen=True, slots=True)
class _Fail:
    error: errors.ResonateError


def _check_counter(counter: Any) -> None:
    if not isinstance(counter, int) or isinstance(counter, bool) or counter < 1:
        raise errors.InvalidRequest("counter must be a positive integer")


def _check_recv(recv: Any) -> None:
    if not isinstance(recv, str):
        raise errors.InvalidRequest("recv must be a string address such as poll://any@group/pid")
    try:
        parse_address(recv)
    except ValueError as exc:
        raise errors.InvalidRequest(str(exc)) from None


def _check_tags(tags: dict[str, Any]) -> None:
    for k, v in tags.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise errors.InvalidRequest("tags must map strings to strings")

