"""Promises, values and times as people read them: the text both the CLI (rich tables and trees) and the
browser UI (HTML templates) show, in one place so the two never disagree.

Plain text only: this module imports the standard library, the protocol's records and ``resonate.codec``,
never rich, typer, starlette or jinja2 (tests/test_layering.py checks it), so the SDK stays light. ::

    >>> duration(61_000)
    '1m01s'
    >>> kind_of(promise)            # invoke, rpc, run, sleep or promise
    'promise'
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from resonate_daemon.protocol.records import (
    TAG_FUNC,
    TAG_INVOKE,
    TAG_PARENT,
    TAG_SCOPE,
    TAG_TIMEOUT,
    Promise,
    Value,
)

from . import codec

STATES = ("PENDING", "RESOLVED", "REJECTED", "REJECTED_CANCELED", "REJECTED_TIMEDOUT")


# -- times ----------------------------------------------------------------------------------------

def now_ms() -> int:
    return time.time_ns() // 1_000_000


def when(ms: int | None) -> str:
    """A time in milliseconds since the epoch, local time to the second ("-" for none)."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def duration(ms: int | None) -> str:
    """A span in milliseconds, in the largest two units that matter: 850ms, 4.2s, 3m07s, 2h05m, 1d03h."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"


def state_word(state: str) -> str:
    """A promise's state as one short lower-case word: pending, resolved, rejected, canceled, timedout."""
    return state.replace("REJECTED_", "").lower()


# -- promises -------------------------------------------------------------------------------------

def kind_of(p: Promise) -> str:
    """What a promise stands for: invocation, run/rpc, sleep, or a wait on the outside world."""
    if p.tags.get(TAG_TIMEOUT) == "true":
        return "sleep"
    scope = p.tags.get(TAG_SCOPE)
    if p.tags.get(TAG_INVOKE):
        return "rpc" if p.tags.get(TAG_PARENT) else "invoke"
    if scope == "local":
        return "run"
    return "promise"


def is_human_wait(p: Promise) -> bool:
    """A pending promise no function will complete: no invocation target, not a sleep, not a run step."""
    return (p.pending and TAG_INVOKE not in p.tags and p.tags.get(TAG_TIMEOUT) != "true"
            and p.tags.get(TAG_SCOPE) != "local")


def error_of(p: Promise) -> codec.ErrorInfo | None:
    """The exception a rejected promise keeps: type, message, traceback (None for other promises)."""
    return codec.error_info(p.value) if p.state.startswith("REJECTED") else None


def promise_doc(p: Promise) -> dict[str, Any]:
    """A promise as --json prints it: the API's fields, plus ``error`` when it keeps an exception."""
    doc = p.to_json()
    info = error_of(p)
    if info is not None:
        doc["error"] = info.to_json()
    return doc


# -- values ---------------------------------------------------------------------------------------

def data_json(value: Value) -> Any:
    """The data parsed as JSON where it parses, else the text (for display and --json convenience)."""
    return value.json()


def short(value: Any, width: int = 60) -> str:
    """A value on one line, cut to ``width`` characters with an ellipsis."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def value_text(value: Value) -> str:
    """A stored value as indented JSON text (what the data holds; typed values keep their tags)."""
    if value.data is None:
        return ""
    data = value.json()
    if isinstance(data, str):
        return data
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True)


def invocation(p: Promise) -> tuple[str, str]:
    """The function an invoked promise runs and its arguments as indented JSON text."""
    try:
        func, args, kwargs, _ = codec.decode_param(p.param)
    except Exception:
        return p.tags.get(TAG_FUNC, ""), value_text(p.param)
    shown: Any = args if not kwargs else {"args": args, "kwargs": kwargs}
    try:
        return func, json.dumps(shown, indent=2, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        return func, repr(shown)


def json_problem(text: str) -> str | None:
    """Why ``text`` is not JSON, or None (empty text means no data)."""
    if not text.strip():
        return None
    try:
        json.loads(text)
    except ValueError as exc:
        return f"not valid JSON: {exc}"
    return None
