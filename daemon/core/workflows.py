"""Workflows: the tops of call graphs, and acting on a failed one (a mixin of ``Engine``).

- **Retry** (DBOS ``resume``): a rejected, canceled or timed-out workflow runs again under the same id.
  Every step that resolved keeps its result (the replay returns it without running it); every step that
  did not (rejected, canceled, timed out, or left pending) is removed with everything below it, so the
  replay runs it again. The root goes back to pending with a new deadline as long as its first one, and
  its invoke task to INIT with the next counter, for any worker of its group.
- **Fork** (DBOS ``fork_workflow``, Temporal ``reset``): a new workflow with the same function and
  arguments, whose first N steps (the root's own calls, in the order they were made) are copies of the
  old ones' results, ids and tags renamed under the new root; the replay reuses them and runs the rest.

Both refuse a workflow that is still running (``WorkflowRunning``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import __version__, errors
from ..protocol import (
    CreateAndSubscribe,
    Created,
    ForkWorkflow,
    GetCallbacks,
    GetChildren,
    GetPromise,
    GetStatus,
    GetTree,
    RetryWorkflow,
    SearchWorkflows,
    StartMany,
    WorkflowPage,
)
from ..protocol.records import (
    EMPTY,
    INIT,
    PENDING,
    RESOLVED,
    TAG_FUNC,
    TAG_INVOKE,
    TAG_PARENT,
    TAG_ROOT,
    TAG_TIMEOUT,
    Callback,
    Promise,
    Task,
    after,
    decode_cursor,
    encode_cursor,
    invocation_of,
)
from ..protocol.results import Running, Status, Tree
from .transitions import Reopen

if TYPE_CHECKING:
    from ..store import Store
    from .transitions import TaskRequest, TaskVerdict

MAX_GRAPH = 100_000  # promises a retry or fork reads below a workflow
TAG_FORKED_FROM = "resonate:forked-from"  # on a fork's root: "ID@N", the workflow and the steps it reused


class Workflows:
    """The workflow operations of ``Engine`` (which provides the attributes declared below)."""

    if TYPE_CHECKING:
        store: Store

        def _run(self, fn: Callable[[int], Any], *, durable: bool = True) -> Any: ...
        def _read(self, id: str, now: int) -> Promise | None: ...
        def _task(self, task: Task | None, request: TaskRequest, now: int) -> TaskVerdict: ...
        def _dispatch_root(self, root_id: str) -> None: ...
        def _deadline(self, at: int) -> None: ...
        def _touch(self, p: Promise) -> None: ...
        running: dict[str, dict[str, Running]]

        def create_and_subscribe(self, op: CreateAndSubscribe) -> Created: ...
        def get_promise(self, op: GetPromise) -> Promise: ...

    def start_many(self, op: StartMany) -> list[Created | errors.ResonateError]:
        """Each start in its own transaction (in the daemon, its own savepoint of one group commit): one's
        error is its answer and undoes no other."""
        out: list[Created | errors.ResonateError] = []
        for start in op.starts:
            try:
                out.append(self.create_and_subscribe(start))
            except errors.ResonateError as exc:
                out.append(exc)
        return out

    def search_workflows(self, op: SearchWorkflows) -> WorkflowPage:
        found, nxt = self.store.search_workflows(op.states, op.func, op.since, op.limit, decode_cursor(op.cursor))
        return WorkflowPage(found, encode_cursor(nxt), self.store.count_workflows(op.states, op.func, op.since))

    def _finished_workflow(self, id: str, now: int, verb: str) -> Promise:
        root = self._read(id, now)
        if root is None:
            raise errors.PromiseNotFound(f"promise {id!r} not found")
        if TAG_INVOKE not in root.tags:
            top = root.tags.get(TAG_ROOT)
            if top and top != id:
                raise errors.InvalidRequest(f"{id!r} is a step of workflow {top!r}, not a workflow: {verb} {top!r}")
            raise errors.InvalidRequest(f"{id!r} is not a workflow (it was not invoked: no resonate:invoke tag)")
        if root.pending:
            raise errors.WorkflowRunning(f"workflow {id!r} is still running; wait for it, or cancel it "
                                         f"(resonate promises cancel {id} --tree) before you {verb} it")
        return root

    def retry_workflow(self, op: RetryWorkflow) -> Promise:
        def run(now: int) -> Promise:
            root = self._finished_workflow(op.id, now, "retry")
            if root.state == RESOLVED:
                raise errors.AlreadyResolved(f"workflow {op.id!r} already resolved: nothing to retry (fork it to "
                                             "run it again: resonate fork)")
            below = self.store.subtree(op.id, MAX_GRAPH)
            kids: dict[str, list[Promise]] = {}
            for p in below:
                kids.setdefault(p.tags.get(TAG_PARENT, ""), []).append(p)
            doomed: list[str] = []
            todo = [p for p in below if p.state != RESOLVED]
            while todo:  # a step that did not resolve goes, and everything below it (it runs again)
                p = todo.pop()
                if p.id not in doomed:
                    doomed.append(p.id)
                    todo += kids.get(p.id, [])
            self.store.delete_promises(doomed)
            again = Promise(root.id, PENDING, root.param, EMPTY, after(now, root.timeout - root.created_on), root.tags,
                            root.created_on, None, root.idempotency_key_for_create, None)
            self.store.reopen_promise(again)
            self._touch(again)
            self._deadline(again.timeout)
            self._invoke_again(again, now)
            return again

        result: Promise = self._run(run)
        return result

    def fork_workflow(self, op: ForkWorkflow) -> Promise:
        def run(now: int) -> Promise:
            root = self._finished_workflow(op.id, now, "fork")
            new_id = op.new_id or self._fork_id(op.id)
            if self.store.get_promise(new_id) is not None:
                raise errors.PromiseAlreadyExists(f"promise {new_id!r} already exists; pick another --id")
            below = self.store.subtree(op.id, MAX_GRAPH)
            steps = sorted((p for p in below if p.tags.get(TAG_PARENT) == op.id and not _retry_timer(p)),
                           key=lambda p: (p.created_on, _call_number(p.id)))  # the root's own calls, in order
            if op.from_step > len(steps):
                raise errors.InvalidRequest(f"workflow {op.id!r} made {len(steps)} steps; --from-step "
                                            f"{op.from_step} is past them")
            keep = {p.id for p in steps[:op.from_step]}
            kids: dict[str, list[Promise]] = {}
            for p in below:
                kids.setdefault(p.tags.get(TAG_PARENT, ""), []).append(p)
            todo = [p for p in steps if p.id in keep]
            while todo:  # each kept step and everything below it, completed, renamed under the new root
                p = todo.pop()
                todo += kids.get(p.id, [])
                if p.pending or not p.id.startswith(op.id + "."):
                    continue  # pending: it runs again; an id given by hand is shared, and found by that id
                self.store.insert_promise(_renamed(p, op.id, new_id))
            tags = {**root.tags, TAG_ROOT: new_id, TAG_FORKED_FROM: f"{op.id}@{op.from_step}"}
            fork = Promise(new_id, PENDING, root.param, EMPTY, after(now, root.timeout - root.created_on), tags, now,
                           None, new_id, None)
            self.store.insert_promise(fork)
            self._deadline(fork.timeout)
            self._invoke_again(fork, now)
            return fork

        result: Promise = self._run(run)
        return result

    def _fork_id(self, id: str) -> str:
        n = 1
        while self.store.get_promise(f"{id}-fork-{n}") is not None:
            n += 1
        return f"{id}-fork-{n}"

    def _invoke_again(self, root: Promise, now: int) -> None:
        """The root's invoke task runs (again): the old one reopened with the next counter, or a new one."""
        target = root.tags[TAG_INVOKE]
        task = self.store.get_task(f"__invoke:{root.id}")
        if task is not None:
            self._task(task, Reopen(target), now)  # released: the engine sends it
            return
        func, version = invocation_of(root.param)
        self.store.insert_task(Task(id=f"__invoke:{root.id}", counter=1, root_promise_id=root.id, type="invoke",
                                    state=INIT, recv=target, timeout=root.timeout, created_on=now, func=func,
                                    version=version))
        self._dispatch_root(root.id)

    # -- reads of call graphs and of the store --------------------------------------------------------
    def get_children(self, op: GetChildren) -> list[Promise]:
        self.get_promise(GetPromise(op.id))  # 404 for an unknown parent
        return self.store.children_of(op.id)

    def get_tree(self, op: GetTree) -> Tree:
        root = self.get_promise(GetPromise(op.id))
        below = self.store.subtree(op.id, op.limit)
        promises = [root, *below[:op.limit - 1]]
        ids = {p.id for p in promises}
        # A local step's retry timers hang under the step, which has no promise until it ends: found by root.
        promises += [p for p in self.store.pending_of_root(op.id)
                     if p.id not in ids and p.tags.get(TAG_FUNC) == "retry" and p.tags.get(TAG_PARENT) not in ids]
        invocations = [p.id for p in promises if TAG_INVOKE in p.tags]
        prefix = op.id + "."
        running = [r for steps in self.running.values() for r in steps.values()
                   if r.parent in ids or r.id in ids or r.root == op.id or r.id.startswith(prefix)]
        return Tree(promises, truncated=len(below) >= op.limit, tasks=self.store.tasks_for(invocations),
                    running=sorted(running, key=lambda r: (r.started, r.id)))

    def get_callbacks(self, op: GetCallbacks) -> list[Callback]:
        self.get_promise(GetPromise(op.id))
        return self.store.callbacks_on(op.id)

    def get_status(self, op: GetStatus) -> Status:
        """The store's side of the status; a daemon adds where it listens and who is connected."""
        return Status(mode="embedded", version=__version__, db=self.store.location,
                      promises=self.store.count_promises_by_state(), tasks=self.store.count_tasks_by_state(),
                      problem=self.store.problem())


def _retry_timer(p: Promise) -> bool:
    """A retry's timer (the SDK's ``resonate:func`` ``retry`` on a timeout promise): not a call of its own."""
    return p.tags.get(TAG_TIMEOUT) == "true" and p.tags.get(TAG_FUNC) == "retry"


def _call_number(id: str) -> int:
    """The call counter in a step id ``root.N`` (ids in one millisecond sort by it, not as text)."""
    tail = id.rsplit(".", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _renamed(p: Promise, old: str, new: str) -> Promise:
    def rename(text: str) -> str:
        return new + text[len(old):] if text == old or text.startswith(old + ".") else text

    tags = {k: rename(v) if k in (TAG_ROOT, TAG_PARENT) else v for k, v in p.tags.items()}
    return Promise(rename(p.id), p.state, p.param, p.value, p.timeout, tags, p.created_on, p.completed_on,
                   rename(p.idempotency_key_for_create or p.id), rename(p.idempotency_key_for_complete or p.id)
                   if p.idempotency_key_for_complete else None)
