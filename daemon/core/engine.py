"""The durable promise engine: every operation is one transaction that carries out verdicts.

``transitions.py`` decides (a pure function per entity); the engine reads the records, asks, and writes
what the verdict says, in one store transaction per operation. What must be pushed to workers (invoke
and resume tasks, notifications) is collected while the transaction runs and handed to ``sink`` only
after it committed, so a worker is never told about something that could still roll back.

The engine is not thread-safe and takes no lock: in the daemon only the event loop calls it; in local
mode the transport serialises its callers. Rules (ARCHITECTURE.md): a promise tagged
``resonate:invoke`` gets an invoke task in the same transaction; at most one task per root is out
(ENQUEUED or CLAIMED) at a time, the others wait in INIT until it leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from .. import errors
from ..clock import Clock, MonotonicClock
from ..protocol import (
    ClaimTask,
    CompletePromise,
    CompleteTask,
    CreateAndSubscribe,
    CreateCallback,
    CreatePromise,
    CreatePromiseAndTask,
    CreateSubscription,
    DropTask,
    FulfillTask,
    GetPromise,
    Heartbeat,
    SearchPromises,
    SearchTasks,
    SettleStep,
    SuspendTask,
)
from ..protocol.records import (
    CLAIMED,
    EMPTY,
    ENQUEUED,
    INIT,
    OUT_STATES,
    PENDING,
    REJECTED_CANCELED,
    TAG_INVOKE,
    TAG_PARENT,
    TAG_ROOT,
    Callback,
    Message,
    Promise,
    Task,
    Value,
    after,
    decode_cursor,
    encode_cursor,
    invocation_of,
)
from ..protocol.results import (
    Claimed,
    Completed,
    Created,
    Page,
    Registered,
    Running,
    Suspension,
    TaskResult,
)
from ..store import Store, retrying
from .connections import Connections
from .retention import Retention
from .schedules import Schedules
from .transitions import (
    LEASE_GRACE_MS,
    Claim,
    Complete,
    Create,
    Drop,
    Expire,
    Finish,
    PromiseRequest,
    Read,
    RootDone,
    TaskRequest,
    TaskVerdict,
    Verdict,
    promise_transition,
    task_transition,
)
from .watch import Watch
from .workflows import MAX_GRAPH, Workflows

T = TypeVar("T")

SWEEP_BATCH = 500  # timeouts and lapsed leases handled per tick; the next tick comes at once for the rest


@dataclass(frozen=True, slots=True)
class Effects:
    """What one committed operation hands on: messages to push, its earliest deadline, what it touched."""

    messages: list[Message]
    earliest: int | None
    touched: list[tuple[str, str, bool]]


@dataclass(frozen=True, slots=True)
class _Fail:
    """An operation's error, raised after its transaction commits (a lazy timeout it stored stays)."""

    error: errors.ResonateError


class Engine(Connections, Schedules, Workflows, Retention):
    def __init__(self, store: Store, clock: Clock | None = None, *,
                 sink: Callable[[list[Message]], None] | None = None) -> None:
        self.store = store
        self.clock = clock or MonotonicClock()
        self.sink = sink
        self._outbox: list[Message] = []
        self._held: list[Effects] | None = None
        # The daemon's dispatcher: which worker (process id, lease) takes a task about to go out claimed,
        # or None (nobody now, or one that claims for itself). Local mode has none.
        self.router: Callable[[Message], tuple[str, int] | None] | None = None
        # The scheduler sets ``wake`` and ``wake_at``; a write that makes a deadline earlier than
        # ``wake_at`` calls ``wake`` so the scheduler never sleeps past it.
        self.wake: Callable[[], None] | None = None
        self.wake_at: int | None = None
        self._earliest: int | None = None
        # What each worker process reports running now (its heartbeats): memory only, never stored.
        self.running: dict[str, dict[str, Running]] = {}
        # Who watches a call graph change (see ``watch``), and what this transaction touched for them.
        self.watches: list[Watch] = []
        self._touched: list[tuple[str, str, bool]] = []

    # -- plumbing ---------------------------------------------------------------------------------
    def _run(self, fn: Callable[[int], T | _Fail], *, durable: bool = True) -> T:
        """Run ``fn(now)`` in one transaction; deliver its messages after commit; raise its error after.
        ``durable=False`` commits without the fsync. While ``hold`` is on (a group commit), the
        transaction is a savepoint of the batch and its effects wait for the batch's commit. A transaction
        that lost a race with another process on the database (``store.Conflict``, PostgreSQL only) is run
        again, whole: ``store.retrying``."""
        return retrying(lambda: self._run_once(fn, durable))

    def _run_once(self, fn: Callable[[int], T | _Fail], durable: bool) -> T:
        self._outbox, self._earliest, self._touched = [], None, []
        try:
            with self.store.transaction(durable):
                result = fn(self.clock.now())
            effects = Effects(self._outbox, self._earliest, self._touched)
        finally:
            self._outbox, self._earliest, self._touched = [], None, []
        if self._held is not None:
            self._held.append(effects)
        else:
            self.deliver([effects])
        if isinstance(result, _Fail):
            raise result.error
        return result

    def hold(self) -> None:
        """Keep what committed transactions would deliver, until ``unhold``: the batch is not durable yet."""
        self._held = []

    def unhold(self) -> list[Effects]:
        held, self._held = self._held or [], None
        return held

    def deliver(self, effects: list[Effects]) -> None:
        """Hand committed work on: watches, the scheduler's wake-up, the messages to push (in order)."""
        messages: list[Message] = []
        for e in effects:
            self._offer(e.touched)
            if e.earliest is not None and self.wake is not None and (self.wake_at is None or e.earliest < self.wake_at):
                self.wake()
            messages += e.messages
        if messages and self.sink is not None:
            self.sink(messages)

    def _touch(self, p: Promise) -> None:
        """Note a promise written in this transaction, for the watches (nothing when nobody watches)."""
        if self.watches:
            self._touched.append((p.tags.get(TAG_ROOT) or p.id, p.id, TAG_INVOKE in p.tags))

    def watch(self, id: str, notify: Callable[[], None]) -> Callable[[], None]:
        """Call ``notify`` after each commit that changes the call graph under ``id`` (its promises, its
        tasks, the steps its workers report running); returns the function that stops it. ``notify`` runs
        on the engine's thread, inside no transaction: it must only wake its watcher."""
        roots = [id, *(p.id for p in self.store.subtree(id, MAX_GRAPH) if TAG_INVOKE in p.tags)]
        w = Watch(roots, notify)
        self.watches.append(w)

        def stop() -> None:
            if w in self.watches:
                self.watches.remove(w)

        return stop

    def _offer(self, touched: list[tuple[str, str, bool]]) -> None:
        if touched:
            for w in list(self.watches):
                w.offer(touched)

    def check_fence(self, task_id: str, counter: int) -> None:
        """A write made for a task must come from the task's current holder: the task is still CLAIMED at
        that counter (a lapsed lease the scheduler has not yet taken back still counts, as for a
        heartbeat). Otherwise TaskFenced: another worker took it over, or it is done."""
        task = self.store.get_task(task_id)
        if task is None or task.counter != counter or task.state != CLAIMED:
            now = "gone" if task is None else f"at counter {task.counter}, {task.state}"
            raise errors.TaskFenced(f"task {task_id!r} counter {counter} is no longer held by this worker (it is "
                                    f"{now}): another worker took it over, or it ended; this execution stops")

    def _deadline(self, at: int) -> None:
        if self._earliest is None or at < self._earliest:
            self._earliest = at

    # -- carrying out verdicts --------------------------------------------------------------------
    def _promise(self, id: str, request: PromiseRequest, now: int) -> tuple[Promise | None, Verdict]:
        """Read a promise and decide ``request`` on it; a due timeout is stored before anything else.
        This is the one place a lazy timeout is applied."""
        current = self.store.get_promise(id)
        verdict = promise_transition(current, request, now)
        if verdict.timeout_state is not None and current is not None:
            current = self._time_out(current, verdict.timeout_state, now)
        return current, verdict

    def _read(self, id: str, now: int) -> Promise | None:
        """The promise as it is now (a due timeout stored first), or None."""
        current = self.store.get_promise(id)
        if current is None:
            return None  # nothing to decide: a missing promise has no timeout to apply
        verdict = promise_transition(current, Read(), now)
        if verdict.timeout_state is not None:
            return self._time_out(current, verdict.timeout_state, now)
        return current

    def _time_out(self, promise: Promise, state: str, now: int) -> Promise:
        """Carry out a timeout the transition decided: completed with no value and no key."""
        return self._complete(promise, state, EMPTY, None, now)

    def _existing(self, id: str, now: int) -> Promise | _Fail:
        current = self._read(id, now)
        if current is None:
            return _Fail(errors.PromiseNotFound(f"promise {id!r} not found"))
        return current

    def _complete(self, promise: Promise, state: str, value: Value, ikey: str | None, now: int) -> Promise:
        """The one completion path: store the completion, complete the root's tasks, fire its callbacks
        and subscriptions."""
        done = Promise(promise.id, state, promise.param, value, promise.timeout, promise.tags, promise.created_on, now,
                       promise.idempotency_key_for_create, ikey)
        self.store.update_promise(done)
        self._touch(done)
        for task in self.store.tasks_of_root(promise.id):
            self._task(task, RootDone(), now)
        for cb in self.store.take_callbacks(promise.id):
            if cb.kind == "notify":
                self._outbox.append(Message("notify", cb.recv, promise=done))
            else:
                self._resume(cb, done, now)
        return done

    def _task(self, task: Task | None, request: TaskRequest, now: int) -> TaskVerdict:
        """Decide ``request`` on a task, store what changed, and let the root's next task go if it left."""
        verdict = task_transition(task, request, now)
        if verdict.task is not None:
            self.store.update_task(verdict.task)
            if self.watches:
                self._touched.append((verdict.task.root_promise_id, verdict.task.root_promise_id, False))
            if verdict.task.state in OUT_STATES:
                self._deadline(verdict.task.expires_at)
        if verdict.released and task is not None:
            self._dispatch_root(task.root_promise_id)
        return verdict

    def _dispatch_root(self, root_id: str) -> None:
        """Send the oldest INIT task of a root, unless one of its tasks is already out; claimed in this
        transaction for the worker the ``router`` picks, if it picks one (``Connections.claimed_for``)."""
        tasks = self.store.tasks_of_root(root_id)
        if tasks and all(t.state == INIT for t in tasks):
            msg = Message(tasks[0].type, tasks[0].recv, task=tasks[0])
            holder = self.router(msg) if self.router is not None else None
            self._outbox.append(self.claimed_for(msg, *holder) if holder is not None else msg)

    def _resume(self, cb: Callback, leaf: Promise, now: int) -> None:
        root = self.store.get_promise(cb.root_promise_id)
        if root is None or not root.pending:
            return
        if any(t.state in (INIT, ENQUEUED) for t in self.store.tasks_of_root(root.id)):
            return  # a task for this root is already on its way; its replay will find the leaf completed
        task_id = f"__resume:{root.id}:{leaf.id}"
        # A leaf completes once and its callback fires once, so this task is new (a store that says
        # otherwise already has it on its way).
        if self.store.get_task(task_id) is None:
            func, version = invocation_of(root.param)
            self.store.insert_task(Task(id=task_id, counter=1, root_promise_id=root.id, type="resume", state=INIT,
                                        recv=cb.recv, timeout=root.timeout, created_on=now, leaf_promise_id=leaf.id,
                                        func=func, version=version))
        self._dispatch_root(root.id)

    # -- promises ---------------------------------------------------------------------------------
    def _create(self, now: int, id: str, timeout: int, param: Value, tags: dict[str, str],
                ikey: str | None, strict: bool, claim: tuple[str, int] | None = None) -> Created | _Fail:
        """The create path inside a transaction (schedules use it too as they fire)."""
        current, verdict = self._promise(id, Create(ikey, strict), now)
        if verdict.error is not None:
            return _Fail(verdict.error)
        if verdict.write != "create":
            assert current is not None
            return Created(verdict.status, current)
        refused = self._canceled_ancestor(id, tags)
        if refused is not None:
            return refused
        promise = Promise(id=id, state=PENDING, param=param, value=EMPTY, timeout=timeout, tags=dict(tags),
                          created_on=now, idempotency_key_for_create=ikey)
        self.store.insert_promise(promise)
        self._touch(promise)
        if now >= timeout:  # born timed out: completed at once, and no task
            expired = self._read(id, now)
            assert expired is not None
            return Created(201, expired)
        self._deadline(timeout)
        target = tags.get(TAG_INVOKE)
        if target is None:
            return Created(201, promise)
        func, version = invocation_of(param)
        task = Task(id=f"__invoke:{id}", counter=1, root_promise_id=id, type="invoke", state=INIT, recv=target,
                    timeout=timeout, created_on=now, func=func, version=version)
        if claim is not None:
            task = replace(task, state=CLAIMED, process_id=claim[0], ttl=claim[1], expires_at=after(now, claim[1] + LEASE_GRACE_MS),
                           attempt=1, claimed_on=now, last_process_id=claim[0])
            self._deadline(task.expires_at)
            self.store.insert_task(task)
            return Created(201, promise, task)
        self.store.insert_task(task)
        self._dispatch_root(id)
        return Created(201, promise)

    def _canceled_ancestor(self, id: str, tags: dict[str, str]) -> _Fail | None:
        """No new promise under a canceled parent or root: a canceled execution's later writes are
        refused. Only new promises pay (one or two lookups by primary key)."""
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

    def create_promise(self, op: CreatePromise) -> Created:
        return self._run(lambda now: self._create(now, op.id, op.timeout, op.param, op.tags, op.idempotency_key,
                                                  op.strict))

    def create_promise_and_task(self, op: CreatePromiseAndTask) -> Created:
        return self._run(lambda now: self._create(now, op.id, op.timeout, op.param, op.tags, op.idempotency_key,
                                                  op.strict, (op.process_id, op.ttl)))

    def create_and_subscribe(self, op: CreateAndSubscribe) -> Created:
        def run(now: int) -> Created | _Fail:
            created = self._create(now, op.id, op.timeout, op.param, op.tags, op.idempotency_key, op.strict)
            if isinstance(created, _Fail) or not created.promise.pending:
                return created
            cb_id = f"__notify:{op.id}:{op.subscription_id}"
            if created.status == 201:  # new in this transaction: nothing to read back, no callback on it yet
                cb = Callback(id=cb_id, promise_id=op.id, root_promise_id=op.id, recv=op.recv,
                              timeout=op.subscription_timeout, created_on=now, kind="notify")
                self.store.insert_callback(cb)
                return replace(created, callback=cb)
            reg = self._register(now, op.id, cb_id, op.id, op.subscription_timeout, op.recv, "notify")
            if isinstance(reg, _Fail):
                return reg
            return replace(created, promise=reg.promise, callback=reg.callback)

        return self._run(run)

    def get_promise(self, op: GetPromise) -> Promise:
        # The common case, a promise with no timeout due, costs no write transaction.
        current = self.store.get_promise(op.id)
        if current is not None and promise_transition(current, Read(), self.clock.now()).timeout_state is None:
            return current
        return self._run(lambda now: self._existing(op.id, now))

    def search_promises(self, op: SearchPromises) -> Page[Promise]:
        self.tick()  # apply due timeouts first, so a search never shows an overdue promise as pending
        found, nxt = self.store.search_promises(op.id, op.states, op.tags or None, op.limit,
                                                decode_cursor(op.cursor))
        return Page(found, encode_cursor(nxt))

    def complete_promise(self, op: CompletePromise) -> Completed:
        return self._run(lambda now: self._complete_in(op, now))

    def _complete_in(self, op: CompletePromise, now: int) -> Completed | _Fail:
        current, verdict = self._promise(op.id, Complete(op.state, op.idempotency_key, op.strict), now)
        if current is None:
            return _Fail(errors.PromiseNotFound(f"promise {op.id!r} not found"))
        if verdict.error is not None:
            return _Fail(verdict.error)
        if verdict.write == "complete":
            current = self._complete(current, op.state, op.value, op.idempotency_key, now)
        return Completed(verdict.status, current)

    def settle_step(self, op: SettleStep) -> Completed:
        return self._run(lambda now: self._settle_in(op, now))

    def _settle_in(self, op: SettleStep, now: int) -> Completed | _Fail:
        """A local step that already ran: create its promise completed (idempotency keys = its id). If it
        exists, it is completed if still pending, and otherwise the stored outcome wins."""
        current = self._read(op.id, now)
        if current is None:
            refused = self._canceled_ancestor(op.id, op.tags)
            if refused is not None:
                return refused
            # Created already completed, in one write: nobody can have seen it pending, so nothing
            # waits on it and it has no task (what _complete would otherwise take care of).
            done = Promise(op.id, op.state, op.param, op.value, op.timeout, dict(op.tags), now, now, op.id, op.id)
            self.store.insert_promise(done)
            self._touch(done)
            return Completed(201, done)
        if current.pending:
            return Completed(201, self._complete(current, op.state, op.value, op.id, now))
        return Completed(200, current)

    # -- fused writes (fused_ops.py): all or nothing, one transaction --------------------------------
    def fulfill_task(self, op: FulfillTask) -> Completed:
        def run(now: int) -> Completed:
            for settle in op.settles:
                _ok(self._settle_in(settle, now))
            return _ok(self._complete_in(op.complete, now))

        return self._run(run)

    def suspend_task(self, op: SuspendTask) -> Suspension:
        def run(now: int) -> Suspension:
            for settle in op.settles:
                _ok(self._settle_in(settle, now))
            ready = []
            for cb in op.callbacks:
                reg = _ok(self._register(now, cb.promise_id, f"__resume:{cb.root_promise_id}:{cb.promise_id}",
                                         cb.root_promise_id, cb.timeout, cb.recv, "resume"))
                if not reg.promise.pending:
                    ready.append(reg.promise)
            if ready:
                return Suspension(False, ready)
            _ok(self._task_result(op.task_id, Finish(op.counter), now))
            return Suspension(True)

        return self._run(run)

    # -- callbacks and subscriptions --------------------------------------------------------------
    def create_callback(self, op: CreateCallback) -> Registered:
        return self._run(lambda now: self._register(now, op.promise_id, f"__resume:{op.root_promise_id}:{op.promise_id}",
                                                    op.root_promise_id, op.timeout, op.recv, "resume"))

    def create_subscription(self, op: CreateSubscription) -> Registered:
        return self._run(lambda now: self._register(now, op.promise_id, f"__notify:{op.promise_id}:{op.id}",
                                                    op.promise_id, op.timeout, op.recv, "notify"))

    def _register(self, now: int, promise_id: str, cb_id: str, root_id: str, timeout: int, recv: str,
                  kind: str) -> Registered | _Fail:
        promise = self._existing(promise_id, now)
        if isinstance(promise, _Fail):
            return promise
        if not promise.pending:
            return Registered(200, promise, None)
        if self.store.get_callback(cb_id) is not None:
            return Registered(200, promise, None)  # the same registration again: nothing new (legacy: null)
        cb = Callback(id=cb_id, promise_id=promise_id, root_promise_id=root_id, recv=recv, timeout=timeout,
                      created_on=now, kind=kind)
        self.store.insert_callback(cb)
        return Registered(201, promise, cb)

    # -- tasks ------------------------------------------------------------------------------------
    def claim_task(self, op: ClaimTask) -> Claimed:
        def run(now: int) -> Claimed | _Fail:
            task = self.store.get_task(op.id)
            root = None
            if task is not None:
                root = self._read(task.root_promise_id, now)
                if root is not None and not root.pending:
                    task = self.store.get_task(op.id)  # completing the root (maybe just now) completed it
            pending = root is not None and root.pending
            verdict = self._task(task, Claim(op.counter, op.process_id, op.ttl, pending), now)
            if verdict.error is not None:
                return _Fail(_named(verdict.error, op.id))
            assert verdict.task is not None and root is not None
            leaf = self.store.get_promise(verdict.task.leaf_promise_id) if verdict.task.leaf_promise_id else None
            graph = self.store.promises_of_root(root.id) if op.graph else None
            return Claimed(verdict.task, root, leaf, graph)

        return self._run(run)

    def complete_task(self, op: CompleteTask) -> TaskResult:
        return self._run(lambda now: self._task_result(op.id, Finish(op.counter), now))

    def drop_task(self, op: DropTask) -> TaskResult:
        return self._run(lambda now: self._task_result(op.id, Drop(op.counter), now))

    def _task_result(self, id: str, request: TaskRequest, now: int) -> TaskResult | _Fail:
        task = self.store.get_task(id)
        verdict = self._task(task, request, now)
        if verdict.error is not None:
            return _Fail(_named(verdict.error, id))
        assert task is not None
        return TaskResult(verdict.status, verdict.task or task)

    def heartbeat(self, op: Heartbeat) -> int:
        """Extend every lease ``process_id`` holds; returns how many. Remember what it runs now."""
        if op.running is not None:
            before = self.running.get(op.process_id, {})
            if op.running:
                self.running[op.process_id] = {r.id: r for r in op.running}
            else:
                self.running.pop(op.process_id, None)
            if self.watches:  # a step started or ended: a change to the graph it is in
                now_running = self.running.get(op.process_id, {})
                self._offer([(r.root, r.id, False) for k, r in now_running.items() if k not in before] +
                            [(r.root, r.id, False) for k, r in before.items() if k not in now_running])

        # The Beat row of the task table, for every task the process holds, as one statement: a worker may
        # hold hundreds (claimed as they were pushed, queued for its threads). Leases only grow later, so
        # no deadline moves earlier and nobody watching a graph cares.
        return self._run(lambda now: self.store.extend_leases(op.process_id, now, LEASE_GRACE_MS))

    def search_tasks(self, op: SearchTasks) -> list[Task]:
        return self.store.search_tasks(op.states, op.limit)

    # -- time -------------------------------------------------------------------------------------
    def tick(self) -> int | None:
        """Apply every deadline that has passed; return the next one (ms), or None."""

        def run(now: int) -> int | None:
            for promise in self.store.timed_out_promises(now, SWEEP_BATCH):
                self._read(promise.id, now)
            for task in self.store.expired_tasks(now, SWEEP_BATCH):
                self._task(task, Expire(), now)
            self._fire_due(now)
            deadlines = [d for d in (self.store.next_promise_timeout(), self.store.next_task_expiry(),
                                     self.store.next_schedule_time()) if d is not None]
            return min(deadlines) if deadlines else None

        return self._run(run)

def _ok(result: T | _Fail) -> T:
    """Inside a fused write: an error undoes the whole transaction (raised, not returned)."""
    if isinstance(result, _Fail):
        raise result.error
    return result


def _named(error: errors.ResonateError, task_id: str) -> errors.ResonateError:
    if isinstance(error, errors.TaskNotFound):
        return errors.TaskNotFound(f"task {task_id!r} not found")
    return error
