"""One claimed task, carried out: replay a root execution from the top until it completes or suspends.

The call tree of generator functions runs as a set of frames on an explicit queue, never as Python
recursion, so recursion depth is bounded by memory, not by the interpreter's stack. A call whose promise
is already completed returns its stored outcome at once (replay); a local step runs here and is stored;
a remote call, a bare promise or a sleep creates a promise and, when nothing else can run, the execution
registers a callback on each promise it waits for and suspends (the task completes; nothing is kept in
memory). Completing such a promise later creates a resume task, and the replay starts again from the top.

``Execution.run`` returns the root's outcome or ``Suspended``; the runtime that called it settles handles.
It depends on the transport, the registry and the context, never on the runtime.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from typing import Any

from resonate_daemon.protocol import (
    CompletePromise,
    CompleteTask,
    CreateCallback,
    CreatePromise,
    GetPromise,
    SettleStep,
)
from resonate_daemon.protocol.records import (
    EMPTY,
    REJECTED,
    RESOLVED,
    TAG_FUNC,
    TAG_INVOKE,
    TAG_PARENT,
    TAG_ROOT,
    TAG_SCOPE,
    TAG_TIMEOUT,
    Value,
    address_of,
)
from resonate_daemon.protocol.records import Promise as Record
from resonate_daemon.protocol.results import (
    Claimed,
    Running,
)

from . import codec, retry
from .context import DETACHED, PROMISE, RPC, RUN, SLEEP, Call, Context, Info, Promise
from .errors import (
    AlreadyCanceled,
    EncodingError,
    InvalidRequest,
    NondeterminismError,
    NotRegistered,
    PromiseCanceled,
    ResonateError,
    TaskFenced,
)
from .lease import Fenced, Lease
from .options import Options
from .registry import Registry
from .transport import Transport, find

log = logging.getLogger("resonate")

Outcome = tuple[bool, Any]


@dataclass(eq=False)
class Frame:
    id: str
    gen: Generator[Any, Any, Any]
    ctx: Context
    timeout: int
    durable: bool = True
    input: Outcome = (True, None)
    done: bool = False
    result: Outcome | None = None


@dataclass
class Suspended:
    waiting_on: list[str] = field(default_factory=list)


@dataclass
class StepRun:
    """One plain step being carried out: who waits for it, and how its outcome is stored."""

    frame: Frame
    call: Call[Any]
    timeout: int
    tags: dict[str, str]
    save: bool  # False for a plain root function (its frame's return stores it)
    stored: bool = False  # its promise exists (a replay found it pending)
    started: int | None = None  # when its first attempt started


class _Canceled(Exception):
    """The root of this execution was canceled: stop, write nothing more."""


@dataclass(frozen=True)
class RootStep:
    """A plain root function, driven as a one-step frame so that it retries like any step."""

    call: Call[Any]


def _plain_root(step: RootStep) -> Generator[Any, Any, Any]:
    return (yield step)


class Execution:
    def __init__(self, transport: Transport, registry: Registry, dependencies: dict[str, Any], claimed: Claimed,
                 recv: str, stopping: threading.Event, worker: str = "",
                 running: dict[str, Running] | None = None, lease: Lease | None = None) -> None:
        # Every write this execution makes carries its task's fence (see ``lease``).
        self.t = Fenced(transport, claimed.task.id, claimed.task.counter, claimed.task.process_id,
                        lease or Lease(claimed.task.ttl or 10_000))
        self.registry = registry
        self.dependencies = dependencies
        self.task = claimed.task
        self.root = claimed.root
        self.recv = recv
        self.stopping = stopping
        self.worker = worker  # host:pid, written beside every value this execution stores
        self.running = running if running is not None else {}  # steps executing now (the runtime reports them)
        self.known: dict[str, Outcome] = {}
        self.waiters: dict[str, list[Frame]] = {}
        self.remote: set[str] = set()
        self.runnable: deque[Frame] = deque()
        # Everything this call graph recorded so far, read with the claim: a child id under this root's
        # namespace that is not in it has never been created.
        self.recorded: dict[str, Record] = claimed.graph if claimed.graph is not None else {}
        self.prefix = self.root.id + "."
        self.timers = retry.timers_by_step(self.recorded.values())  # retry timers, by step
        self.retrying: dict[str, StepRun] = {}  # a pending retry timer -> the step it wakes
        self.local_frames: dict[str, Frame] = {}  # durable generator frames still running, by id

    # -- entry ------------------------------------------------------------------------------------
    def run(self) -> Outcome | Suspended:
        """Raises NotRegistered when this process lacks the function: never a rejection for that (the
        runtime gives the task back for a worker that has it)."""
        try:
            name, args, kwargs, version = codec.decode_param(self.root.param)
        except Exception as exc:  # a param nobody can read: reject, with the reason
            return self.finish_root(False, exc)
        func, version = self.registry.get(name, version)
        try:
            retry.check_args(func, name, args, kwargs)  # a mismatch fails at once: no retry can fix it
        except TypeError as exc:
            return self.finish_root(False, exc)
        info = Info(id=self.root.id, root_id=self.root.id, func=name, attempt=self.task.attempt,
                    timeout=self.root.timeout, version=version, tags=dict(self.root.tags),
                    idempotency_key=self.root.idempotency_key_for_create)
        ctx = Context(info, self.registry, self.dependencies)
        if not inspect.isgeneratorfunction(func):
            gen: Generator[Any, Any, Any] = _plain_root(RootStep(Call(
                RUN, self.root.id, func, name, tuple(args), kwargs, Options(version=version), wait=True)))
        else:
            try:
                gen = func(ctx, *args, **kwargs)
            except Exception as exc:
                return self.finish_root(False, exc)
        self.root_frame = Frame(self.root.id, gen, ctx, self.root.timeout)
        self.runnable.append(self.root_frame)
        try:
            return self.drive()
        except _Canceled:
            return self.stop_canceled()

    def stop_canceled(self) -> Outcome:
        """The root was canceled under us: complete the task and drop the execution; write nothing."""
        log.info("execution %s was canceled; stopping it", self.root.id)
        self.complete_task()
        return False, PromiseCanceled(f"promise {self.root.id!r} was canceled")

    def complete_task(self) -> None:
        try:
            self.t.call(CompleteTask(self.task.id, self.task.counter))
        except ResonateError as exc:  # fenced out or already done: someone else carries on
            log.debug("complete task %s: %s", self.task.id, exc)

    def drive(self) -> Outcome | Suspended:
        while True:
            while self.runnable:
                self.step(self.runnable.popleft())
            if self.root_frame.done:
                assert self.root_frame.result is not None
                return self.finish_root(*self.root_frame.result)
            waiting = [pid for pid in self.waiters if pid in self.remote]
            waiting += list(self.retrying)
            # A local frame with a timeout earlier than the root's: its timing out must wake us too.
            waiting += [pid for pid in self.waiters if pid in self.local_frames
                        and self.local_frames[pid].timeout < self.root.timeout]
            # One request: the deferred settles, a callback per promise we wait on, the task's completion.
            callbacks = tuple(CreateCallback(pid, self.root.id, self.root.timeout, self.recv) for pid in waiting)
            try:
                suspension = self.t.suspend(callbacks)
            except TaskFenced:
                raise
            except ResonateError as exc:  # the task is done (its root completed meanwhile): nothing to wait for
                log.debug("suspend task %s: %s", self.task.id, exc)
                return Suspended(waiting)
            if not suspension.suspended:  # some are complete already: go on with them
                for p in suspension.ready:
                    self.settle(p.id, codec.outcome(p.state, p.value, p.id))
                continue
            return Suspended(waiting)

    # -- frames -----------------------------------------------------------------------------------
    def step(self, frame: Frame) -> None:
        ok, value = frame.input
        frame.input = (True, None)
        try:
            cmd = frame.gen.send(value) if ok else frame.gen.throw(value)
        except StopIteration as stop:
            self.finish(frame, True, stop.value)
            return
        except Exception as exc:
            self.finish(frame, False, exc)
            return
        if isinstance(cmd, Call):
            self.guard(frame, cmd.id, lambda: self.handle(frame, cmd))
        elif isinstance(cmd, RootStep):
            self.guard(frame, cmd.call.id, lambda: self.attempt(StepRun(frame, cmd.call, self.root.timeout, {},
                                                                        save=False)))
        elif isinstance(cmd, Promise):
            self.wait(frame, cmd.id)
        else:
            frame.input = (False, TypeError(
                f"{frame.ctx.info.func} yielded {cmd!r}; a durable function yields ctx.run(...), ctx.rpc(...), "
                "ctx.sleep(...), ctx.promise() or a promise from begin_run/begin_rpc"))
            self.runnable.append(frame)

    def guard(self, frame: Frame, call_id: str, fn: Callable[[], None]) -> None:
        """Carry out a call; errors the function should see go back into its frame."""
        try:
            fn()
        except (NondeterminismError, EncodingError, InvalidRequest, NotRegistered) as exc:
            frame.input = (False, exc)
            self.runnable.append(frame)
        except AlreadyCanceled as exc:
            # The store refused a new promise under a canceled one (PromiseCanceled ends what was canceled).
            canceled = exc.details.get("canceled") if isinstance(exc.details, dict) else None
            if canceled is None or canceled == self.root.id:
                raise _Canceled() from None
            error = PromiseCanceled(f"promise {canceled!r} was canceled")
            if canceled == frame.id and frame is not self.root_frame:
                self.local_frames.pop(frame.id, None)
                frame.done = True
                self.settle(frame.id, (False, error))
            else:  # the call's own promise (a step that was retrying) was canceled
                self.known[call_id] = (False, error)
                self.wait(frame, call_id)

    def handle(self, frame: Frame, call: Call[Any]) -> None:
        id = call.id
        timeout = min(self.t.now() + int(call.opts.timeout * 1000), frame.timeout)
        if call.kind == RUN:
            self.run_local(frame, call, timeout)
            return
        tags = dict(call.opts.tags)
        param = EMPTY
        if call.kind in (RPC, DETACHED):
            if self.t.in_process:  # local mode: nobody else could ever run it
                self.registry.get(call.name, call.opts.version)
            param = codec.encode_param(call.name, call.args, call.kwargs, call.opts.version)
            tags.update({TAG_INVOKE: address_of(call.opts.target), TAG_FUNC: call.name, TAG_SCOPE: "global"})
            if call.kind == RPC:
                tags[TAG_ROOT], tags[TAG_PARENT] = self.root.id, frame.id
            else:  # a new call graph: its own root, not bounded by our timeout
                tags[TAG_ROOT] = id
                timeout = self.t.now() + int(call.opts.timeout * 1000)
        elif call.kind == SLEEP:
            timeout = self.t.now() + int(call.secs * 1000)
            tags.update({TAG_TIMEOUT: "true", TAG_ROOT: self.root.id, TAG_PARENT: frame.id, TAG_FUNC: "sleep"})
        elif call.kind == PROMISE:
            param = codec.encode(call.data)
            tags.update({TAG_ROOT: self.root.id, TAG_PARENT: frame.id})
        created = self.t.call(CreatePromise(id, timeout, param, tags, call.opts.ikey(id)))
        self.check_replay(created.promise, call, frame.id)
        if created.promise.pending:
            self.remote.add(id)
        else:
            self.known[id] = codec.outcome(created.promise.state, created.promise.value, id)
        self.deliver(frame, call)

    def run_local(self, frame: Frame, call: Call[Any], timeout: int) -> None:
        id = call.id
        func = call.func
        assert callable(func)
        is_gen = inspect.isgeneratorfunction(func)
        if not call.opts.durable:
            if is_gen:
                self.start_frame(id, func, call, frame, timeout, durable=False)
            else:
                self.known[id] = self.call_plain(func, self.child_ctx(id, call, frame, timeout), call.args,
                                                 call.kwargs, call.opts, timeout)
            self.deliver(frame, call)
            return
        tags = {TAG_ROOT: self.root.id, TAG_PARENT: frame.id, TAG_SCOPE: "local", TAG_FUNC: call.name,
                **call.opts.tags}
        stored = self.lookup(id)
        if stored is not None:
            self.check_replay(stored, call, frame.id)
            if not stored.pending:
                self.known[id] = codec.outcome(stored.state, stored.value, id)
                self.deliver(frame, call)
                return
        if is_gen:
            if stored is None:
                self.t.call(CreatePromise(id, timeout, EMPTY, tags, call.opts.ikey(id)))
            self.start_frame(id, func, call, frame, timeout, durable=True)
            if frame.id != id:
                started = self.runnable[-1] if self.runnable and self.runnable[-1].id == id else None
                if started is not None:
                    self.local_frames[id] = started
            self.deliver(frame, call)
            return
        self.attempt(StepRun(frame, call, timeout, tags, save=True, stored=stored is not None))

    # -- plain steps and their durable retries ------------------------------------------------------
    def attempt(self, run: StepRun) -> None:
        """Attempt a plain step (unless a recorded retry timer still runs); on failure, retry or give up."""
        timers = self.timers.setdefault(run.call.id, [])
        if timers and timers[-1].pending:
            self.retrying[timers[-1].id] = run
            return
        call = run.call
        func = call.func
        assert callable(func)
        policy = call.opts.policy_for(func)
        attempt = len(timers) + 1
        if run.started is None:
            run.started = self.first_started(timers) or self.t.now()
        while True:
            ctx = self.child_ctx(call.id, call, run.frame, run.timeout, attempt)
            self.t.before_step()  # TaskFenced if this process was paused past its lease and lost the task
            self.running[call.id] = Running(call.id, call.name, run.started, attempt, self.task.process_id or "",
                                            self.worker, run.frame.id, self.root.id)
            try:
                value = func(ctx, *call.args, **call.kwargs)
            except Exception as exc:
                error: Exception = exc
            else:
                self.running.pop(call.id, None)
                self.step_done(run, True, value, attempt)
                return
            finally:
                self.running.pop(call.id, None)
            delay = retry.next_delay(policy, attempt, error, call.opts.non_retryable_exceptions, self.t.now(),
                                     run.timeout, (func, call.args, call.kwargs))
            if delay is None:
                if attempt > 1 or not isinstance(error, TypeError):
                    log.warning("%s (%s) failed for good after %d attempt(s): %s: %s", call.id, call.name, attempt,
                                type(error).__name__, error)
                self.step_done(run, False, error, attempt)
                return
            rid = retry.timer_id(call.id, attempt)
            of = retry.max_attempts(policy)
            log.warning("%s (%s) attempt %d%s failed: %s: %s; next in %.3gs", call.id, call.name, attempt,
                        f" of {of}" if of else "", type(error).__name__, error, delay)
            next_at = self.t.now() + int(delay * 1000)
            created = self.t.call(CreatePromise(rid, next_at, retry.timer_param(attempt, of, error, next_at, run.started,
                                                                                call.name, run.frame.id),
                                                retry.timer_tags(self.root.id, call.id), rid))
            timers.append(created.promise)
            if created.promise.pending:
                self.retrying[rid] = run
                return
            attempt += 1  # the timer is already due (a zero delay): go again at once

    def timer_fired(self, id: str, outcome: Outcome) -> bool:
        """A retry timer completed: attempt its step again. False if ``id`` is not a retry timer."""
        run = self.retrying.pop(id, None)
        if run is None:
            return False
        timers = self.timers[run.call.id]
        ok, value = outcome
        if timers and timers[-1].id == id:
            timers[-1] = replace(timers[-1], state=RESOLVED if ok else REJECTED)
        if ok:
            self.guard(run.frame, run.call.id, lambda: self.attempt(run))
        else:  # the timer was canceled (a canceled tree): the step ends with that error
            self.guard(run.frame, run.call.id, lambda: self.step_done(run, False, value))
        return True

    def first_started(self, timers: list[Record]) -> int | None:
        """When a step's first attempt started, as its first retry timer recorded it (a replay)."""
        if timers:
            try:
                recorded = codec.decode(timers[0].param)
            except Exception:
                return None
            if isinstance(recorded, dict) and isinstance(recorded.get("started"), int):
                return int(recorded["started"])
        return None

    def step_done(self, run: StepRun, ok: bool, value: Any, attempts: int = 1) -> None:
        """A plain step finished (or gave up retrying): store its outcome and hand it to its caller."""
        frame, call, id = run.frame, run.call, run.call.id
        if not run.save:  # the plain root: its frame returns the value and finish_root stores it
            frame.input = (ok, value)
            self.runnable.append(frame)
            return
        state, encoded, ok, value = self.encode_outcome(ok, value)
        history = {codec.STARTED_HEADER: str(run.started), codec.WORKER_HEADER: self.worker,
                   codec.ARGS_HEADER: codec.short_args(call.args, call.kwargs)}
        if attempts > 1:
            history[codec.ATTEMPTS_HEADER] = str(attempts)
        encoded = codec.stamp(encoded, history)
        if not run.stored and id.startswith(self.prefix):
            # Nobody else can create a promise in our namespace while we hold the task: its settle goes
            # with our next write (Fenced.defer), and the value is the one we have.
            self.t.defer(SettleStep(id, run.timeout, state, encoded, EMPTY, run.tags))
            self.known[id] = (ok, value)
            self.deliver(frame, call)
            return
        if not run.stored:
            saved = self.t.call(SettleStep(id, run.timeout, state, encoded, EMPTY, run.tags)).promise
        else:
            saved = self.complete(id, state, encoded)
        self.known[id] = (ok, value) if saved.state == state else codec.outcome(saved.state, saved.value, id)
        self.deliver(frame, call)

    def start_frame(self, id: str, func: Callable[..., Any], call: Call[Any], parent: Frame, timeout: int,
                    durable: bool) -> None:
        ctx = self.child_ctx(id, call, parent, timeout)
        try:
            gen = func(ctx, *call.args, **call.kwargs)
        except Exception as exc:
            child = Frame(id, iter(()), ctx, timeout, durable)  # type: ignore[arg-type]
            self.finish(child, False, exc)
            return
        self.runnable.append(Frame(id, gen, ctx, timeout, durable))

    def child_ctx(self, id: str, call: Call[Any], parent: Frame, timeout: int, attempt: int = 1) -> Context:
        info = Info(id=id, root_id=self.root.id, func=call.name, attempt=attempt, timeout=timeout,
                    version=call.opts.version, tags=dict(call.opts.tags), idempotency_key=call.opts.ikey(id))
        return Context(info, self.registry, self.dependencies)

    def lookup(self, id: str) -> Record | None:
        found = self.recorded.get(id)
        if found is not None or id.startswith(self.prefix):
            return found
        result: Record | None = find(self.t, GetPromise(id))  # an id given by hand, outside our namespace
        return result

    def check_replay(self, stored: Record, call: Call[Any], parent: str) -> None:
        recorded = stored.tags.get(TAG_FUNC)
        if recorded is None and TAG_PARENT in stored.tags:
            # A child with no function tag was made by ctx.promise(): a step must not take its place,
            # or the replay would run the step and complete the outside world's promise with its result.
            recorded = "promise"
        expected = {SLEEP: "sleep", PROMISE: "promise"}.get(call.kind, call.name)
        if recorded is None or recorded == expected:
            return
        if call.kind == PROMISE and stored.tags.get(TAG_PARENT) != parent:
            return  # ctx.promise(id=...) may name a promise made elsewhere, to wait on it
        raise NondeterminismError(stored.id, recorded, expected)

    def deliver(self, frame: Frame, call: Call[Any]) -> None:
        if call.wait:
            self.wait(frame, call.id)
        else:
            frame.input = (True, Promise(call.id))
            self.runnable.append(frame)

    def wait(self, frame: Frame, id: str) -> None:
        if id in self.known:
            frame.input = self.known[id]
            self.runnable.append(frame)
        else:
            self.waiters.setdefault(id, []).append(frame)

    def settle(self, id: str, outcome: Outcome) -> None:
        if self.timer_fired(id, outcome):
            return
        self.known[id] = outcome
        self.remote.discard(id)
        self.local_frames.pop(id, None)
        for frame in self.waiters.pop(id, ()):
            frame.input = outcome
            self.runnable.append(frame)

    def finish(self, frame: Frame, ok: bool, value: Any) -> None:
        frame.done = True
        if frame is getattr(self, "root_frame", None):
            frame.result = (ok, value)
            return
        if frame.durable:
            state, encoded, ok, value = self.encode_outcome(ok, value)
            saved = self.complete(frame.id, state, self.stamped(encoded))
            if saved.state != state:
                ok, value = codec.outcome(saved.state, saved.value, frame.id)
        self.settle(frame.id, (ok, value))

    # -- completion -------------------------------------------------------------------------------
    def encode_outcome(self, ok: bool, value: Any) -> tuple[str, Any, bool, Any]:
        if ok:
            try:
                return RESOLVED, codec.encode(value), ok, value
            except EncodingError as exc:
                ok, value = False, exc
        return REJECTED, codec.encode_error(value), ok, value

    def stamped(self, encoded: Value) -> Value:
        """A durable frame's or the root's outcome, with the worker that completed it."""
        return codec.stamp(encoded, {codec.WORKER_HEADER: self.worker}) if self.worker else encoded

    def complete(self, id: str, state: str, value: Any, *, root: bool = False) -> Record:
        try:
            if root:  # with the deferred settles, in one request (FulfillTask)
                return self.t.fulfill(CompletePromise(id, state, value, id)).promise
            return self.t.call(CompletePromise(id, state, value, id)).promise
        except TaskFenced:
            raise  # not ours to complete any more: the execution stops
        except ResonateError:
            # Completed by someone else meanwhile (canceled, timed out): the stored outcome wins.
            return self.t.call(GetPromise(id))

    def finish_root(self, ok: bool, value: Any) -> Outcome:
        state, encoded, ok, value = self.encode_outcome(ok, value)
        saved = self.complete(self.root.id, state, self.stamped(encoded), root=True)
        if saved.state != state or saved.idempotency_key_for_complete != self.root.id:
            ok, value = codec.outcome(saved.state, saved.value, self.root.id)
        return ok, value

    def call_plain(self, func: Callable[..., Any], ctx: Context, args: tuple[Any, ...], kwargs: dict[str, Any],
                   opts: Options, timeout: int) -> Outcome:
        """Call a non-durable plain step, retrying in this thread (nothing is recorded, so nothing to wait on)."""
        policy = opts.policy_for(func)
        attempt = 0
        while True:
            self.t.before_step()
            try:
                return True, func(ctx, *args, **kwargs)
            except Exception as exc:
                attempt += 1
                delay = retry.next_delay(policy, attempt, exc, opts.non_retryable_exceptions, self.t.now(),
                                         timeout, (func, args, kwargs))
                if delay is None:
                    return False, exc
                log.warning("%s failed (%s: %s); retry %d in %.1fs", ctx.id, type(exc).__name__, exc, attempt,
                            delay)
                if self.stopping.wait(delay):
                    return False, exc
