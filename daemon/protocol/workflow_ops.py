"""The workflow operations (ours, under ``/v1``): list the tops of call graphs, retry a failed one, fork
one from a step, collect the finished ones past retention. See ``wire.Op``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .records import COMPLETED_STATES, PROMISE_STATES, Promise
from .results import Collected
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
    need_opt_str,
    path_id,
    query_int,
    quote,
)

if TYPE_CHECKING:
    from . import Service

# What --state accepts for workflows: every state, by the word people use.
WORKFLOW_STATES: dict[str, tuple[str, ...]] = {
    "pending": ("PENDING",), "resolved": ("RESOLVED",), "rejected": ("REJECTED",),
    "canceled": ("REJECTED_CANCELED",), "timedout": ("REJECTED_TIMEDOUT",),
    "failed": ("REJECTED", "REJECTED_CANCELED", "REJECTED_TIMEDOUT"), "completed": COMPLETED_STATES,
}


@dataclass(frozen=True)
class WorkflowPage:
    """One page of workflows, newest first, the cursor of the next page, and how many match in all."""

    items: list[Promise]
    cursor: str | None
    total: int


@dataclass(frozen=True)
class SearchWorkflows(Op[WorkflowPage]):
    """GET /v1/workflows?state=&func=&since=&limit=&cursor=: the tops of call graphs (invocations with no
    parent), not their steps; ``state`` is a word of WORKFLOW_STATES or an exact state."""

    METHOD, ROUTE = "GET", "/v1/workflows"
    state: str | None = None
    func: str | None = None
    since: int | None = None  # ms since the epoch: created at or after
    limit: int = 50
    cursor: str | None = None

    def __post_init__(self) -> None:
        if self.state is not None and self.states is None:
            raise bad(f"state must be one of {', '.join(WORKFLOW_STATES)} (or an exact state), not {self.state!r}")
        need_opt_str(self.func, "func")
        if self.since is not None:
            need_int(self.since, "since")
        need_int(self.limit, "limit", lo=1, hi=MAX_LIMIT)
        need_opt_str(self.cursor, "cursor")

    @property
    def states(self) -> tuple[str, ...] | None:
        if self.state is None:
            return None
        if self.state.lower() in WORKFLOW_STATES:
            return WORKFLOW_STATES[self.state.lower()]
        return (self.state.upper(),) if self.state.upper() in PROMISE_STATES else None

    def request(self) -> Request:
        query = [("limit", str(self.limit))]
        for name, value in (("state", self.state), ("func", self.func), ("cursor", self.cursor)):
            if value:
                query.append((name, value))
        if self.since is not None:
            query.append(("since", str(self.since)))
        return Request("GET", self.ROUTE, query=query)

    @classmethod
    def parse(cls, incoming: Incoming) -> SearchWorkflows:
        since = incoming.param("since")
        return cls(incoming.param("state") or None, incoming.param("func") or None,
                   query_int(incoming, "since", 0, 0, 2**63 - 1) if since else None,
                   query_int(incoming, "limit", 50, 1, MAX_LIMIT), incoming.param("cursor") or None)

    def run(self, service: Service) -> WorkflowPage:
        return service.search_workflows(self)

    def respond(self, result: WorkflowPage) -> tuple[int, Any]:
        return 200, {"workflows": [p.to_json() for p in result.items], "cursor": result.cursor,
                     "total": result.total}

    def result(self, status: int, body: Any) -> WorkflowPage:
        return WorkflowPage([Promise.from_json(p) for p in body.get("workflows", [])], body.get("cursor"),
                            int(body.get("total") or 0))


@dataclass(frozen=True)
class RetryWorkflow(ById[Promise]):
    """POST /v1/workflows/{id}/retry: a rejected, canceled or timed-out workflow runs again under the same
    id; every step that resolved keeps its result, the others run again. Refused while it runs."""

    METHOD, ROUTE = "POST", "/v1/workflows/{id:path}/retry"

    def run(self, service: Service) -> Promise:
        return service.retry_workflow(self)

    def respond(self, result: Promise) -> tuple[int, Any]:
        return 201, result.to_json()

    def result(self, status: int, body: Any) -> Promise:
        return Promise.from_json(body)


@dataclass(frozen=True)
class ForkWorkflow(Op[Promise]):
    """POST /v1/workflows/{id}/fork {fromStep, id?}: a new execution of the same function and arguments
    that reuses the results of the first ``from_step`` steps and runs the rest. Refused while it runs."""

    METHOD, ROUTE, BODY = "POST", "/v1/workflows/{id:path}/fork", True
    id: str
    from_step: int
    new_id: str | None = None

    def __post_init__(self) -> None:
        need_id(self.id)
        need_int(self.from_step, "fromStep")
        if self.new_id is not None:
            need_id(self.new_id, "the fork's id")

    def request(self) -> Request:
        body: dict[str, Any] = {"fromStep": self.from_step}
        if self.new_id is not None:
            body["id"] = self.new_id
        return Request("POST", self.ROUTE.replace("{id:path}", quote(self.id)), body=body)

    @classmethod
    def parse(cls, incoming: Incoming) -> ForkWorkflow:
        return cls(path_id(incoming), get(incoming.body, "fromStep"), get(incoming.body, "id"))

    def run(self, service: Service) -> Promise:
        return service.fork_workflow(self)

    def respond(self, result: Promise) -> tuple[int, Any]:
        return 201, result.to_json()

    def result(self, status: int, body: Any) -> Promise:
        return Promise.from_json(body)



@dataclass(frozen=True)
class CollectGarbage(Op[Collected]):
    """POST /v1/gc {olderThan, dryRun?}: delete the call graphs (and standalone promises) that completed
    more than ``older_than`` ms ago and hold nothing pending, with their tasks and callbacks, in small
    batches; then give the file's free pages back. ``dry_run``: count, delete nothing. Never a pending
    promise, nothing of a pending workflow, never a schedule."""

    METHOD, ROUTE, BODY = "POST", "/v1/gc", True
    older_than: int  # ms
    dry_run: bool = False

    def __post_init__(self) -> None:
        need_int(self.older_than, "olderThan")
        if not isinstance(self.dry_run, bool):
            raise bad(f"field 'dryRun' must be a boolean, not {type(self.dry_run).__name__}")

    def request(self) -> Request:
        return Request("POST", self.ROUTE, body={"olderThan": self.older_than, "dryRun": self.dry_run})

    @classmethod
    def parse(cls, incoming: Incoming) -> CollectGarbage:
        return cls(get(incoming.body, "olderThan"), get(incoming.body, "dryRun", False))

    def run(self, service: Service) -> Collected:
        return service.collect_garbage(self)

    def respond(self, result: Collected) -> tuple[int, Any]:
        return 200, result.to_json()

    def result(self, status: int, body: Any) -> Collected:
        return Collected.from_json(body)
