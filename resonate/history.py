"""A workflow's history, read from one ``GetTree``: what ``resonate steps`` and ``resonate tree`` print and
the browser UI's workflow page shows (they render it; this module only derives it, as plain data).

Each step is a promise under the root (retry timers are folded into the step they belong to), with
what the store records of it: its function and arguments, when it started (recorded by the worker
that ran it, or the first claim of its task), when it ended, how many attempts, which worker, and its
error; a step in flight comes from the workers' own reports (``Tree.running``). Example::

    tree = resonate.promises.tree("order-9")
    for step in steps_of(tree):
        print(step.number, step.func, step.promise.state, took_text(step))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resonate_daemon.protocol.records import (
    EMPTY,
    PENDING,
    TAG_FUNC,
    TAG_INVOKE,
    TAG_PARENT,
    TAG_SCOPE,
    TAG_TIMEOUT,
    Promise,
    Task,
    parse_address,
)
from resonate_daemon.protocol.results import Running, Tree

from . import codec
from .render import duration, error_of, kind_of, now_ms, when
from .retry import RETRY


@dataclass
class Step:
    promise: Promise
    depth: int
    kind: str  # invoke, run, rpc, sleep, promise
    func: str
    args: str
    started: int | None
    ended: int | None
    attempts: int
    worker: str
    error: codec.ErrorInfo | None
    note: str  # what a pending step is doing: running, retrying, sleeping, waiting
    number: str = ""  # "2" is the root's second call, "2.1" that call's first (fork --from-step counts these)

    @property
    def took(self) -> int | None:
        if self.started is None:
            return None
        return (self.ended if self.ended is not None else now_ms()) - self.started

    def to_json(self) -> dict[str, Any]:
        return {"id": self.promise.id, "step": self.number or None, "depth": self.depth, "kind": self.kind, "func": self.func, "args": self.args,
                "state": self.promise.state, "started": self.started, "ended": self.ended, "tookMs": self.took,
                "attempts": self.attempts, "worker": self.worker or None, "note": self.note or None,
                "error": self.error.to_json() if self.error is not None else None}


def steps_of(tree: Tree) -> list[Step]:
    """The root, then every step depth first in the order they were created (retry timers folded in)."""
    root = tree.promises[0]
    kids: dict[str, list[Promise]] = {}
    timers: dict[str, list[Promise]] = {}
    for p in tree.promises[1:]:
        parent = p.tags.get(TAG_PARENT)
        if parent is None:
            continue
        if p.tags.get(TAG_FUNC) == RETRY:
            timers.setdefault(parent, []).append(p)
        else:
            kids.setdefault(parent, []).append(p)
    tasks: dict[str, list[Task]] = {}
    for t in tree.tasks:
        tasks.setdefault(t.root_promise_id, []).append(t)
    running = {r.id: r for r in tree.running}
    known = {p.id for p in tree.promises}
    for r in tree.running:  # a local step in flight has no promise yet: show it where it was called
        if r.id not in known and (r.parent in known or r.parent == root.id):
            known.add(r.id)
            kids.setdefault(r.parent, []).append(Promise(r.id, PENDING, EMPTY, EMPTY, 0, {
                TAG_PARENT: r.parent, TAG_FUNC: r.func, TAG_SCOPE: "local"}, r.started))
    for step_id, waiting in timers.items():  # ... nor while it waits to retry: its timer says where it was
        if step_id not in known:
            first = _timer(waiting[0])
            caller = str(first.get("caller") or "")
            if caller in known:
                known.add(step_id)
                kids.setdefault(caller, []).append(Promise(step_id, PENDING, EMPTY, EMPTY, 0, {
                    TAG_PARENT: caller, TAG_FUNC: str(first.get("func") or ""), TAG_SCOPE: "local"},
                    int(first.get("started") or waiting[0].created_on)))
    out: list[Step] = []
    stack = [(root, 0, "")]
    while stack:
        p, depth, number = stack.pop()
        step = _step(p, depth, tasks.get(p.id, []), running.get(p.id), sorted(timers.get(p.id, []), key=_n))
        step.number = number
        out.append(step)
        children = sorted(kids.get(p.id, []), key=lambda c: (c.created_on, _n(c)))  # the order of the calls
        for i, child in reversed(list(enumerate(children, 1))):
            stack.append((child, depth + 1, f"{number}.{i}" if number else str(i)))
    return out


def _n(p: Promise) -> int:
    try:
        return int(p.id.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return 0


def _step(p: Promise, depth: int, tasks: list[Task], running: Running | None, timers: list[Promise]) -> Step:
    headers = p.value.headers
    func = "sleep" if p.tags.get(TAG_TIMEOUT) == "true" else p.tags.get(TAG_FUNC, "")
    args = headers.get(codec.ARGS_HEADER, "")
    if not args and TAG_INVOKE in p.tags:
        try:
            name, a, kw, _ = codec.decode_param(p.param)
            func, args = func or name, codec.short_args(a, kw)
        except Exception:
            pass
    first_timer = _timer(timers[0]) if timers else {}
    claimed = [t.claimed_on for t in tasks if t.claimed_on is not None]
    started: int | None = None
    for candidate in (headers.get(codec.STARTED_HEADER), running.started if running else None,
                      first_timer.get("started"), min(claimed) if claimed else None):
        if candidate is not None:
            try:
                started = int(candidate)
                break
            except (TypeError, ValueError):
                continue
    if started is None:
        started = p.created_on
    attempts = int(headers.get(codec.ATTEMPTS_HEADER) or 0) or max([t.attempt for t in tasks] + [len(timers) + 1])
    if running is not None:
        attempts = max(attempts, running.attempt)
    worker = headers.get(codec.WORKER_HEADER) or (running.worker if running else "") or next(
        (t.last_process_id for t in reversed(tasks) if t.last_process_id), "") or ""
    return Step(p, depth, kind_of(p), func, args, started, p.completed_on, attempts, worker or "", error_of(p),
                _note(p, running, timers, tasks))


def _timer(p: Promise) -> dict[str, Any]:
    try:
        recorded = codec.decode(p.param)
    except Exception:
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _note(p: Promise, running: Running | None, timers: list[Promise], tasks: list[Task]) -> str:
    if not p.pending:
        return ""
    if running is not None:
        return f"running on {running.worker or running.process_id} (attempt {running.attempt})"
    if timers and timers[-1].pending:
        t = _timer(timers[-1])
        error = t.get("error") or {}
        name = str(error.get("type", "")).partition(":")[2] or "error"
        of = f" of {t['of']}" if t.get("of") else ""
        wait = max(0, timers[-1].timeout - now_ms())
        return (f"retrying: attempt {t.get('attempt', len(timers))}{of} failed ({name}: {error.get('message', '')}), "
                f"next in {duration(wait)} (at {when(timers[-1].timeout)})")
    kind = kind_of(p)
    if kind == "sleep":
        return f"sleeping until {when(p.timeout)}"
    if kind == "promise":
        return "waiting on a person or program (resonate promises resolve)"
    if kind in ("rpc", "invoke"):
        return _invocation_note(tasks)
    return "running"


def _invocation_note(tasks: list[Task]) -> str:
    """What a pending invocation is doing, as its tasks say."""
    for t in tasks:
        if t.state == "CLAIMED":
            return f"running on {t.process_id or 'a worker'}"
    for t in tasks:
        if t.state in ("INIT", "ENQUEUED"):
            try:
                group = parse_address(t.recv).group
            except Exception:
                group = t.recv
            fn = f" with {t.func}" if t.func else ""
            return f"{'sent to' if t.state == 'ENQUEUED' else 'waiting for'} a worker of group {group}{fn}"
    if tasks:
        return "suspended: waiting on what it called"
    return "waiting for a worker, or running"


def took_text(step: Step) -> str:
    took = step.took
    return duration(took) if took is not None else "-"
