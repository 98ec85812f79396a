"""Values cross the store as JSON, and reading one never runs code: no unpickling, no import by name, no
call of a name the data chose. Python values JSON cannot hold round-trip as typed JSON; exceptions keep
their type, message and traceback."""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import os
import pickle
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from resonate_daemon.protocol.records import Value

from resonate import EncodingError, PromiseRejected, codec


@codec.register_type
@dataclass
class Order:
    id: int
    lines: list[tuple[str, decimal.Decimal]]


class Declined(Exception):
    """Raised (and so known) in this process only."""


ROUND_TRIPS: list[Any] = [
    0, -7, 2**70, 1.5, "text ü", True, None, [], {}, [1, [2, [3]]], {"a": {"b": [1, 2]}},
    (1, 2), ((1, 2), [3, (4,)]), {1: "int key"}, {(1, 2): "tuple key"}, {"$resonate": "a user's own key"},
    {1, 2, 3}, frozenset({"x"}), b"\x00\xffbytes", bytearray(b"ba"),
    datetime.datetime(2026, 12, 4, 17, 30, 5, 123456, tzinfo=datetime.UTC), datetime.datetime(2026, 1, 1),
    datetime.date(2026, 12, 4), datetime.time(17, 30), datetime.timedelta(days=2, seconds=5, microseconds=7),
    decimal.Decimal("1.10"), uuid.UUID("12345678-1234-5678-1234-567812345678"), 1 + 2j, float("inf"),
    Order(7, [("apple", decimal.Decimal("0.5"))]), [Order(1, [])], {"orders": (Order(2, []),)},
]


@pytest.mark.parametrize("value", ROUND_TRIPS, ids=lambda v: type(v).__name__)
def test_values_round_trip_with_their_types(value: Any) -> None:
    back = codec.decode(codec.encode(value))
    assert back == value and type(back) is (bytes if type(value) is bytearray else type(value))


def test_plain_json_stays_plain_for_other_readers() -> None:
    encoded = codec.encode({"a": [1, "x", None]})
    assert encoded.headers == {} and json.loads(base64.b64decode(encoded.data or "")) == {"a": [1, "x", None]}
    typed = codec.encode((1, 2))
    assert typed.headers == {codec.FORMAT_HEADER: codec.TYPED}
    assert json.loads(base64.b64decode(typed.data or "")) == {"$resonate": "tuple", "items": [1, 2]}  # still JSON


def test_nan_round_trips() -> None:
    back = codec.decode(codec.encode([float("nan")]))
    assert back[0] != back[0]


def test_unknown_classes_are_refused_with_what_to_do() -> None:
    class Thing:
        pass

    @dataclass
    class Unregistered:
        x: int

    with pytest.raises(EncodingError, match="convert it to JSON"):
        codec.encode(Thing())
    with pytest.raises(EncodingError, match="register it with resonate.register_type"):
        codec.encode({"x": Unregistered(1)})


MARKER = os.path.join("/tmp", f"resonate-pwned-{os.getpid()}")


class Boom:
    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (MARKER, "w"))  # what unpickling would run


def test_a_pickle_in_the_store_is_never_loaded() -> None:
    """Values written by earlier versions (or by an attacker) with a pickle header: the pickle is
    ignored, the JSON data is read."""
    evil = Value({"resonate:pickle": base64.b64encode(pickle.dumps(Boom())).decode()},
                 base64.b64encode(b'"harmless"').decode())
    assert codec.decode(evil) == "harmless"
    assert codec.outcome("RESOLVED", evil, "p") == (True, "harmless")
    assert not os.path.exists(MARKER)


def test_no_name_from_the_data_is_imported_or_called() -> None:
    for kind in ("dataclass", "error"):
        body = {"$resonate": kind, "type": "os:system", "fields": {}, "message": "m", "args": ["echo pwned"]}
        value = Value({codec.FORMAT_HEADER: codec.TYPED}, base64.b64encode(json.dumps(body).encode()).decode())
        try:
            got = codec.decode(value)
        except EncodingError:
            continue
        assert isinstance(got, PromiseRejected) and got.details["type"] == "os:system"
    meta = {"type": "subprocess:Popen", "message": "x", "args": [["touch", MARKER]], "traceback": ""}
    rejected = Value({codec.ERROR_HEADER: json.dumps(meta)}, base64.b64encode(b'{"__error__": "x"}').decode())
    exc = codec.decode_error(rejected)
    assert type(exc) is PromiseRejected and "Popen" in str(exc) and not os.path.exists(MARKER)
    assert "subprocess" not in sys.modules or sys.modules["subprocess"] is subprocess  # nothing new imported


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8))
hostile = st.recursive(
    json_leaf | st.fixed_dictionaries({"$resonate": st.sampled_from(
        ["tuple", "set", "bytes", "datetime", "decimal", "uuid", "dict", "dataclass", "error", "float", "complex",
         "timedelta", "nope", 5])}, optional={"items": st.lists(json_leaf), "b64": st.text(), "iso": st.text(),
                                              "str": st.text(), "hex": st.text(), "type": st.text(), "repr": st.text(),
                                              "fields": st.dictionaries(st.text(), json_leaf)}),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(doc=hostile)
def test_hostile_typed_json_gives_a_value_or_an_encoding_error(doc: Any) -> None:
    value = Value({codec.FORMAT_HEADER: codec.TYPED}, base64.b64encode(json.dumps(doc).encode()).decode())
    try:
        codec.decode(value)
    except EncodingError:
        pass
    assert not os.path.exists(MARKER)


def test_exceptions_keep_type_message_and_traceback() -> None:
    try:
        {}["reviewer"]
    except KeyError as exc:
        value = codec.encode_error(exc)
    info = codec.error_info(value)
    assert info is not None and info.type == "builtins:KeyError" and info.name == "KeyError"
    assert str(info) == "KeyError: 'reviewer'" and 'in test_exceptions_keep_type' in info.traceback
    back = codec.decode_error(value)
    assert type(back) is KeyError and back.args == ("reviewer",)
    assert "KeyError: 'reviewer'" in back.resonate_traceback  # type: ignore[attr-defined]
    assert json.loads(base64.b64decode(value.data or ""))["__error__"] == "'reviewer'"  # the official SDK's shape


def test_an_exception_type_comes_back_where_it_is_known() -> None:
    """Declined was raised here: this process rebuilds it. Another process, which never raised or
    registered it, gets PromiseRejected with the type's name, the message and the traceback."""
    try:
        raise Declined("card declined", 42)
    except Declined as exc:
        value = codec.encode_error(exc)
    back = codec.decode_error(value)
    assert type(back) is Declined and back.args == ("card declined", 42)
    probe = ("import sys, json\nfrom resonate import codec\nfrom resonate_daemon.protocol.records import Value\n"
             "v = Value(json.loads(sys.argv[1]), sys.argv[2])\nexc = codec.decode_error(v)\n"
             "print(json.dumps([type(exc).__name__, str(exc), exc.details['type'], bool(exc.resonate_traceback)]))")
    out = subprocess.run([sys.executable, "-c", probe, json.dumps(value.headers), value.data or ""],
                         capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["PromiseRejected", "Declined: ('card declined', 42)",
                                      f"{__name__}:Declined", True]
