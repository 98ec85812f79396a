"""How values cross the store: JSON in ``data`` (base64), and nothing that runs code when it is read.

- A value JSON holds exactly (str, int, float, bool, None, lists and str-keyed dicts of those) is
  stored as plain JSON, readable by any language, the CLI and the official SDK.
- Other Python values are stored as *typed JSON* (header ``resonate:format: typed-json``): still JSON,
  with the few values it cannot hold written as ``{"$resonate": kind, ...}`` objects: tuple, set,
  frozenset, bytes, datetime, date, time, timedelta, Decimal, UUID, complex, non-finite floats, dicts
  with keys that are not strings, and dataclasses registered with ``register_type``. Decoding picks the
  constructor from a fixed table (or the registry) by that kind: it never imports a module, unpickles,
  or calls a name that came from the data. Anything else is refused with ``EncodingError``, saying what
  to do.
- An exception is stored as ``{"__error__": message}`` (the official SDK's shape) plus the header
  ``resonate:error``: its type (``module:qualname``), message, arguments and traceback as text. It comes
  back as its own type when that type is a builtin, one of resonate's errors, registered with
  ``register_type``, or raised in this very process; otherwise as ``PromiseRejected`` carrying the type
  name, the message and the traceback.

Values written by earlier versions with a pickle header are read from their JSON data; the pickle is
never loaded.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import dataclasses
import datetime
import decimal
import json
import math
import os
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resonate_daemon import errors as _errors
from resonate_daemon.protocol.records import Value

from .errors import EncodingError, PromiseCanceled, PromiseRejected, PromiseTimedOut

# The history a worker writes beside a completed step's value (resonate steps, resonate tree):
STARTED_HEADER = "resonate:started"  # ms when the step's first attempt started
ATTEMPTS_HEADER = "resonate:attempts"  # how many attempts it took (when more than one)
WORKER_HEADER = "resonate:worker"  # host:pid of the process that ran it
ARGS_HEADER = "resonate:args"  # its arguments, short (a local step keeps no param)
ARGS_SHOWN = 120  # characters of the arguments kept

FORMAT_HEADER = "resonate:format"
TYPED = "typed-json"
ERROR_HEADER = "resonate:error"
TAG = "$resonate"
MAX_TRACEBACK = 16_000  # characters of a traceback kept (its end, where the error is)

_registry_lock = threading.Lock()
_types: dict[str, type] = {}  # registered dataclasses and exception classes, by "module:qualname"
_seen: dict[str, type] = {}  # exception classes this process encoded (so their type survives its own replays)


def type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_type(cls: type) -> type:
    """Let values of ``cls`` cross the store with their type: a dataclass (stored field by field) or an
    exception class (rebuilt with its arguments). Usable as a decorator::

        @resonate.register_type
        @dataclass
        class Order:
            id: int
            items: list[str]
    """
    if not isinstance(cls, type) or not (dataclasses.is_dataclass(cls) or issubclass(cls, BaseException)):
        raise TypeError(f"register_type takes a dataclass or an exception class, not {cls!r}")
    with _registry_lock:
        _types[type_name(cls)] = cls
    return cls


def stamp(value: Value, headers: dict[str, str]) -> Value:
    """``value`` with history headers added (what a value means is in its data and its other headers)."""
    return Value({**value.headers, **headers}, value.data)


def short_args(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> str:
    """Arguments as people read them, cut to ``ARGS_SHOWN`` characters."""
    text = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
    return text if len(text) <= ARGS_SHOWN else text[:ARGS_SHOWN - 1] + "…"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(data: str) -> str:
    return base64.b64decode(data.encode(), validate=False).decode()


# -- values ---------------------------------------------------------------------------------------

def encode(value: Any) -> Value:
    """Encode a result, argument or datum (None encodes to no data)."""
    if value is None:
        return Value({}, None)
    if _plain(value):
        try:
            return Value({}, _b64(json.dumps(value, separators=(",", ":"), allow_nan=False)))
        except ValueError:  # a nan or an infinity somewhere: typed JSON writes those
            pass
    return Value({FORMAT_HEADER: TYPED}, _b64(json.dumps(_to_typed(value), separators=(",", ":"))))


def _plain(value: Any) -> bool:
    """JSON holds it exactly (JSON equality would call (1, 2) and [1, 2] equal)."""
    if value is None or type(value) in (str, int, float, bool):
        return True
    if type(value) is list:
        return all(_plain(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and k != TAG and _plain(v) for k, v in value.items())
    return False


def _to_typed(v: Any) -> Any:
    t = type(v)
    if v is None or t in (str, bool, int):
        return v
    if t is float:
        return v if math.isfinite(v) else {TAG: "float", "repr": repr(v)}
    if t is list:
        return [_to_typed(x) for x in v]
    if t is dict and all(type(k) is str and k != TAG for k in v):
        return {k: _to_typed(x) for k, x in v.items()}
    if t is dict:
        return {TAG: "dict", "items": [[_to_typed(k), _to_typed(x)] for k, x in v.items()]}
    if t is tuple:
        return {TAG: "tuple", "items": [_to_typed(x) for x in v]}
    if t in (set, frozenset):
        return {TAG: t.__name__, "items": [_to_typed(x) for x in v]}
    if t in (bytes, bytearray):
        return {TAG: "bytes", "b64": base64.b64encode(v).decode()}
    if t is datetime.datetime:
        return {TAG: "datetime", "iso": v.isoformat()}
    if t is datetime.date:
        return {TAG: "date", "iso": v.isoformat()}
    if t is datetime.time:
        return {TAG: "time", "iso": v.isoformat()}
    if t is datetime.timedelta:
        return {TAG: "timedelta", "days": v.days, "seconds": v.seconds, "us": v.microseconds}
    if t is decimal.Decimal:
        return {TAG: "decimal", "str": str(v)}
    if t is uuid.UUID:
        return {TAG: "uuid", "hex": v.hex}
    if t is complex:
        return {TAG: "complex", "re": _to_typed(v.real), "im": _to_typed(v.imag)}
    if isinstance(v, BaseException):
        return {TAG: "error", **_error_meta(v)}
    name = type_name(t)
    if dataclasses.is_dataclass(v) and _types.get(name) is t:
        return {TAG: "dataclass", "type": name,
                "fields": {f.name: _to_typed(getattr(v, f.name)) for f in dataclasses.fields(v)}}
    # Subclasses of the JSON types (IntEnum, OrderedDict, namedtuple...) are stored as their base type,
    # as json.dumps would: the value survives, the subclass does not.
    if isinstance(v, str):
        return "" + v  # the characters, not str(v): a str enum's str() is its name
    for base in (int, float):
        if isinstance(v, base):
            return _to_typed(base(v))
    if isinstance(v, (list, tuple)):
        return _to_typed(list(v) if isinstance(v, list) else tuple(v))
    if isinstance(v, dict):
        return _to_typed(dict(v))
    hint = "register it with resonate.register_type" if dataclasses.is_dataclass(v) else "convert it to JSON"
    raise EncodingError(f"cannot store a value of type {t.__name__}: {hint}, or pass plain data "
                        "(dicts, lists, strings, numbers, tuples, sets, bytes, datetimes, decimals)")


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "float": lambda o: float(o["repr"]),
    "dict": lambda o: {_from_typed(k): _from_typed(x) for k, x in o["items"]},
    "tuple": lambda o: tuple(_from_typed(x) for x in o["items"]),
    "set": lambda o: {_from_typed(x) for x in o["items"]},
    "frozenset": lambda o: frozenset(_from_typed(x) for x in o["items"]),
    "bytes": lambda o: base64.b64decode(o["b64"], validate=True),
    "datetime": lambda o: datetime.datetime.fromisoformat(o["iso"]),
    "date": lambda o: datetime.date.fromisoformat(o["iso"]),
    "time": lambda o: datetime.time.fromisoformat(o["iso"]),
    "timedelta": lambda o: datetime.timedelta(days=o["days"], seconds=o["seconds"], microseconds=o["us"]),
    "decimal": lambda o: decimal.Decimal(o["str"]),
    "uuid": lambda o: uuid.UUID(hex=o["hex"]),
    "complex": lambda o: complex(_from_typed(o["re"]), _from_typed(o["im"])),
    "error": lambda o: _rebuild_error(ErrorInfo.from_meta(o)),
    "dataclass": lambda o: _rebuild_dataclass(o),
}


def _from_typed(v: Any) -> Any:
    if type(v) is list:
        return [_from_typed(x) for x in v]
    if type(v) is not dict:
        return v
    kind = v.get(TAG)
    if kind is None:
        return {k: _from_typed(x) for k, x in v.items()}
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise EncodingError(f"stored value has an unknown kind {kind!r}")
    try:
        return decoder(v)
    except EncodingError:
        raise
    except Exception as exc:  # malformed data: a clear error, never a crash deep inside a workflow
        raise EncodingError(f"stored {kind} value is malformed: {exc}") from None


def _rebuild_dataclass(o: dict[str, Any]) -> Any:
    cls = _types.get(str(o["type"]))
    if cls is None or not dataclasses.is_dataclass(cls):
        raise EncodingError(f"stored value is a {o['type']}, which is not registered here "
                            "(resonate.register_type)")
    return cls(**{k: _from_typed(x) for k, x in dict(o["fields"]).items()})


def decode(value: Value) -> Any:
    """The value a promise's param or value holds (never runs code from it; see the module doc)."""
    if not value.data:
        return None
    try:
        obj = json.loads(_unb64(value.data))
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise EncodingError("stored value is not JSON") from None
    return _from_typed(obj) if value.headers.get(FORMAT_HEADER) == TYPED else obj


# -- errors ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ErrorInfo:
    """What is kept of an exception: its type (``module:qualname``), message, arguments, traceback."""

    type: str
    message: str
    args: list[Any]
    traceback: str = ""

    @property
    def name(self) -> str:
        """The type as people write it: ``KeyError``, ``PaymentDeclined``."""
        return self.type.partition(":")[2] or self.type

    def __str__(self) -> str:
        return f"{self.name}: {self.message}" if self.message else self.name

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> ErrorInfo:
        args = meta.get("args")
        return cls(str(meta.get("type") or "builtins:Exception"), str(meta.get("message") or ""),
                   list(args) if isinstance(args, list) else [], str(meta.get("traceback") or ""))


def _error_meta(exc: BaseException) -> dict[str, Any]:
    cls = type(exc)
    with _registry_lock:
        _seen.setdefault(type_name(cls), cls)
    try:
        args: Any = _to_typed(list(exc.args))
        json.dumps(args)
    except (EncodingError, TypeError, ValueError):
        args = [repr(a) for a in exc.args]
    return {"type": type_name(cls), "message": str(exc), "args": args, "traceback": format_traceback(exc)}


_OURS = os.path.dirname(os.path.abspath(__file__))


def format_traceback(exc: BaseException) -> str:
    """The traceback as Python prints it, without the frames of resonate's own machinery (the user's code
    calling its steps is what remains), cut to its last ``MAX_TRACEBACK`` characters."""
    if exc.__traceback__ is None:
        return ""
    tb = traceback.TracebackException.from_exception(exc)
    tb.stack = traceback.StackSummary.from_list([f for f in tb.stack if not f.filename.startswith(_OURS)])
    return "".join(tb.format())[-MAX_TRACEBACK:]


def encode_error(exc: BaseException) -> Value:
    meta = _error_meta(exc)
    body = json.dumps({"__error__": meta["message"] or type(exc).__name__})
    return Value({ERROR_HEADER: json.dumps(meta)}, _b64(body))


def error_info(value: Value) -> ErrorInfo | None:
    """The exception a rejected promise keeps (None when it keeps none: rejected by hand with data)."""
    meta_text = value.headers.get(ERROR_HEADER)
    if meta_text:
        try:
            meta = json.loads(meta_text)
            if isinstance(meta, dict):
                return ErrorInfo.from_meta(meta)
        except ValueError:
            pass
    return None


def _known_exception(name: str) -> type[BaseException] | None:
    """An exception class by ``module:qualname``, only from the fixed set this process trusts."""
    module, _, qualname = name.partition(":")
    found: Any = None
    if module == "builtins":
        found = getattr(builtins, qualname, None)
    elif module == _errors.__name__:
        found = getattr(_errors, qualname, None)
    else:
        found = _types.get(name) or _seen.get(name)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _rebuild_error(info: ErrorInfo) -> BaseException:
    cls = _known_exception(info.type)
    exc: BaseException
    if cls is None:
        exc = PromiseRejected(str(info), {"type": info.type, "traceback": info.traceback})
    else:
        try:
            exc = cls(*[_from_typed(a) for a in info.args])
        except Exception:
            try:
                exc = cls(info.message)
            except Exception:
                exc = PromiseRejected(str(info), {"type": info.type, "traceback": info.traceback})
    exc.resonate_traceback = info.traceback  # type: ignore[attr-defined]  # the traceback where it was raised
    return exc


def decode_error(value: Value) -> BaseException:
    """Rebuild a rejection: its own type where it is known here (see the module doc), else PromiseRejected."""
    info = error_info(value)
    if info is not None:
        return _rebuild_error(info)
    message = ""
    if value.data:
        try:
            body = json.loads(_unb64(value.data))
            message = body.get("__error__", "") if isinstance(body, dict) else json.dumps(body)
        except (ValueError, UnicodeDecodeError, binascii.Error):
            message = value.data
    return PromiseRejected(message or "promise rejected")


def outcome(state: str, value: Value, promise_id: str) -> tuple[bool, Any]:
    """(ok, value or exception) for a completed promise, as an awaiting function should see it."""
    if state == "RESOLVED":
        try:
            return True, decode(value)
        except EncodingError as exc:
            return False, exc
    if state == "REJECTED_TIMEDOUT":
        return False, PromiseTimedOut(f"promise {promise_id!r} timed out")
    if state == "REJECTED_CANCELED":
        if value.headers.get(ERROR_HEADER):
            return False, decode_error(value)
        return False, PromiseCanceled(f"promise {promise_id!r} was canceled")
    return False, decode_error(value)


# -- invocations ----------------------------------------------------------------------------------

def encode_param(func: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any], version: int) -> Value:
    """An invocation's param (PROTOCOL.md "Invocation param")."""
    return encode({"func": func, "args": list(args), "kwargs": dict(kwargs), "version": version})


def decode_param(value: Value) -> tuple[str, list[Any], dict[str, Any], int]:
    obj = decode(value)
    if not isinstance(obj, dict) or not isinstance(obj.get("func"), str):
        raise EncodingError("this promise's param is not an invocation (no 'func')")
    version = obj.get("version") or 0
    if not isinstance(version, int) or isinstance(version, bool):
        raise EncodingError(f"this invocation's version is not an integer: {version!r}")
    args, kwargs = obj.get("args") or [], obj.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise EncodingError("this invocation's args must be a list and its kwargs an object")
    return obj["func"], list(args), dict(kwargs), version
