"""The schedule operations of the API: create, get, delete, search. See ``wire.Op``.

The cron expression is only type-checked here (this package is standard library only); the engine
parses it and answers 400 with croniter's reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .records import EMPTY, Schedule, Value
from .results import Page
from .wire import (
    MAX_LIMIT,
    ById,
    Incoming,
    Op,
    Request,
    bad,
    get,
    ikey_of,
    need_id,
    need_int,
    need_invoke_tag,
    need_opt_str,
    need_str,
    need_tags,
    need_value,
    query_int,
    tags_of,
    value_of,
)

if TYPE_CHECKING:
    from . import Service


@dataclass(frozen=True, slots=True)
class ScheduleCreated:
    """201 created, or 200 with the existing schedule (same idempotency key)."""

    status: int
    schedule: Schedule


@dataclass(frozen=True)
class CreateSchedule(Op[ScheduleCreated]):
    """POST /schedules: each cron tick (UTC) creates the promise ``promise_id`` names
    (``{{.id}}``, ``{{.timestamp}}``), timing out ``promise_timeout`` ms after its tick."""

    METHOD, ROUTE, BODY = "POST", "/schedules", True
    id: str
    cron: str
    promise_id: str
    promise_timeout: int
    promise_param: Value = EMPTY
    promise_tags: dict[str, str] = field(default_factory=dict)
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        need_id(self.id, "schedule id")
        need_str(self.cron, "cron")
        need_id(self.promise_id, "promise id template")
        need_int(self.promise_timeout, "promiseTimeout")
        need_value(self.promise_param, "promiseParam")
        need_tags(self.promise_tags, "promiseTags")
        need_invoke_tag(self.promise_tags)
        need_tags(self.tags)
        if not isinstance(self.description, str):
            raise bad("field 'description' must be a string")
        need_opt_str(self.idempotency_key, "idempotency key")

    def request(self) -> Request:
        body = {"id": self.id, "description": self.description, "cron": self.cron, "tags": dict(self.tags),
                "promiseId": self.promise_id, "promiseTimeout": self.promise_timeout,
                "promiseParam": self.promise_param.to_json(), "promiseTags": dict(self.promise_tags)}
        headers = {"idempotency-key": self.idempotency_key} if self.idempotency_key is not None else {}
        return Request("POST", "/schedules", headers=headers, body=body)

    @classmethod
    def parse(cls, incoming: Incoming) -> CreateSchedule:
        b = incoming.body
        return cls(need_str(get(b, "id"), "id"), need_str(get(b, "cron"), "cron"),
                   need_str(get(b, "promiseId"), "promiseId"), get(b, "promiseTimeout"), value_of(b, "promiseParam"),
                   tags_of(b, "promiseTags"), get(b, "description") or "", tags_of(b), ikey_of(incoming))

    def run(self, service: Service) -> ScheduleCreated:
        return service.create_schedule(self)

    def respond(self, result: ScheduleCreated) -> tuple[int, Any]:
        return result.status, result.schedule.to_json()

    def result(self, status: int, body: Any) -> ScheduleCreated:
        return ScheduleCreated(status, Schedule.from_json(body))


@dataclass(frozen=True)
class GetSchedule(ById[Schedule]):
    """GET /schedules/{id}."""

    METHOD, ROUTE = "GET", "/schedules/{id:path}"
    WHAT = "schedule id"

    def run(self, service: Service) -> Schedule:
        return service.get_schedule(self)

    def respond(self, result: Schedule) -> tuple[int, Any]:
        return 200, result.to_json()

    def result(self, status: int, body: Any) -> Schedule:
        return Schedule.from_json(body)


@dataclass(frozen=True)
class DeleteSchedule(ById[None]):
    """DELETE /schedules/{id}: 204; the promises it already created stay."""

    METHOD, ROUTE = "DELETE", "/schedules/{id:path}"
    WHAT = "schedule id"

    def run(self, service: Service) -> None:
        return service.delete_schedule(self)

    def respond(self, result: None) -> tuple[int, Any]:
        return 204, None

    def result(self, status: int, body: Any) -> None:
        return None


@dataclass(frozen=True)
class SearchSchedules(Op[Page[Schedule]]):
    """GET /schedules?id=glob&limit=&cursor=: one page, newest first."""

    METHOD, ROUTE = "GET", "/schedules"
    id: str = "*"
    limit: int = 100
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str):
            raise bad("field 'id' must be a string (a glob: * matches anything)")
        need_int(self.limit, "limit", lo=1, hi=MAX_LIMIT)
        need_opt_str(self.cursor, "cursor")

    def request(self) -> Request:
        query = [("id", self.id or "*"), ("limit", str(self.limit))]
        if self.cursor:
            query.append(("cursor", self.cursor))
        return Request("GET", "/schedules", query=query)

    @classmethod
    def parse(cls, incoming: Incoming) -> SearchSchedules:
        return cls(incoming.param("id") or "*", query_int(incoming, "limit", 100, 1, MAX_LIMIT),
                   incoming.param("cursor") or None)

    def run(self, service: Service) -> Page[Schedule]:
        return service.search_schedules(self)

    def respond(self, result: Page[Schedule]) -> tuple[int, Any]:
        return 200, {"schedules": [s.to_json() for s in result.items], "cursor": result.cursor}

    def result(self, status: int, body: Any) -> Page[Schedule]:
        return Page([Schedule.from_json(s) for s in body.get("schedules", [])], body.get("cursor"))
