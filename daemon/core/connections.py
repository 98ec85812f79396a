"""The worker connections' side of the engine (a mixin of ``Engine``): what the daemon's dispatcher and
the local transport do as tasks go out to workers, come back when a connection closes, and are claimed
for a worker in the very transaction that lets them go out (``claimed_for``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..protocol.records import CLAIMED, ENQUEUED, OUT_STATES, Message, Promise, Task
from ..protocol.results import Claimed, Running
from .transitions import Claim, Release, Requeue, Sent

if TYPE_CHECKING:
    from ..clock import Clock
    from ..store import Store
    from .transitions import TaskRequest, TaskVerdict

BACKLOG_LIMIT = 1000  # INIT tasks looked at when a worker connects


class Connections:
    """Tasks between the engine and the workers' connections (``Engine`` provides what is declared)."""

    if TYPE_CHECKING:
        store: Store
        clock: Clock
        running: dict[str, dict[str, Running]]

        def _run(self, fn: Callable[[int], Any], *, durable: bool = True) -> Any: ...
        def _task(self, task: Task | None, request: TaskRequest, now: int) -> TaskVerdict: ...

    def claimed_for(self, msg: Message, process_id: str, ttl: int) -> Message:
        """Inside the transaction that lets ``msg``'s task go out: claim it for ``process_id`` (the
        dispatcher's pick, whose stream gave the lease ``ttl``) and carry the claim's answer in the message,
        so that the worker makes no claim request and the claim costs no commit of its own. Unchanged
        when the task cannot be claimed (its root is no longer pending)."""
        task = msg.task
        assert task is not None
        now = self.clock.now()
        root = self.store.get_promise(task.root_promise_id)
        if root is None or not root.pending or root.timeout <= now:
            return msg
        verdict = self._task(task, Claim(task.counter, process_id, ttl, True), now)
        if verdict.error is not None or verdict.task is None or verdict.task.state != CLAIMED:
            return msg
        leaf: Promise | None = self.store.get_promise(task.leaf_promise_id) if task.leaf_promise_id else None
        graph = self.store.promises_of_root(root.id)
        return replace(msg, task=verdict.task, claimed=Claimed(verdict.task, root, leaf, graph))

    def mark_sent(self, task_id: str, counter: int, process_id: str) -> None:
        """The dispatcher pushed this task to ``process_id``: ENQUEUED until claimed or a minute passes.
        Not fsynced: a daemon restart turns every ENQUEUED task back to INIT anyway (``requeue_sent``)."""

        def run(now: int) -> None:
            task = self.store.get_task(task_id)
            if task is not None:
                self._task(task, Sent(counter, process_id), now)

        self._run(run, durable=False)

    def release_process(self, process_id: str) -> int:
        """A worker's connection closed: its claimed tasks go back (counter+1), its sent ones are resent."""
        self.running.pop(process_id, None)
        return self._run(lambda now: self._each(self.store.tasks_of_process(process_id, OUT_STATES), Release(), now))

    def release_all(self) -> int:
        """Every claimed or sent task back (claimed ones counter+1): for a process that owns the store
        alone (local mode on a file), every holder found at open is a dead process."""
        return self._run(lambda now: self._each(self.store.tasks_in_states(OUT_STATES), Release(), now))

    def requeue_sent(self) -> int:
        """At daemon start: tasks sent before a crash may never have arrived, so they go back to INIT at
        once, to be sent on connect. Claimed tasks keep their leases: their workers may still run."""
        return self._run(lambda now: self._each(self.store.tasks_in_states((ENQUEUED,)), Requeue(), now))

    def _each(self, tasks: list[Task], request: TaskRequest, now: int) -> int:
        return sum(self._task(t, request, now).task is not None for t in tasks)

    def claim_backlog(self, pick: Callable[[Message], tuple[str, int] | None]) -> list[Message]:
        """At a worker's connect, in one transaction: the waiting tasks ``pick`` gives it (process id and
        lease), each claimed for it as a live task is (``claimed_for``); one whose root ended is left out."""

        def run(now: int) -> list[Message]:
            picked = [(m, holder) for m in self.dispatchable() if (holder := pick(m)) is not None]
            claimed = [self.claimed_for(m, *holder) for m, holder in picked]
            return [m for m in claimed if m.claimed is not None]

        return list(self._run(run))

    def dispatchable(self) -> list[Message]:
        """Messages for every INIT task that may go out now (sent when a worker connects)."""
        out: list[Message] = []
        seen: set[str] = set()
        for task in self.store.init_tasks(BACKLOG_LIMIT):
            if task.root_promise_id in seen:
                continue
            seen.add(task.root_promise_id)
            if not any(t.state in OUT_STATES for t in self.store.tasks_of_root(task.root_promise_id)):
                out.append(Message(task.type, task.recv, task=task))
        return out

