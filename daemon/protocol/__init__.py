"""The protocol kernel, shared by the SDK, the daemon and the CLI (standard library only).

- ``records``: promises, tasks, callbacks, schedules, push messages, addresses, tags, states, the
  results of operations, the search cursor;
- ``wire``: what a request is on each side, and how fields are checked;
- ``promise_ops``, ``task_ops``, ``schedule_ops``, ``workflow_ops``: every endpoint once, as an ``Op``: its request
  (validated on construction), the request's encode/decode pair, the response's encode/decode pair;
- here: ``Service``, what the engine implements, and ``OPS``, the route table.

Nothing else in the project builds or parses a wire shape. ``import resonate`` loads this package
and ``resonate_daemon.errors``, nothing more of the daemon.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..errors import ResonateError
from .fused_ops import FulfillTask, SuspendTask
from .promise_ops import (
    CompletePromise,
    CreateAndSubscribe,
    CreateCallback,
    CreatePromise,
    CreatePromiseAndTask,
    CreateSubscription,
    GetPromise,
    SearchPromises,
    SettleStep,
    StartMany,
)
from .records import *  # noqa: F403  (the records are the protocol's vocabulary)
from .records import (
    Callback,
    Promise,
    Schedule,
    Task,
)
from .results import *  # noqa: F403  (and the results of the operations)
from .results import (
    Claimed,
    Collected,
    Completed,
    Created,
    Page,
    Registered,
    Status,
    Suspension,
    TaskResult,
    Tree,
)
from .schedule_ops import CreateSchedule, DeleteSchedule, GetSchedule, ScheduleCreated, SearchSchedules
from .task_ops import (
    ClaimTask,
    CompleteTask,
    DropTask,
    GetCallbacks,
    GetChildren,
    GetStatus,
    GetTree,
    Heartbeat,
    SearchTasks,
)
from .wire import Incoming, Op, Request
from .workflow_ops import (
    WORKFLOW_STATES,
    CollectGarbage,
    ForkWorkflow,
    RetryWorkflow,
    SearchWorkflows,
    WorkflowPage,
)


class Service(Protocol):
    """What carries the operations out (the engine). One method per operation, taking the operation."""

    def create_promise(self, op: CreatePromise, /) -> Created: ...
    def create_promise_and_task(self, op: CreatePromiseAndTask, /) -> Created: ...
    def create_and_subscribe(self, op: CreateAndSubscribe, /) -> Created: ...
    def start_many(self, op: StartMany, /) -> list[Created | ResonateError]: ...
    def fulfill_task(self, op: FulfillTask, /) -> Completed: ...
    def suspend_task(self, op: SuspendTask, /) -> Suspension: ...
    def get_promise(self, op: GetPromise, /) -> Promise: ...
    def search_promises(self, op: SearchPromises, /) -> Page[Promise]: ...
    def complete_promise(self, op: CompletePromise, /) -> Completed: ...
    def settle_step(self, op: SettleStep, /) -> Completed: ...
    def create_callback(self, op: CreateCallback, /) -> Registered: ...
    def create_subscription(self, op: CreateSubscription, /) -> Registered: ...
    def claim_task(self, op: ClaimTask, /) -> Claimed: ...
    def complete_task(self, op: CompleteTask, /) -> TaskResult: ...
    def drop_task(self, op: DropTask, /) -> TaskResult: ...
    def heartbeat(self, op: Heartbeat, /) -> int: ...
    def search_tasks(self, op: SearchTasks, /) -> list[Task]: ...
    def get_children(self, op: GetChildren, /) -> list[Promise]: ...
    def get_tree(self, op: GetTree, /) -> Tree: ...
    def get_callbacks(self, op: GetCallbacks, /) -> list[Callback]: ...
    def get_status(self, op: GetStatus, /) -> Status: ...
    def create_schedule(self, op: CreateSchedule, /) -> ScheduleCreated: ...
    def get_schedule(self, op: GetSchedule, /) -> Schedule: ...
    def delete_schedule(self, op: DeleteSchedule, /) -> None: ...
    def search_schedules(self, op: SearchSchedules, /) -> Page[Schedule]: ...
    def search_workflows(self, op: SearchWorkflows, /) -> WorkflowPage: ...
    def retry_workflow(self, op: RetryWorkflow, /) -> Promise: ...
    def fork_workflow(self, op: ForkWorkflow, /) -> Promise: ...
    def collect_garbage(self, op: CollectGarbage, /) -> Collected: ...


# In route order: for one method, a literal path comes before a {id:path} that would swallow it.
OPS: tuple[type[Op[Any]], ...] = (
    CreatePromise, SearchPromises, CreatePromiseAndTask, CreateCallback, CreateSubscription, GetPromise,
    CompletePromise, ClaimTask, CompleteTask, DropTask, Heartbeat, CreateSchedule, SearchSchedules,
    GetSchedule, DeleteSchedule, GetStatus, SearchTasks, SettleStep, CreateAndSubscribe, GetChildren,
    GetTree, GetCallbacks, SearchWorkflows, RetryWorkflow, ForkWorkflow, CollectGarbage, StartMany,
    FulfillTask, SuspendTask,
)

__all__ = [
    "OPS", "ClaimTask", "CollectGarbage", "CompletePromise", "CompleteTask", "CreateAndSubscribe", "CreateCallback",
    "CreatePromise", "CreatePromiseAndTask", "CreateSchedule", "CreateSubscription", "DeleteSchedule", "DropTask",
    "GetCallbacks", "GetChildren", "GetPromise", "GetSchedule", "GetStatus", "GetTree", "Heartbeat", "Incoming",
    "Op", "Request", "ScheduleCreated", "SearchPromises", "SearchSchedules", "SearchTasks", "Service",
    "SettleStep", "StartMany", "FulfillTask", "SuspendTask", "WORKFLOW_STATES", "ForkWorkflow", "RetryWorkflow", "SearchWorkflows", "WorkflowPage",
]
