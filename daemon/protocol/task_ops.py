"""The task operations of the API (claim, complete, drop, heartbeat), and our read-only views under
``/v1``: tasks, a promise's children, its whole tree, who waits on it, the status. See ``wire.Op``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .promise_ops import DEFAULT_TTL_MS
from .records import TASK_STATES, Callback, Promise, Task
from .results import Claimed, Running, Status, TaskResult, Tree
from .wire import (
    MAX_LIMIT,
    ById,
    Incoming,
    Op,
    Request,
    bad,
    get,
    need_id,
    need_int,
    need_str,
    path_id,
    query_int,
    quote,
)

if TYPE_CHECKING:
    from typing import Self

    from . import Service


@dataclass(frozen=True)
class ClaimTask(Op[Claimed]):
    """POST /tasks/claim with the task's current counter. ``graph`` (ours, body ``"descendants": true``)
    adds the root's recorded call graph; official workers never ask for it."""

    METHOD, ROUTE, BODY = "POST", "/tasks/claim", True
    id: str
    counter: int
    process_id: str
    ttl: int = DEFAULT_TTL_MS
    graph: bool = False

    def __post_init__(self) -> None:
        need_id(self.id, "task id")
        need_int(self.counter, "counter", lo=1)
        need_id(self.process_id, "process id")
        need_int(self.ttl, "ttl")

    def request(self) -> Request:
        return Request("POST", "/tasks/claim", body={"id": self.id, "counter": self.counter,
                                                     "processId": self.process_id, "ttl": self.ttl,
                                                     "descendants": self.graph})

    @classmethod
    def parse(cls, incoming: Incoming) -> ClaimTask:
        b = incoming.body
        return cls(need_str(get(b, "id"), "id"), get(b, "counter"), need_str(get(b, "processId"), "processId"),
                   get(b, "ttl", DEFAULT_TTL_MS), get(b, "descendants") is True)

    def run(self, service: Service) -> Claimed:
        return service.claim_task(self)

    def respond(self, result: Claimed) -> tuple[int, Any]:
        promises: dict[str, Any] = {"root": {"id": result.root.id, "data": result.root.to_json()}}
        if result.leaf is not None:  # omitted, never null: official 0.6.x workers crash on null
            promises["leaf"] = {"id": result.leaf.id, "data": result.leaf.to_json()}
        # "task" is ours (legacy answers do not have it; official workers ignore what they do not read).
        out: dict[str, Any] = {"type": result.task.type, "promises": promises, "task": result.task.to_json()}
        if result.graph is not None:
            out["descendants"] = [p.to_json() for p in result.graph.values()]
        return 201, out

    def result(self, status: int, body: Any) -> Claimed:
        promises = body["promises"]
        root = Promise.from_json(promises["root"]["data"])
        leaf = Promise.from_json(promises["leaf"]["data"]) if promises.get("leaf") else None
        graph = None
        if isinstance(body.get("descendants"), list):
            graph = {p.id: p for p in map(Promise.from_json, body["descendants"])}
        if isinstance(body.get("task"), dict):
            task = Task.from_json(body["task"])
        else:
            task = Task(id=self.id, counter=self.counter, root_promise_id=root.id, type=body.get("type", "invoke"),
                        state="CLAIMED", recv="", timeout=root.timeout, created_on=0, process_id=self.process_id,
                        ttl=self.ttl, leaf_promise_id=leaf.id if leaf else None)
        return Claimed(task, root, leaf, graph)


@dataclass(frozen=True)
class _HeldTask(Op[TaskResult]):
    """What the holder of a task does with it: names it and proves its claim with the counter."""

    METHOD, BODY = "POST", True
    id: str
    counter: int

    def __post_init__(self) -> None:
        need_id(self.id, "task id")
        need_int(self.counter, "counter", lo=1)

    def request(self) -> Request:
        return Request("POST", self.ROUTE, body={"id": self.id, "counter": self.counter})

    @classmethod
    def parse(cls, incoming: Incoming) -> Self:
        return cls(need_str(get(incoming.body, "id"), "id"), get(incoming.body, "counter"))

    def respond(self, result: TaskResult) -> tuple[int, Any]:
        return result.status, result.task.to_json()

    def result(self, status: int, body: Any) -> TaskResult:
        return TaskResult(status, Task.from_json(body))


@dataclass(frozen=True)
class CompleteTask(_HeldTask):
    """POST /tasks/complete: the execution completed or suspended; 200 if the task already was."""

    ROUTE = "/tasks/complete"

    def run(self, service: Service) -> TaskResult:
        return service.complete_task(self)


@dataclass(frozen=True)
class DropTask(_HeldTask):
    """POST /tasks/drop: give a claimed task back (INIT, counter+1) to be sent to another worker."""

    ROUTE = "/tasks/drop"

    def run(self, service: Service) -> TaskResult:
        return service.drop_task(self)


@dataclass(frozen=True)
class Heartbeat(Op[int]):
    """POST /tasks/heartbeat: extend every lease ``process_id`` holds; how many. ``running`` (ours) lists
    the steps it runs right now, for ``resonate tree`` and ``steps`` (None: it says nothing of them)."""

    METHOD, ROUTE, BODY = "POST", "/tasks/heartbeat", True
    process_id: str
    running: tuple[Running, ...] | None = None

    def __post_init__(self) -> None:
        need_id(self.process_id, "process id")
        if self.running is not None and len(self.running) > MAX_LIMIT:
            raise bad(f"field 'running' lists more than {MAX_LIMIT} steps")

    def request(self) -> Request:
        body: dict[str, Any] = {"processId": self.process_id}
        if self.running is not None:
            body["running"] = [r.to_json() for r in self.running]
        return Request("POST", "/tasks/heartbeat", body=body)

    @classmethod
    def parse(cls, incoming: Incoming) -> Heartbeat:
        raw = get(incoming.body, "running")
        running = None
        if raw is not None:
            if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
                raise bad("field 'running' must be a list of {id, func, started, attempt}")
            try:
                running = tuple(Running.from_json(r) for r in raw)
            except (KeyError, TypeError, ValueError):
                raise bad("field 'running' must be a list of {id, func, started, attempt}") from None
            for r in running:
                need_id(r.id, "running step id")
        return cls(need_str(get(incoming.body, "processId"), "processId"), running)

    def run(self, service: Service) -> int:
        return service.heartbeat(self)

    def respond(self, result: int) -> tuple[int, Any]:
        return 200, {"tasksAffected": result}

    def result(self, status: int, body: Any) -> int:
        return int((body or {}).get("tasksAffected", 0))


@dataclass(frozen=True)
class SearchTasks(Op[list[Task]]):
    """GET /v1/tasks?state=A,B&limit= (ours): tasks, newest first."""

    METHOD, ROUTE = "GET", "/v1/tasks"
    states: tuple[str, ...] | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        unknown = [s for s in self.states or () if s not in TASK_STATES]
        if unknown:
            raise bad(f"query parameter 'state' has unknown task states {unknown}")
        need_int(self.limit, "limit", lo=1, hi=MAX_LIMIT)

    def request(self) -> Request:
        query = [("limit", str(self.limit))]
        if self.states:
            query.append(("state", ",".join(self.states)))
        return Request("GET", self.ROUTE, query=query)

    @classmethod
    def parse(cls, incoming: Incoming) -> SearchTasks:
        text = incoming.param("state")
        states = tuple(s.strip().upper() for s in text.split(",") if s.strip()) if text else None
        return cls(states or None, query_int(incoming, "limit", 100, 1, MAX_LIMIT))

    def run(self, service: Service) -> list[Task]:
        return service.search_tasks(self)

    def respond(self, result: list[Task]) -> tuple[int, Any]:
        return 200, {"tasks": [t.to_json() for t in result]}

    def result(self, status: int, body: Any) -> list[Task]:
        return [Task.from_json(t) for t in body.get("tasks", [])]


# -- the call graph (ours) --------------------------------------------------------------------------

@dataclass(frozen=True)
class GetChildren(ById[list[Promise]]):
    """GET /v1/promises/{id}/children: the promises whose ``resonate:parent`` is this one, oldest first."""

    METHOD, ROUTE = "GET", "/v1/promises/{id:path}/children"

    def run(self, service: Service) -> list[Promise]:
        return service.get_children(self)

    def respond(self, result: list[Promise]) -> tuple[int, Any]:
        return 200, {"promises": [p.to_json() for p in result]}

    def result(self, status: int, body: Any) -> list[Promise]:
        return [Promise.from_json(p) for p in body.get("promises", [])]


@dataclass(frozen=True)
class GetTree(ById[Tree]):
    """GET /v1/promises/{id}/tree?limit=: the promise and everything below it (by ``resonate:parent``),
    in one request and one query."""

    METHOD, ROUTE = "GET", "/v1/promises/{id:path}/tree"
    limit: int = 5000

    def __post_init__(self) -> None:
        need_id(self.id)
        need_int(self.limit, "limit", lo=1, hi=100_000)

    def request(self) -> Request:
        return Request("GET", f"/v1/promises/{quote(self.id)}/tree", query=[("limit", str(self.limit))])

    @classmethod
    def parse(cls, incoming: Incoming) -> GetTree:
        return cls(path_id(incoming), query_int(incoming, "limit", 5000, 1, 100_000))

    def run(self, service: Service) -> Tree:
        return service.get_tree(self)

    def respond(self, result: Tree) -> tuple[int, Any]:
        return 200, {"promises": [p.to_json() for p in result.promises], "truncated": result.truncated,
                     "tasks": [t.to_json() for t in result.tasks], "running": [r.to_json() for r in result.running]}

    def result(self, status: int, body: Any) -> Tree:
        return Tree([Promise.from_json(p) for p in body.get("promises", [])], bool(body.get("truncated")),
                    [Task.from_json(t) for t in body.get("tasks", [])],
                    [Running.from_json(r) for r in body.get("running", [])])


@dataclass(frozen=True)
class GetCallbacks(ById[list[Callback]]):
    """GET /v1/promises/{id}/callbacks: who waits on a promise (kind resume or notify)."""

    METHOD, ROUTE = "GET", "/v1/promises/{id:path}/callbacks"

    def run(self, service: Service) -> list[Callback]:
        return service.get_callbacks(self)

    def respond(self, result: list[Callback]) -> tuple[int, Any]:
        return 200, {"callbacks": [dict(cb.to_json(), kind=cb.kind) for cb in result]}

    def result(self, status: int, body: Any) -> list[Callback]:
        return [Callback.from_json(c) for c in body.get("callbacks", [])]


@dataclass(frozen=True)
class GetStatus(Op[Status]):
    """GET /v1/status: counts by state, and (from a daemon) where it listens and who is connected."""

    METHOD, ROUTE = "GET", "/v1/status"

    def request(self) -> Request:
        return Request("GET", self.ROUTE)

    @classmethod
    def parse(cls, incoming: Incoming) -> GetStatus:
        return cls()

    def run(self, service: Service) -> Status:
        return service.get_status(self)

    def respond(self, result: Status) -> tuple[int, Any]:
        return 200, result.to_json()

    def result(self, status: int, body: Any) -> Status:
        return Status.from_json(body)
