"""The records of the protocol (PROTOCOL.md "Shapes") and the results of its operations.

Frozen dataclasses with ``to_json`` (camelCase, the legacy server's field names) and ``from_json``
(tolerant: unknown fields are ignored, missing optional fields take their defaults). The engine, the
store, both SDK transports and the CLI all speak in these; nothing else defines a promise or a task.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .. import errors

T = TypeVar("T")

PENDING = "PENDING"
RESOLVED = "RESOLVED"
REJECTED = "REJECTED"
REJECTED_CANCELED = "REJECTED_CANCELED"
REJECTED_TIMEDOUT = "REJECTED_TIMEDOUT"
PROMISE_STATES = (PENDING, RESOLVED, REJECTED, REJECTED_CANCELED, REJECTED_TIMEDOUT)
COMPLETED_STATES = (RESOLVED, REJECTED, REJECTED_CANCELED, REJECTED_TIMEDOUT)
COMPLETE_TARGETS = (RESOLVED, REJECTED, REJECTED_CANCELED)  # what a complete request may ask for

# What ``GET /promises?state=`` accepts (and the SDK's and the CLI's ``--state``), by the states each means.
SEARCH_STATES: dict[str, tuple[str, ...]] = {
    "pending": (PENDING,),
    "resolved": (RESOLVED,),
    "rejected": (REJECTED, REJECTED_CANCELED, REJECTED_TIMEDOUT),
    "completed": COMPLETED_STATES,
}

# Task states.
INIT = "INIT"
ENQUEUED = "ENQUEUED"
CLAIMED = "CLAIMED"
COMPLETED = "COMPLETED"
TASK_STATES = (INIT, ENQUEUED, CLAIMED, COMPLETED)
OUT_STATES = (ENQUEUED, CLAIMED)  # a task on its way to, or held by, a worker

# Tags with meaning (PROTOCOL.md "Tags with meaning").
TAG_INVOKE = "resonate:invoke"
TAG_ROOT = "resonate:root"
TAG_PARENT = "resonate:parent"
TAG_SCOPE = "resonate:scope"
TAG_TIMEOUT = "resonate:timeout"
TAG_SCHEDULE = "resonate:schedule"
TAG_INVOCATION = "resonate:invocation"
TAG_FUNC = "resonate:func"  # ours: the function a promise stands for (replays check it; tree shows it)

MAX_ID_LENGTH = 1024
INT64_MAX = 2**63 - 1  # the stores keep 64-bit integers


def after(now: int, ms: int) -> int:
    """``now + ms`` for a relative ttl or timeout: values up to int64 max are accepted (the official SDK
    sends ``sys.maxsize``), so a sum that overflows is clamped, never refused (PROTOCOL.md)."""
    return min(now + ms, INT64_MAX)
FOREVER = 253402329599000  # 9999-12-31T23:59:59Z: the official SDK's timeout for a subscription


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def check_id(id: Any, what: str = "promise id") -> str:
    """``id`` if it is a usable id (non-empty, at most 1024 characters, no control characters)."""
    if not isinstance(id, str) or not id:
        raise errors.InvalidRequest(f"{what} must be a non-empty string")
    if len(id) > MAX_ID_LENGTH:
        raise errors.InvalidRequest(f"{what} is {len(id)} characters long; the limit is {MAX_ID_LENGTH}")
    if _CONTROL.search(id) is not None:
        raise errors.InvalidRequest(f"{what} {id!r} contains control characters")
    return id


@dataclass(frozen=True, slots=True)
class Value:
    """A promise's param or value: headers plus base64 text (``data`` may be None)."""

    headers: dict[str, str] = field(default_factory=dict)
    data: str | None = None

    def __post_init__(self) -> None:
        if self.data == "":  # no data is None, whichever way it came (the legacy server stores it so)
            object.__setattr__(self, "data", None)

    def to_json(self) -> dict[str, Any]:
        return {"headers": dict(self.headers), "data": self.data}

    @classmethod
    def from_json(cls, obj: Any) -> Value:
        if not obj:
            return EMPTY
        headers = obj.get("headers") or {}
        return cls(headers=dict(headers), data=obj.get("data"))

    @classmethod
    def of_text(cls, text: str | None, headers: dict[str, str] | None = None) -> Value:
        """Text (usually JSON) as stored: base64 in ``data``."""
        if text is None:
            return cls(dict(headers or {}), None)
        return cls(dict(headers or {}), base64.b64encode(text.encode()).decode())

    def text(self) -> str | None:
        """The data as text (base64 decoded), or None when there is none; undecodable data as it is."""
        if not self.data:
            return None
        try:
            return base64.b64decode(self.data).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return self.data

    def json(self) -> Any:
        """The data parsed as JSON where it parses, else its text (for display and ``--json``)."""
        text = self.text()
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text


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
    # Ours: the function the task runs (from its root's invocation param; None when unknown: any worker
    # may take it), when it was first claimed and by whom last (kept after it completes: the history).
    func: str | None = None
    version: int = 0
    claimed_on: int | None = None
    last_process_id: str | None = None

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
        if self.func is not None:
            out["func"], out["version"] = self.func, self.version
        if self.claimed_on is not None:
            out["claimedOn"] = self.claimed_on
        if self.last_process_id is not None:
            out["lastProcessId"] = self.last_process_id
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any], type: str = "") -> Task:
        """A task as the API returns it, or as a push message carries it (then ``type`` says which)."""
        return cls(
            id=obj["id"],
            counter=int(obj["counter"]),
            root_promise_id=obj.get("rootPromiseId", ""),
            type=obj.get("type") or type,
            state=obj.get("state") or ENQUEUED,
            recv=obj.get("recv", ""),
            timeout=int(obj.get("timeout") or 0),
            created_on=int(obj.get("createdOn") or 0),
            leaf_promise_id=obj.get("leafPromiseId"),
            process_id=obj.get("processId"),
            ttl=int(obj.get("ttl") or 0),
            expires_at=int(obj.get("expiresAt") or 0),
            attempt=int(obj.get("attempt") or 0),
            completed_on=obj.get("completedOn"),
            func=obj.get("func") if isinstance(obj.get("func"), str) else None,
            version=int(obj.get("version") or 0),
            claimed_on=obj.get("claimedOn"),
            last_process_id=obj.get("lastProcessId"),
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

    @classmethod
    def from_json(cls, obj: dict[str, Any], kind: str = "resume") -> Callback:
        return cls(id=obj.get("id", ""), promise_id=obj.get("promiseId", ""),
                   root_promise_id=obj.get("rootPromiseId", ""), recv=obj.get("recv", ""),
                   timeout=int(obj.get("timeout") or 0), created_on=int(obj.get("createdOn") or 0),
                   kind=obj.get("kind") or kind)


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
    """Something pushed to a worker: an invoke or resume task, or a notify of a completed promise.

    ``connected`` is the SDK's own marker, never on the wire: its push stream came back after a gap.
    """

    type: str  # "invoke" | "resume" | "notify" | "connected"
    recv: str
    task: Task | None = None
    promise: Promise | None = None
    # Ours: the task came claimed for the receiving worker (a ``results.Claimed``: the task, its root, its
    # leaf and the root's graph), because its push stream gave a lease. Read by the SDK, which then claims
    # nothing; on the wire as "claimed" (the answer of POST /tasks/claim).
    claimed: Any = None

    def to_json(self) -> dict[str, Any]:
        if self.type == "notify":
            assert self.promise is not None
            return {"type": "notify", "promise": self.promise.to_json()}
        t = self.task
        assert t is not None
        # What legacy SDKs read of a task in a message, and (ours, which they ignore) the function it runs,
        # so that a worker never claims a task it cannot run.
        task: dict[str, Any] = {"id": t.id, "counter": t.counter, "timeout": t.timeout,
                                "rootPromiseId": t.root_promise_id, "createdOn": t.created_on}
        if t.func is not None:
            task["func"], task["version"] = t.func, t.version
        return {"type": self.type, "task": task}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Message:
        """A push message's ``data:`` line, parsed; KeyError/TypeError/ValueError when it is not one."""
        kind = obj["type"]
        if kind == "notify":
            return cls("notify", "", promise=Promise.from_json(obj["promise"]))
        if kind in ("invoke", "resume"):
            return cls(kind, "", task=Task.from_json(obj["task"], type=kind))
        raise ValueError(f"unknown message type {kind!r}")


@dataclass(frozen=True)
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
    if _CONTROL.search(text) is not None:
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


def address_of(target: str) -> str:
    """A target as stored in ``resonate:invoke``: a bare group ``g`` becomes ``poll://any@g``."""
    return target if target.startswith("poll://") else f"poll://any@{target}"


def check_address(recv: Any, what: str = "address") -> str:
    """``recv`` if it parses as an address, else InvalidRequest with the reason."""
    if not isinstance(recv, str):
        raise errors.InvalidRequest(f"{what} must be a string address such as poll://any@group/pid")
    try:
        parse_address(recv)
    except ValueError as exc:
        raise errors.InvalidRequest(str(exc)) from None
    return recv


def invocation_of(param: Value) -> tuple[str | None, int]:
    """The function (name, version) an invocation's param names, for routing: (None, 0) when it names
    none a worker could match (any worker may take it then, as before). The param is JSON
    ``{"func", "args", "kwargs", "version"}``; only its two plain fields are looked at."""
    if not param.data:
        return None, 0
    try:
        obj = json.loads(base64.b64decode(param.data))
    except (ValueError, binascii.Error):
        return None, 0
    if not isinstance(obj, dict) or not isinstance(obj.get("func"), str):
        return None, 0
    version = obj.get("version")
    return obj["func"], version if isinstance(version, int) and not isinstance(version, bool) else 0


# -- the cursor of a search: (created_on, id) of the last row of the page, opaque to callers -------

def encode_cursor(cursor: tuple[int, str] | None) -> str | None:
    if cursor is None:
        return None
    return base64.urlsafe_b64encode(json.dumps(list(cursor)).encode()).decode()


def decode_cursor(text: str | None) -> tuple[int, str] | None:
    """A cursor back into (created_on, id); anything else a client sends (a float, a number past int64, an
    id that is not valid Unicode) is InvalidRequest, never an error deeper down."""
    if not text:
        return None
    try:
        on, id = json.loads(base64.urlsafe_b64decode(text.encode()))
        if type(on) is not int or not 0 <= on <= INT64_MAX or not isinstance(id, str) or len(id) > MAX_ID_LENGTH:
            raise ValueError(text)
        id.encode("utf-8")  # a lone surrogate cannot be compared with stored ids
        return on, id
    except Exception:
        raise errors.InvalidRequest(f"invalid cursor {text[:100]!r}") from None


__all__ = ["PENDING", "RESOLVED", "REJECTED", "REJECTED_CANCELED", "REJECTED_TIMEDOUT", "PROMISE_STATES",
    "COMPLETED_STATES", "COMPLETE_TARGETS", "SEARCH_STATES", "INIT", "ENQUEUED", "CLAIMED", "COMPLETED",
    "TASK_STATES", "OUT_STATES", "TAG_INVOKE", "TAG_ROOT", "TAG_PARENT", "TAG_SCOPE", "TAG_TIMEOUT",
    "TAG_SCHEDULE", "TAG_INVOCATION", "TAG_FUNC", "MAX_ID_LENGTH", "INT64_MAX", "after", "FOREVER", "check_id",
    "Value", "EMPTY", "Promise", "Task", "Callback", "Schedule", "Message", "Address", "parse_address",
    "address_of", "check_address",
    "encode_cursor", "decode_cursor", "invocation_of",]
