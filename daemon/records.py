"""The wire shapes of the API (PROTOCOL.md), one home for both the daemon and its clients.

Frozen dataclasses with ``to_json`` (camelCase, the legacy server's field names) and ``from_json``
(tolerant: unknown fields are ignored, missing optional fields take their defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PENDING = "PENDING"
RESOLVED = "RESOLVED"
REJECTED = "REJECTED"
REJECTED_CANCELED = "REJECTED_CANCELED"
REJECTED_TIMEDOUT = "REJECTED_TIMEDOUT"
PROMISE_STATES = (PENDING, RESOLVED, REJECTED, REJECTED_CANCELED, REJECTED_TIMEDOUT)
COMPLETED_STATES = (RESOLVED, REJECTED, REJECTED_CANCELED, REJECTED_TIMEDOUT)

# Task states.
INIT = "INIT"
ENQUEUED = "ENQUEUED"
CLAIMED = "CLAIMED"
COMPLETED = "COMPLETED"
TASK_STATES = (INIT, ENQUEUED, CLAIMED, COMPLETED)

# Tags with meaning (PROTOCOL.md "Tags with meaning").
TAG_INVOKE = "resonate:invoke"
TAG_ROOT = "resonate:root"
TAG_PARENT = "resonate:parent"
TAG_SCOPE = "resonate:scope"
TAG_TIMEOUT = "resonate:timeout"
TAG_DELAY = "resonate:delay"
TAG_SCHEDULE = "resonate:schedule"
TAG_INVOCATION = "resonate:invocation"


@dataclass(frozen=True, slots=True)
class Value:
    """A promise's param or value: headers plus base64 text (``data`` may be None)."""

    headers: dict[str, str] = field(default_factory=dict)
    data: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"headers": dict(self.headers), "data": self.data}

    @classmethod
    def from_json(cls, obj: Any) -> Value:
        if not obj:
            return EMPTY
        headers = obj.get("headers") or {}
        return cls(headers=dict(headers), data=obj.get("data"))


EMPTY = Value()


@dataclass(frozen=True, slots=True)
class Promise:
    id: str
    state: str
    param: Value
    value: Value
    timeout: int
    tags: dict[str, str]
    created_on: int
    completed_on: int | None = None
    idempotency_key_for_create: str | None = None
    idempotency_key_for_complete: str | None = None

    @property
    def pending(self) -> bool:
        return self.state == PENDING

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "param": self.param.to_json(),
            "value": self.value.to_json(),
            "timeout": self.timeout,
            "tags": dict(self.tags),
            "createdOn": self.created_on,
        }
        if self.completed_on is not None:
            out["completedOn"] = self.completed_on
        if self.idempotency_key_for_create is not None:
            out["idempotencyKeyForCreate"] = self.idempotency_key_for_create
        if self.idempotency_key_for_complete is not None:
            out["idempotencyKeyForComplete"] = self.idempotency_key_for_complete
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Promise:
        return cls(
            id=obj["id"],
            state=obj["state"],
            param=Value.from_json(obj.get("param")),
            value=Value.from_json(obj.get("value")),
            timeout=int(obj.get("timeout") or 0),
            tags=dict(obj.get("tags") or {}),
            created_on=int(obj.get("createdOn") or 0),
            completed_on=obj.get("completedOn"),
            idempotency_key_for_create=obj.get("idempotencyKeyForCreate"),
            idempotency_key_for_complete=obj.get("idempotencyKeyForComplete"),
        )


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    counter: int
    root_promise_id: str
    type: str  # "invoke" | "resume"
    state: str
    recv: str
    timeout: int
    created_on: int
    leaf_promise_id: str | None = None
    process_id: str | None = None
    ttl: int = 0
    expires_at: int = 0
    attempt: int = 0
    completed_on: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "counter": self.counter,
            "timeout": self.timeout,
            "rootPromiseId": self.root_promise_id,
            "state": self.state,
            "recv": self.recv,
            "type": self.type,
            "attempt": self.attempt,
            "ttl": self.ttl,
            "expiresAt": self.expires_at,
            "createdOn": self.created_on,
        }
        if self.leaf_promise_id is not None:
            out["leafPromiseId"] = self.leaf_promise_id
        if self.process_id is not None:
            out["processId"] = self.process_id
        if self.completed_on is not None:
            out["completedOn"] = self.completed_on
        return out

    def message_json(self) -> dict[str, Any]:
        """The task as a push message carries it (what legacy SDKs read)."""
        return {
            "id": self.id,
            "counter": self.counter,
            "timeout": self.timeout,
            "rootPromiseId": self.root_promise_id,
            "createdOn": self.created_on,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Task:
        return cls(
            id=obj["id"],
            counter=int(obj["counter"]),
            root_promise_id=obj.get("rootPromiseId", ""),
            type=obj.get("type", ""),
            state=obj.get("state", ""),
            recv=obj.get("recv", ""),
            timeout=int(obj.get("timeout") or 0),
            created_on=int(obj.get("createdOn") or 0),
            leaf_promise_id=obj.get("leafPromiseId"),
            process_id=obj.get("processId"),
            ttl=int(obj.get("ttl") or 0),
            expires_at=int(obj.get("expiresAt") or 0),
            attempt=int(obj.get("attempt") or 0),
            completed_on=obj.get("completedOn"),
        )


@dataclass(frozen=True, slots=True)
class Callback:
    """A resume callback (kind ``resume``) or a subscription (kind ``notify``) on a promise."""

    id: str
    promise_id: str
    root_promise_id: str
    recv: str
    timeout: int
    created_on: int
    kind: str = "resume"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "promiseId": self.promise_id,
            "rootPromiseId": self.root_promise_id,
            "recv": self.recv,
            "timeout": self.timeout,
            "createdOn": self.created_on,
        }


@dataclass(frozen=True, slots=True)
class Schedule:
    id: str
    cron: str
    promise_id: str
    promise_timeout: int
    next_run_time: int
    created_on: int
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    promise_param: Value = EMPTY
    promise_tags: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    last_run_time: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "description": self.description,
            "cron": self.cron,
            "tags": dict(self.tags),
            "promiseId": self.promise_id,
            "promiseTimeout": self.promise_timeout,
            "promiseParam": self.promise_param.to_json(),
            "promiseTags": dict(self.promise_tags),
            "nextRunTime": self.next_run_time,
            "createdOn": self.created_on,
        }
        if self.idempotency_key is not None:
            out["idempotencyKey"] = self.idempotency_key
        if self.last_run_time is not None:
            out["lastRunTime"] = self.last_run_time
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Schedule:
        return cls(
            id=obj["id"],
            cron=obj.get("cron", ""),
            promise_id=obj.get("promiseId", ""),
            promise_timeout=int(obj.get("promiseTimeout") or 0),
            next_run_time=int(obj.get("nextRunTime") or 0),
            created_on=int(obj.get("createdOn") or 0),
            description=obj.get("description") or "",
            tags=dict(obj.get("tags") or {}),
            promise_param=Value.from_json(obj.get("promiseParam")),
            promise_tags=dict(obj.get("promiseTags") or {}),
            idempotency_key=obj.get("idempotencyKey"),
            last_run_time=obj.get("lastRunTime"),
        )


@dataclass(frozen=True, slots=True)
class Message:
    """Something to push to a worker: an invoke or resume task, or a notify of a completed promise."""

    type: str  # "invoke" | "resume" | "notify"
    recv: str
    task: Task | None = None
    promise: Promise | None = None

    def to_json(self) -> dict[str, Any]:
        if self.type == "notify":
            assert self.promise is not None
            return {"type": "notify", "promise": self.promise.to_json()}
        assert self.task is not None
        return {"type": self.type, "task": self.task.message_json()}


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed ``recv``: ``poll://any@group/pid``, ``poll://uni@group/pid``, ``poll://any@group`` or a bare group."""

    mode: str  # "any" | "uni"
    group: str
    pid: str | None = None

    def __str__(self) -> str:
        return f"poll://{self.mode}@{self.group}" + (f"/{self.pid}" if self.pid else "")


def parse_address(recv: str) -> Address:
    """Parse a target. A bare word is a group (``default`` means ``poll://any@default``)."""
    text = recv.strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        # No worker could ever connect under such a name: GET /poll/{group}/{pid} refuses it.
        raise ValueError(f"address {recv!r} contains control characters")
    if text.startswith("poll://"):
        rest = text[len("poll://"):]
        mode, sep, where = rest.partition("@")
        if not sep:
            mode, where = "any", rest
        if mode not in ("any", "uni"):
            raise ValueError(f"unknown address mode {mode!r} in {recv!r} (expected 'any' or 'uni')")
        group, _, pid = where.partition("/")
        if not group:
            raise ValueError(f"address {recv!r} names no group")
        if mode == "uni" and not pid:
            raise ValueError(f"address {recv!r} is 'uni' but names no process")
        return Address(mode, group, pid or None)
    if not text or "/" in text or ":" in text:
        raise ValueError(f"invalid target {recv!r}: use a group name or poll://any@group[/pid]")
    return Address("any", text, None)
