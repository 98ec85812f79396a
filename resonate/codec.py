"""How values cross the store: JSON in ``data`` (base64), with headers where JSON cannot round-trip.

- A value that JSON round-trips exactly is stored as JSON, nothing else.
- A value that does not (tuples, sets, dataclasses, datetimes...) is stored as JSON on a best-effort basis
  (so other languages and the CLI can read it) plus its pickle in the header ``resonate:pickle``; this SDK
  prefers the header when it decodes. Pickles are only ever read from the store you configured.
- An exception is stored as ``{"__error__": message}`` (the official SDK's shape) plus the header
  ``resonate:error`` naming its type and args, so it comes back with its type where it can be imported.
"""

from __future__ import annotations

import base64
import importlib
import json
import pickle
from typing import Any

from resonate_daemon.protocol.records import Value

from .errors import EncodingError, PromiseCanceled, PromiseRejected, PromiseTimedOut

PICKLE_HEADER = "resonate:pickle"
ERROR_HEADER = "resonate:error"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(data: str) -> str:
    return base64.b64decode(data.encode(), validate=False).decode()


def encode(value: Any) -> Value:
    """Encode a result or argument (None encodes to no data)."""
    if value is None:
        return Value({}, None)
    try:
        text = json.dumps(value, separators=(",", ":"))
        if json.loads(text) == value and _plain(value):
            return Value({}, _b64(text))
    except (TypeError, ValueError):
        pass
    try:
        pickled = base64.b64encode(pickle.dumps(value, protocol=5)).decode()
    except Exception as exc:
        raise EncodingError(f"cannot store a value of type {type(value).__name__}: {exc}") from None
    text = json.dumps(value, separators=(",", ":"), default=repr)
    return Value({PICKLE_HEADER: pickled}, _b64(text))


def _plain(value: Any) -> bool:
    """JSON equality says (1, 2) == [1, 2] is false only at the top; look inside containers too."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return True
    if type(value) is list:
        return all(_plain(v) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def decode(value: Value) -> Any:
    if value.headers.get(PICKLE_HEADER):
        return pickle.loads(base64.b64decode(value.headers[PICKLE_HEADER]))
    if not value.data:
        return None
    return json.loads(_unb64(value.data))


def encode_error(exc: BaseException) -> Value:
    cls = type(exc)
    meta = {"type": f"{cls.__module__}:{cls.__qualname__}", "args": _jsonable_args(exc)}
    body = json.dumps({"__error__": str(exc) or cls.__name__})
    return Value({ERROR_HEADER: json.dumps(meta)}, _b64(body))


def _jsonable_args(exc: BaseException) -> list[Any]:
    try:
        json.dumps(list(exc.args))
        return list(exc.args)
    except (TypeError, ValueError):
        return [str(a) for a in exc.args]


def decode_error(value: Value) -> BaseException:
    """Rebuild a rejection: the original type when importable, else PromiseRejected with the message."""
    message = ""
    if value.data:
        try:
            body = json.loads(_unb64(value.data))
            message = body.get("__error__", "") if isinstance(body, dict) else str(body)
        except (ValueError, UnicodeDecodeError):
            message = value.data
    meta_text = value.headers.get(ERROR_HEADER)
    if meta_text:
        try:
            meta = json.loads(meta_text)
            module, _, qualname = meta["type"].partition(":")
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            if isinstance(obj, type) and issubclass(obj, BaseException):
                try:
                    return obj(*meta.get("args", []))
                except Exception:
                    return obj(message) if message else obj()
        except Exception:
            pass
    return PromiseRejected(message or "promise rejected")


def outcome(state: str, value: Value, promise_id: str) -> tuple[bool, Any]:
    """(ok, value or exception) for a completed promise, as an awaiting function should see it."""
    if state == "RESOLVED":
        return True, decode(value)
    if state == "REJECTED_TIMEDOUT":
        return False, PromiseTimedOut(f"promise {promise_id!r} timed out")
    if state == "REJECTED_CANCELED":
        if value.headers.get(ERROR_HEADER):
            return False, decode_error(value)
        return False, PromiseCanceled(f"promise {promise_id!r} was canceled")
    return False, decode_error(value)


def encode_param(func: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any], version: int) -> Value:
    """An invocation's param (PROTOCOL.md "Invocation param")."""
    return encode({"func": func, "args": list(args), "kwargs": dict(kwargs), "version": version})


def decode_param(value: Value) -> tuple[str, list[Any], dict[str, Any], int]:
    obj = decode(value)
    if not isinstance(obj, dict) or not isinstance(obj.get("func"), str):
        raise EncodingError("this promise's param is not an invocation (no 'func')")
    return obj["func"], list(obj.get("args") or []), dict(obj.get("kwargs") or {}), int(obj.get("version") or 0)

