"""The HTTP side of the protocol, without any HTTP library: what a request is, and how fields are checked.

``Request`` is what a client sends (method, encoded path, query, headers, JSON body) and ``Incoming`` is
what a server hands an operation to parse (path parameters, query items, headers, the parsed body).
``Op`` is one endpoint: its request as a frozen dataclass that validates itself on construction, so a
bad value fails the same way whether it came from the wire (a 400) or from SDK code (InvalidRequest),
plus the two codecs each side needs. The operations themselves are in ``ops.py``.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from .. import errors
from .records import INT64_MAX, TAG_INVOKE, Value, check_address, check_id

if TYPE_CHECKING:
    from typing import Self

    from .ops import Service

R = TypeVar("R")

MAX_LIMIT = 1000  # the most rows one search returns


@dataclass(frozen=True, slots=True)
class Request:
    """One request as a client sends it; ``path`` is already percent-encoded."""

    method: str
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None

    @property
    def target(self) -> str:
        return self.path + ("?" + urllib.parse.urlencode(self.query) if self.query else "")


# The daemon's clock (epoch ms) on every answer to an operation: a worker computes its deadlines (sleeps,
# timeouts, retry timers) on it, not on its own clock, which may be off by an hour.
NOW_HEADER = "resonate-now"
FENCE_HEADER = "resonate-fence"  # "COUNTER:TASK_ID": the write is made for that task at that counter


def fence_header(fence: tuple[str, int]) -> dict[str, str]:
    return {FENCE_HEADER: f"{fence[1]}:{fence[0]}"}


def parse_fence(value: str | None) -> tuple[str, int] | None:
    """The fence a request carries (None: none, as official SDKs send); InvalidRequest if malformed."""
    if value is None:
        return None
    counter, sep, task_id = value.partition(":")
    if not sep or not task_id or not counter.isdigit() or len(counter) > 18:
        raise errors.InvalidRequest(f"{FENCE_HEADER} must be COUNTER:TASK_ID, not {value[:80]!r}")
    return task_id, int(counter)


@dataclass(frozen=True, slots=True)
class Incoming:
    """One request as a server received it: decoded path parameters, query items, headers (a mapping
    whose keys are matched case-insensitively, as HTTP's are), and the body parsed as a JSON object."""

    path: Mapping[str, str] = field(default_factory=dict)
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)

    def param(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None


class Op(Generic[R]):
    """One endpoint. Subclasses are frozen dataclasses whose fields are the request.

    - ``request()`` (client) and ``parse(incoming)`` (server) are the request's codec pair;
    - ``respond(result)`` (server) and ``result(status, body)`` (client) are the response's;
    - ``run(service)`` carries the operation out on the engine (a typed double dispatch, so adding an
      operation is one class here and one method on the engine).
    """

    METHOD: ClassVar[str]
    ROUTE: ClassVar[str]  # a starlette route template; {id:path} ids may contain '/'
    BODY: ClassVar[bool] = False  # the server reads a JSON object body

    def request(self) -> Request:
        raise NotImplementedError

    @classmethod
    def parse(cls, incoming: Incoming) -> Self:
        raise NotImplementedError

    def run(self, service: Service) -> R:
        raise NotImplementedError

    def respond(self, result: R) -> tuple[int, Any]:
        raise NotImplementedError

    def result(self, status: int, body: Any) -> R:
        raise NotImplementedError


@dataclass(frozen=True)
class ById(Op[R]):
    """An operation on the one record its path names (``{id:path}`` in ``ROUTE``), with no body."""

    WHAT: ClassVar[str] = "promise id"
    id: str

    def __post_init__(self) -> None:
        check_id(self.id, self.WHAT)

    def request(self) -> Request:
        return Request(self.METHOD, self.ROUTE.replace("{id:path}", quote(self.id)))

    @classmethod
    def parse(cls, incoming: Incoming) -> Self:
        return cls(path_id(incoming))


# -- building requests ----------------------------------------------------------------------------

def quote(id: str) -> str:
    """An id as one path segment (ids may contain '/')."""
    return urllib.parse.quote(id, safe="")


def completion_headers(ikey: str | None, strict: bool) -> dict[str, str]:
    headers = {"strict": "true" if strict else "false"}
    if ikey is not None:
        headers["idempotency-key"] = ikey
    return headers


# -- checking fields (every message names the field) ---------------------------------------------

def get(obj: dict[str, Any], name: str, default: Any = None) -> Any:
    """A field of a JSON object as it came (its type is what the op's checks are for)."""
    return obj.get(name, default)


def bad(message: str) -> errors.InvalidRequest:
    return errors.InvalidRequest(message)


def need_int(value: Any, name: str, *, lo: int = 0, hi: int = INT64_MAX) -> int:
    if value is None:
        raise bad(f"missing field {name!r} (an integer)")
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"field {name!r} must be an integer, not {type(value).__name__}")
    if value < lo:
        raise bad(f"field {name!r} must be at least {lo}, not {value}")
    if value > hi:
        raise bad(f"field {name!r} must be at most {hi}")
    return value


def need_str(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise bad(f"field {name!r} must be a non-empty string")
    return value


def need_opt_str(value: Any, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise bad(f"field {name!r} must be a string")
    return value


def need_id(value: Any, what: str = "promise id") -> str:
    return check_id(value, what)


def need_tags(value: Any, name: str = "tags") -> dict[str, str]:
    if not isinstance(value, dict):
        raise bad(f"field {name!r} must be an object mapping strings to strings")
    for k, v in value.items():  # a plain loop: this runs for every step a worker stores
        if not isinstance(k, str) or not isinstance(v, str):
            raise bad(f"field {name!r} must be an object mapping strings to strings")
    return value


def need_value(value: Any, name: str) -> Value:
    if not isinstance(value, Value):
        raise bad(f"field {name!r} must be a Value (headers and base64 data)")
    return value


def need_recv(value: Any, name: str = "recv") -> str:
    return check_address(need_str(value, name), name)


def need_invoke_tag(tags: dict[str, str]) -> None:
    target = tags.get(TAG_INVOKE)
    if target is not None:
        check_address(target, "target")


def tags_of(obj: dict[str, Any], name: str = "tags") -> dict[str, str]:
    value = obj.get(name)
    return {} if value is None else need_tags(value, name)


def value_of(obj: dict[str, Any], name: str) -> Value:
    """``{headers?, data?}`` with base64 ``data``; an empty ``data`` is stored as none (legacy does)."""
    value = obj.get(name)
    if value is None:
        return Value()
    if not isinstance(value, dict):
        raise bad(f"field {name!r} must be an object {{headers, data}}")
    headers = value.get("headers")
    headers = {} if headers is None else headers
    if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise bad(f"field {name}.headers must be an object mapping strings to strings")
    data = value.get("data")
    if data is not None:
        if not isinstance(data, str):
            raise bad(f"field {name}.data must be a base64 string")
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise bad(f"field {name}.data is not valid base64") from None
    return Value(headers=dict(headers), data=data or None)


def object_of(obj: dict[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    if not isinstance(value, dict):
        raise bad(f"field {name!r} must be a JSON object")
    return value


def strict_of(incoming: Incoming) -> bool:
    text = incoming.headers.get("strict", "").strip().lower()
    if text in ("", "false", "0"):
        return False
    if text in ("true", "1"):
        return True
    raise bad(f"header 'strict' must be true or false, not {text!r}")


def ikey_of(incoming: Incoming, header: str = "idempotency-key") -> str | None:
    return incoming.headers.get(header) or None


def query_int(incoming: Incoming, name: str, default: int, lo: int, hi: int) -> int:
    text = incoming.param(name)
    if text is None or text == "":
        return default
    try:
        n = int(text)
    except ValueError:
        raise bad(f"query parameter {name!r} must be an integer, not {text!r}") from None
    if not lo <= n <= hi:
        raise bad(f"query parameter {name!r} must be from {lo} to {hi}, not {n}")
    return n


def path_id(incoming: Incoming, name: str = "id") -> str:
    value = incoming.path.get(name)
    if not value:
        raise bad(f"missing {name} in the path")
    return str(value)


# -- the push stream's request (not an Op: its answer is a stream of messages) ----------------------

MAX_FUNCTIONS = 10_000


def poll_path(group: str, pid: str, functions: dict[str, list[int]] | None = None,
              lease_ms: int | None = None) -> str:
    """``GET /poll/{group}/{pid}``; ours adds ``functions`` (JSON: name -> versions) so that only tasks
    this worker can run are sent to it, and ``lease`` (ms) so that they come claimed for it. Official
    0.6.x workers send neither: they get every task, and claim it."""
    path = f"/poll/{quote(group)}/{quote(pid)}"
    query: dict[str, str] = {}
    if functions is not None:
        query["functions"] = json.dumps(functions, separators=(",", ":"))
    if lease_ms is not None:
        query["lease"] = str(lease_ms)
    return path + ("?" + urllib.parse.urlencode(query) if query else "")


MIN_LEASE_MS, MAX_LEASE_MS = 100, 86_400_000


def poll_lease(incoming: Incoming) -> int | None:
    """The lease a worker asked its tasks to be claimed with (None: it asked none; it claims them)."""
    text = incoming.param("lease")
    if text is None:
        return None
    if not text.isdigit() or not MIN_LEASE_MS <= int(text) <= MAX_LEASE_MS:
        raise bad(f"query parameter 'lease' must be a lease in ms from {MIN_LEASE_MS} to {MAX_LEASE_MS}, "
                  f"not {text[:40]!r}")
    return int(text)


def poll_functions(incoming: Incoming) -> dict[str, frozenset[int]] | None:
    """The functions a worker announced on its push stream (None: it announced none)."""
    text = incoming.param("functions")
    if text is None:
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        raise bad("query parameter 'functions' must be JSON: an object of function names to version lists") from None
    if not isinstance(obj, dict) or len(obj) > MAX_FUNCTIONS:
        raise bad(f"query parameter 'functions' must be an object of at most {MAX_FUNCTIONS} names")
    out: dict[str, frozenset[int]] = {}
    for name, versions in obj.items():
        if not isinstance(versions, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                     for v in versions):
            raise bad(f"query parameter 'functions': {name!r} must map to a list of versions (integers >= 1)")
        out[check_id(name, "function name")] = frozenset(versions)
    return out
