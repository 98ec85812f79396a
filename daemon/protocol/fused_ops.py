"""A worker's last writes for a task, fused into one request and one transaction (ours).

A workflow that ends or waits used to cost a request per write: the step it just ran (``SettleStep``),
then its root's completion, or one ``CreateCallback`` per promise it waits on and then ``CompleteTask``.
The newer Resonate protocol fuses these (``task.fulfill``, ``task.suspend``); so do we:

- ``FulfillTask``: the steps settled since the worker's last write, then the root's completion (which
  completes the task). A one-step workflow is two durable commits: its start, and this.
- ``SuspendTask``: the steps settled since the last write, a resume callback on each promise it waits
  on, then the task's completion; unless one of those promises is already complete, in which case the
  task stays claimed and the answer lists them, for the execution to go on.

Each is all or nothing: an error undoes the whole request. A step's settle is deferred into these only
when nothing the worker does meanwhile can be seen outside it (the workflow's own code, no other step),
so at most the step in flight re-runs after a crash, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .promise_ops import CompletePromise, CreateCallback, SettleStep
from .records import Promise
from .results import Completed, Suspension
from .wire import Incoming, Op, Request, bad, completion_headers, need_id, need_int

if TYPE_CHECKING:
    from . import Service

MAX_FUSED = 1000  # settles, or callbacks, in one request


def _settles_json(settles: tuple[SettleStep, ...]) -> list[Any]:
    return [s.request().body for s in settles]


def _parse_list(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    items = body.get(name, [])
    if not isinstance(items, list) or len(items) > MAX_FUSED:
        raise bad(f"field {name!r} must be a list of at most {MAX_FUSED} objects")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise bad(f"{name}[{i}] must be an object, not {type(item).__name__}")
    return items


def _parse_settles(body: dict[str, Any]) -> tuple[SettleStep, ...]:
    return tuple(SettleStep.parse(Incoming(body=item)) for item in _parse_list(body, "settles"))


@dataclass(frozen=True)
class FulfillTask(Op[Completed]):
    """POST /v1/tasks/fulfill: settle ``settles`` in order, then complete the root (``complete``), in one
    transaction; the answer is the root's, as ``CompletePromise`` gives it."""

    METHOD, ROUTE, BODY = "POST", "/v1/tasks/fulfill", True
    settles: tuple[SettleStep, ...]
    complete: CompletePromise

    def __post_init__(self) -> None:
        if len(self.settles) > MAX_FUSED:
            raise bad(f"at most {MAX_FUSED} settles in one request")

    def request(self) -> Request:
        c = self.complete
        return Request("POST", self.ROUTE, body={
            "settles": _settles_json(self.settles),
            "complete": {"id": c.id, "state": c.state, "value": c.value.to_json(), "idempotencyKey": c.idempotency_key,
                         "strict": c.strict}})

    @classmethod
    def parse(cls, incoming: Incoming) -> FulfillTask:
        c = incoming.body.get("complete")
        if not isinstance(c, dict):
            raise bad("field 'complete' must be an object {id, state, value, idempotencyKey, strict}")
        ikey, strict = c.get("idempotencyKey"), c.get("strict", False)
        if ikey is not None and not isinstance(ikey, str) or not isinstance(strict, bool):
            raise bad("complete: idempotencyKey must be a string and strict true or false")
        id = c.get("id")
        need_id(id)
        assert isinstance(id, str)
        complete = CompletePromise.parse(Incoming(path={"id": id}, headers=completion_headers(ikey, strict), body=c))
        return cls(_parse_settles(incoming.body), complete)

    def run(self, service: Service) -> Completed:
        return service.fulfill_task(self)

    def respond(self, result: Completed) -> tuple[int, Any]:
        return result.status, result.promise.to_json()

    def result(self, status: int, body: Any) -> Completed:
        return Completed(status, Promise.from_json(body))


@dataclass(frozen=True)
class SuspendTask(Op[Suspension]):
    """POST /v1/tasks/suspend: settle ``settles``, register ``callbacks``, then complete the task at
    ``counter``, in one transaction; if a promise waited on is already complete, the task is not
    completed and the answer lists those promises (``ready``)."""

    METHOD, ROUTE, BODY = "POST", "/v1/tasks/suspend", True
    task_id: str
    counter: int
    settles: tuple[SettleStep, ...] = ()
    callbacks: tuple[CreateCallback, ...] = ()

    def __post_init__(self) -> None:
        need_id(self.task_id, "task id")
        need_int(self.counter, "counter")
        if len(self.settles) > MAX_FUSED or len(self.callbacks) > MAX_FUSED:
            raise bad(f"at most {MAX_FUSED} settles and {MAX_FUSED} callbacks in one request")

    def request(self) -> Request:
        callbacks = [{"promiseId": c.promise_id, "rootPromiseId": c.root_promise_id, "timeout": c.timeout,
                      "recv": c.recv} for c in self.callbacks]
        return Request("POST", self.ROUTE, body={"task": {"id": self.task_id, "counter": self.counter},
                                                 "settles": _settles_json(self.settles), "callbacks": callbacks})

    @classmethod
    def parse(cls, incoming: Incoming) -> SuspendTask:
        task = incoming.body.get("task")
        if not isinstance(task, dict):
            raise bad("field 'task' must be an object {id, counter}")
        callbacks = tuple(CreateCallback.parse(Incoming(path={"id": _id(cb, i)}, body=cb))
                          for i, cb in enumerate(_parse_list(incoming.body, "callbacks")))
        return cls(task.get("id"), task.get("counter"), _parse_settles(incoming.body), callbacks)  # type: ignore[arg-type]

    def run(self, service: Service) -> Suspension:
        return service.suspend_task(self)

    def respond(self, result: Suspension) -> tuple[int, Any]:
        return 200, {"suspended": result.suspended, "ready": [p.to_json() for p in result.ready]}

    def result(self, status: int, body: Any) -> Suspension:
        return Suspension(bool(body.get("suspended")), [Promise.from_json(p) for p in body.get("ready", [])])


def _id(cb: dict[str, Any], i: int) -> str:
    id = cb.get("promiseId")
    if not isinstance(id, str):
        raise bad(f"callbacks[{i}].promiseId must be a promise id")
    return id
